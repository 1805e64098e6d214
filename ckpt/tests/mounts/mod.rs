//! What the tests that mount a filesystem share: they mount it only inside a
//! private mount namespace of a child process, never on the machine.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// True if `unshare --mount` works here (root, or user namespaces).
pub fn private_mounts_available() -> bool {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs this test binary's own test `child` in a new private mount namespace
/// where `fstype` (with `options`) is mounted at `mnt`; `env` names the
/// variable that tells the child where. The mount ends with the namespace.
pub fn run_with_mount(fstype: &str, options: &str, mnt: &Path, child: &str, env: &str) -> Output {
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "mount -t {fstype} -o {options} {fstype} '{}' && exec '{}' {child} --exact \
         --nocapture --test-threads=1",
        mnt.display(),
        exe.display()
    );
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env(env, mnt)
        .output()
        .unwrap()
}
