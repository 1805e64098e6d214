//! The README's Rust example (`examples/quickstart.rs`) as a new user runs it.

use std::process::Command;

/// The README's example runs twice in a row (the second run finds the
/// first's checkpoint within its retention time).
#[test]
fn the_readme_example_reruns() {
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples/quickstart"))
        .unwrap();
    if !example.exists() {
        eprintln!("SKIPPED: {} is not built", example.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for run in 1..=2 {
        let out = Command::new(&example)
            .env("CKPT_DIR", dir.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "run {run}: {text}");
        assert!(text.contains("state = [0, 0, 0, 0, 0, 0, 0, 42]"), "{text}");
    }
}
