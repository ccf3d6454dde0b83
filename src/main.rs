//! `vchat-signal`: the command line is `vchat_signal::cli`; this file only picks the allocator.

/// jemalloc returns freed memory to the system after load, where glibc's malloc keeps its
/// arenas at their peak size (measured with the soak example: see README, Memory). The
/// `system-allocator` feature swaps it out for heap profilers that hook malloc (heaptrack).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's background thread returns dirty pages on its decay schedule (1 s here rather than
/// 10 s), so memory freed when sockets leave goes back to the system within seconds.
#[cfg(not(feature = "system-allocator"))]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:1000\0";

fn main() -> std::process::ExitCode {
    vchat_signal::cli::main()
}
