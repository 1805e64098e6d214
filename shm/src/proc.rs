//! Process identity and liveness, for openers and claim holders.
//!
//! A pid alone is not an identity (pids are reused), so ckpt records the
//! process start time (`/proc/<pid>/stat` field 22) beside it. A process is
//! alive if `/proc/<pid>/stat` exists, shows the same start time, and the
//! process is not a zombie (a SIGKILLed child nobody has reaped yet is dead).

use std::sync::atomic::{AtomicU64, Ordering};

/// A process as ckpt records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessStamp {
    /// The pid.
    pub pid: u32,
    /// Start time in clock ticks since boot.
    pub start_ticks: u64,
}

/// Reads state and start time of `pid`; `None` if there is no such process.
fn stat(pid: u32) -> Option<(u8, u64)> {
    let text = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and ')'; fields resume after
    // the last ')'.
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(text.get(close + 2..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.bytes().next()?;
    // `rest` starts at field 3 (state); start time is field 22.
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some((state, start_ticks))
}

/// This process.
pub fn current() -> ProcessStamp {
    static CACHED: AtomicU64 = AtomicU64::new(0);
    static CACHED_PID: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    if CACHED_PID.load(Ordering::Acquire) == pid as u64 {
        return ProcessStamp {
            pid,
            start_ticks: CACHED.load(Ordering::Relaxed),
        };
    }
    let start_ticks = stat(pid).map_or(0, |(_, t)| t);
    CACHED.store(start_ticks, Ordering::Relaxed);
    CACHED_PID.store(pid as u64, Ordering::Release);
    ProcessStamp { pid, start_ticks }
}

/// True if `pid` runs and started at `start_ticks` (0: start time not yet
/// recorded, so only the pid is checked).
pub fn is_alive(pid: u32, start_ticks: u64) -> bool {
    if pid == 0 {
        return false;
    }
    match stat(pid) {
        None => false,
        Some((state, _)) if state == b'Z' || state == b'X' => false,
        Some((_, ticks)) => start_ticks == 0 || ticks == start_ticks,
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: comparable between processes on one host
/// (unlike `std::time::Instant`, which cannot be exchanged).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_child_is_not() {
        let me = current();
        assert!(me.start_ticks > 0);
        assert!(is_alive(me.pid, me.start_ticks));
        assert!(
            !is_alive(me.pid, me.start_ticks + 1),
            "wrong start time must not match"
        );
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!is_alive(pid, 0));
    }

    #[test]
    fn an_unreaped_killed_child_is_dead() {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        // SAFETY: kill(2) with a pid we own; no memory is involved.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while is_alive(pid, 0) {
            assert!(
                std::time::Instant::now() < deadline,
                "zombie still counted alive"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(child);
    }
}
