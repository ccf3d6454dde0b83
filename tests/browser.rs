//! The built-in web client in real Chromium (Debian's `chromium`, driven by npm
//! `playwright-core`): `tests/browser/run.sh` runs every case against this build's binary. Part
//! of `cargo test` so the README's one test command covers it; without Chromium it says why and
//! skips, except under CI (`CI=true`), where `.ci/run` installs it and a skip would hide a gap.

use std::path::Path;
use std::process::Command;

#[test]
fn the_web_client_calls_and_chats_in_real_chromium() {
    if !Path::new("/usr/bin/chromium").exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run the browser test: /usr/bin/chromium is missing"
        );
        eprintln!("skipped: /usr/bin/chromium is not installed (apt-get install chromium chromium-driver)");
        return;
    }
    let status = Command::new("bash")
        .arg("tests/browser/run.sh")
        .env("VCHAT_BIN", env!("CARGO_BIN_EXE_vchat-signal"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run tests/browser/run.sh");
    assert!(status.success(), "the browser test failed: {status}");
}
