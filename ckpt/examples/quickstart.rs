//! The README's example, runnable and rerunnable:
//!
//! ```text
//! cargo run --release --example quickstart     # segments in $CKPT_DIR, else /dev/shm/ckpt
//! ```
//!
//! An active writes its state into a checkpoint; a standby (here the same
//! process, as a second opener) reads it back and follows the changes. A
//! second run within the retention time finds the checkpoint and the section
//! from the first and carries on; errors print in their readable form.

use std::process::ExitCode;
use std::time::Duration;

use ckpt::{CreationAttributes, OpenFlags, SectionCreateError, Service, Time};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let service = Service::new(); // segments in $CKPT_DIR, default /dev/shm/ckpt

    // The active: creates the checkpoint (or opens the one a previous run left
    // within its retention time) and writes its state.
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let active = service.open(
        "safCkpt=myApp",
        flags,
        Some(&CreationAttributes::new(16, 4096)),
    )?;
    active.set_active_replica()?; // collocated async: the writer says so
    let state = match active.create_section(b"state", Time::END, b"v1") {
        Ok(section) => section,
        // Left by an earlier run: carry on with it.
        Err(SectionCreateError::Exist) => active.section(b"state")?,
        Err(e) => return Err(e.into()),
    };
    state.overwrite(b"v2")?; // into shared memory, no syscall
    state.overwrite_with(8, |buf| buf.copy_from_slice(&42u64.to_be_bytes()))?; // zero-copy

    // The standby (normally another process): reads the state, then follows
    // the changes as the active makes them.
    let standby = service.open("safCkpt=myApp", OpenFlags::READ, None)?;
    let value = standby.read_section(b"state")?;
    println!("the standby reads state = {value:?}");
    let mut changes = standby.watch();
    state.overwrite(&43u64.to_be_bytes())?;
    if changes.wait(Duration::from_secs(1), Duration::ZERO) {
        loop {
            match changes.next_change() {
                Ok(Some(change)) => println!("change {}: {:?}", change.seq, change.mutation),
                Ok(None) => break,
                // Fell more than the log ring behind: a snapshot of the
                // sections, then exactly the changes after it.
                Err(ckpt::WatchError::Lagged { .. }) => {
                    let snapshot = changes.resync()?;
                    println!("resynced: {} sections", snapshot.sections.len());
                }
                Err(e) => return Err(format!("following the log: {e:?}").into()),
            }
        }
    }
    Ok(())
}
