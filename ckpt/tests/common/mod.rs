//! What the crash tests share: their seed, their random numbers, and the
//! child process they start and kill.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The environment variable that replays a crash test's run.
pub const ENV_SEED: &str = "CKPT_CRASH_SEED";

/// The run's seed: `CKPT_CRASH_SEED`, else the clock. Printed with the
/// test's name so that a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var(ENV_SEED)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("{test} seed: {seed} (rerun with {ENV_SEED}={seed})");
    seed
}

/// xorshift64*: deterministic from the seed, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Runs the test binary's own test `child` (which prints "ready" once set
/// up) with `envs`, lets it work for `after`, and SIGKILLs it. Panics with
/// `what` if it never gets ready.
pub fn kill_after(child: &str, envs: &[(&str, String)], after: Duration, what: &str) {
    let exe = std::env::current_exe().unwrap();
    let mut process = Command::new(exe)
        .args([child, "--exact", "--nocapture", "--test-threads=1"])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.trim_end().ends_with("ready"))),
        "{what}"
    );
    std::thread::sleep(after);
    process.kill().unwrap();
    process.wait().unwrap();
}
