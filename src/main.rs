//! `vchat-signal`: the command line is `vchat_signal::cli`; this file only picks the allocator.

/// mimalloc returns freed memory to the system after load, where glibc's malloc keeps its
/// arenas at their peak size (measured with the soak example: see README, Memory). The
/// `system-allocator` feature swaps it out for heap profilers that hook malloc (heaptrack).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    vchat_signal::cli::main()
}
