//! The engine behind `ckpt bench`: the issue's local performance scenarios,
//! each measured **beside its baseline in the same run**.
//!
//! The project machine drifts by ±20% between invocations (and a cross-vCPU
//! wake-up costs 20–80 µs depending on the hour), so a number is only
//! meaningful next to its floor measured at the same time. Every scenario here
//! therefore interleaves ours and the baseline (alternating which goes first)
//! and reports both, with the ratio:
//!
//! | # | scenario | baseline | target |
//! |---|---|---|---|
//! | 1 | 64 B overwrite through a `SectionRef` | 64 B `memcpy` into a shared mapping; a Release store of a sequence counter | p50 ≤ 20 ns, ≥ 40 M/s |
//! | 2 | 64 B overwrite by section id (lookup + write) | 64 B `memcpy` | p50 ≤ 40 ns |
//! | 3 | 4 KiB hot overwrite | 4 KiB `memcpy` | p50 ≤ 1.5 × the baseline |
//! | 4 | 64 B consistent read | 64 B `memcpy` out | p50 ≤ 10 ns |
//! | 5 | change visible to a spinning standby process | raw cache-line ping-pong | p50 ≤ 1 µs |
//! | 6 | change visible to a sleeping standby process | pipe ping-pong | p50 ≤ 60 µs |
//! | 7 | standby takeover of a mapped 1 GiB checkpoint | open + mmap of the same file | ≤ 1 ms |
//! | 8 | iterate 100k sections | one `u64` load per 64-byte line | ≤ 20 ns/section |
//! | 9 | 64 B frames applied into a replica segment, a batch under one claim | the same 64 B overwrites on the primary | ≥ 10 M frames/s |
//! | 10 | fuzzy snapshot + catch-up of a 1 GiB checkpoint while a writer writes | reading the same bytes out of the mapping | ≤ 3 × the baseline |
//! | C1 | `saCkptSectionOverwrite` of 64 B through libSaCkpt's C ABI | 64 B `memcpy` | p50 ≤ 50 ns |
//! | C2 | `saCkptCheckpointRead` of 64 B into the caller's buffer | 64 B `memcpy` out | p50 ≤ 40 ns |
//! | R1 | replicated 64 B, 4 KiB and 64 KiB overwrites over loopback TCP (asynchronous) | a raw TCP stream of the same frame bytes | ≥ 5 M (64 B), ≥ 270 k (4 KiB) updates/s; ≥ 70 % of the stream (64 KiB) |
//! | R1e | replicated 4 KiB overwrites over encrypted links | the same over plain links | none: its cost shown |
//! | R1b | replication lag p99 of 64 B overwrites at half the measured maximum rate | a raw one-way message (half a ping-pong of the same size) | ≤ 1 ms |
//! | R2 | synchronous 64 B write (returns once the replica holds it) | a raw TCP ping-pong of the same size | p50 ≤ 2 × the baseline |
//! | R3 | full resync of a checkpoint of 1 MiB sections (1 GiB; 256 MiB quick) into a new replica over loopback TCP | a raw TCP stream of the same bytes in 1 MiB messages | ≤ 0.6 s per GiB |
//!
//! Nanosecond-scale operations are timed in batches (one `Instant` pair per
//! batch of N ops, divided by N); their p50/p99/max are over batches, and the
//! scenario text says so. Cross-process visibility is measured as half a round
//! trip (`Instant`s are not comparable across processes): the writer overwrites
//! section `ping` of one checkpoint, the standby follows that checkpoint's
//! delta log, sees it and overwrites section `pong` of a second checkpoint,
//! whose log the writer follows. Each checkpoint has one writer, as between an
//! active process and its standby, so neither side waits for the other's claim.
//!
//! The baselines' "shared mapping" is a `MAP_SHARED` mapping of a file in the
//! run's directory (the same tmpfs kind of page as a segment's), which only
//! this process maps. The sequence-counter baseline stores into a scratch
//! segment's `recoveries` header word (restored afterwards). The raw cache-line ping-pong uses two atomics of a dedicated scratch
//! segment's header (`next_generated_id` and `recoveries`, in different cache
//! lines, unused by a checkpoint nobody writes to).
//!
//! Everything lives in a fresh directory under [`BenchOptions::dir`], removed at
//! the end. Runs are bounded: `quick` finishes in well under 20 s, a full run
//! in well under 90 s; the two-process scenarios spin in short bursts so that
//! both vCPUs of a 2-vCPU VM never busy-poll for long at once.

use std::ffi::OsString;
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod redis;

use ckpt_core::frame::FrameKind;
use ckpt_core::{CheckpointName, CreationAttributes, OpenFlags, SectionsChosen, Time};
use ckpt_shm::{Config, Consumer, SectionRef, Segment};
use serde::Serialize;

/// What to run and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOptions {
    /// The segment directory; the run works in a fresh subdirectory of it and
    /// removes that at the end.
    pub dir: PathBuf,
    /// Fewer samples and a 256 MiB takeover checkpoint: finishes in < 20 s.
    pub quick: bool,
    /// The command that starts a standby process: the program and its leading
    /// arguments, e.g. `[current_exe, "bench-standby"]`; the run appends the
    /// mode and its arguments, and that process must call [`standby_main`]
    /// with them. `None`: scenarios 5 and 6 are reported as not measured.
    pub standby_cmd: Option<Vec<OsString>>,
    /// Run only these groups of scenarios ([`GROUPS`]); empty: all.
    pub only: Vec<String>,
}

/// The groups of scenarios, in the order a run takes them: what
/// [`BenchOptions::only`] names.
pub const GROUPS: [&str; 8] = [
    "local",
    "c",
    "visibility",
    "takeover",
    "iterate",
    "apply",
    "catch-up",
    "replication",
];

/// One scenario's result beside its baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchRow {
    /// What was measured, including how the percentiles were taken.
    pub scenario: String,
    /// Median cost of one operation, in ns (NaN if not measured).
    pub p50_ns: f64,
    /// 99th percentile, in ns.
    pub p99_ns: f64,
    /// Largest sample, in ns.
    pub max_ns: f64,
    /// Our operations per second over the whole measurement (round trips per
    /// second for the visibility scenarios, takeovers per second for 7,
    /// sections per second for 8).
    pub ops_per_s: f64,
    /// The baseline measured in the same run.
    pub baseline: String,
    /// The baseline's median, in ns.
    pub baseline_p50_ns: f64,
    /// `p50_ns / baseline_p50_ns`.
    pub ratio: f64,
    /// The target, e.g. `"p50 <= 25 ns"`; says why when not measured.
    pub target: String,
    /// Whether the target is met; `None` if the scenario could not be measured.
    pub met: Option<bool>,
}

/// Runs every scenario, calling `progress` with each row as it completes;
/// `progress` returning false stops the run after that scenario (its reader
/// went away), and the rows so far are returned.
///
/// Returns `Err` only if the run cannot start (no work directory); a scenario
/// that cannot be measured yields a row with `met: None` and the reason in
/// `target`, never a made-up number.
pub fn run(
    opts: &BenchOptions,
    progress: &mut dyn FnMut(&BenchRow) -> bool,
) -> Result<Vec<BenchRow>, String> {
    if let Some(unknown) = opts.only.iter().find(|g| !GROUPS.contains(&g.as_str())) {
        return Err(format!(
            "no scenario group {unknown:?}; the groups: {}",
            GROUPS.join(", ")
        ));
    }
    let plan = if opts.quick { Plan::QUICK } else { Plan::FULL };
    let work = Work::new(&opts.dir)?;
    let mut rows = Vec::new();
    let go_on = std::cell::Cell::new(true);
    {
        let mut emit = |row: BenchRow| {
            go_on.set(go_on.get() && progress(&row));
            rows.push(row);
        };
        type Scenario = fn(&Work, &Plan, Option<&[OsString]>, &mut dyn FnMut(BenchRow));
        let scenarios: [Scenario; 8] = [
            |w, p, _, e| local_path(w, p, e),
            |w, p, _, e| c_path(w, p, e),
            visibility,
            |w, p, _, e| takeover(w, p, e),
            |w, p, _, e| iterate(w, p, e),
            |w, p, _, e| apply_rate(w, p, e),
            |w, p, _, e| catch_up(w, p, e),
            |w, p, _, e| replication(w, p, e),
        ];
        for (scenario, group) in scenarios.into_iter().zip(GROUPS) {
            if !opts.only.is_empty() && !opts.only.iter().any(|g| g == group) {
                continue;
            }
            scenario(&work, &plan, opts.standby_cmd.as_deref(), &mut emit);
            if !go_on.get() {
                break;
            }
        }
    }
    Ok(rows)
}

/// The part of a scenario or baseline description before its first detail
/// (a parenthesis, bracket or comma), for the table; the whole text goes in
/// the notes under it.
fn short_name(text: &str) -> &str {
    let cut = [" (", " [", ", "]
        .iter()
        .filter_map(|p| text.find(p))
        .min()
        .unwrap_or(text.len());
    text[..cut].trim_end()
}

/// Prints the rows as a table: each scenario on one line, its baseline on the
/// next, then numbered notes with the full descriptions (how percentiles were
/// taken, process placement).
pub fn print_table(rows: &[BenchRow], out: &mut dyn Write) -> std::io::Result<()> {
    let name_width = rows
        .iter()
        .flat_map(|r| {
            [
                short_name(&r.scenario).len() + 4,
                short_name(&r.baseline).len() + 7,
            ]
        })
        .max()
        .unwrap_or(0)
        .max("scenario / baseline".len());
    writeln!(
        out,
        "{:<name_width$}  {:>10}  {:>10}  {:>10}  {:>10}  {:>7}  {:<4}  target",
        "scenario / baseline", "p50", "p99", "max", "ops/s", "ratio", "met"
    )?;
    for (i, r) in rows.iter().enumerate() {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "n/a",
        };
        writeln!(
            out,
            "{:<name_width$}  {:>10}  {:>10}  {:>10}  {:>10}  {:>7}  {:<4}  {}",
            format!("{}. {}", i + 1, short_name(&r.scenario)),
            fmt_ns(r.p50_ns),
            fmt_ns(r.p99_ns),
            fmt_ns(r.max_ns),
            fmt_rate(r.ops_per_s),
            fmt_ratio(r.ratio),
            met,
            r.target
        )?;
        writeln!(
            out,
            "{:<name_width$}  {:>10}",
            format!("     vs {}", short_name(&r.baseline)),
            fmt_ns(r.baseline_p50_ns)
        )?;
    }
    writeln!(
        out,
        "\nnotes (ratio = ours p50 / baseline p50; both measured in this run):"
    )?;
    for (i, r) in rows.iter().enumerate() {
        writeln!(out, "{:>3}. {}", i + 1, r.scenario)?;
        writeln!(out, "     baseline: {}", r.baseline)?;
    }
    Ok(())
}

/// One row as a JSON object on one line: `scenario`, `p50_ns`, `p99_ns`,
/// `max_ns`, `ops_per_s`, `baseline`, `baseline_p50_ns`, `ratio`, `target`,
/// `met` (numbers that were not measured are `null`).
pub fn to_json_line(row: &BenchRow) -> String {
    serde_json::to_string(row).unwrap_or_else(|e| {
        serde_json::json!({ "scenario": row.scenario, "error": e.to_string() }).to_string()
    })
}

/// The standby side of the two-process scenarios: the hidden `bench-standby`
/// command calls this with the arguments [`run`] appended to
/// [`BenchOptions::standby_cmd`] (a leading `"bench-standby"` is skipped).
/// Returns the process exit code: 0 done, 1 failed, 2 bad arguments.
///
/// Modes: `ckpt-pong DIR NAME SPIN_US` (follow the delta log of checkpoint
/// `NAME-ping`, answer every `ping` overwrite with a `pong` overwrite in
/// `NAME-pong`, spinning up to `SPIN_US` before sleeping on the futex),
/// `raw-pong DIR NAME` (answer a header atomic of checkpoint `NAME` with
/// another) and `pipe-pong` (echo 8-byte messages from stdin to stdout).
pub fn standby_main(args: &[String]) -> i32 {
    let args = match args.first() {
        Some(first) if first == "bench-standby" => &args[1..],
        _ => args,
    };
    let result = match args {
        [mode, dir, name, spin_us] if mode == "ckpt-pong" => match spin_us.parse::<u64>() {
            Ok(us) => ckpt_pong(Path::new(dir), name, Duration::from_micros(us)),
            Err(_) => return usage(),
        },
        [mode, dir, name] if mode == "raw-pong" => raw_pong(Path::new(dir), name),
        [mode] if mode == "pipe-pong" => pipe_pong(),
        _ => return usage(),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bench-standby: {e}");
            1
        }
    }
}

fn usage() -> i32 {
    eprintln!(
        "usage: bench-standby ckpt-pong DIR NAME SPIN_US | raw-pong DIR NAME | pipe-pong \
         (started by `ckpt bench`, not meant to be run by hand)"
    );
    2
}

// ---------------------------------------------------------------------------
// Plan, samples and statistics

/// Sample counts and sizes of a run.
struct Plan {
    /// Interleaved rounds of the local scenarios (each round: one batch of each).
    rounds: u32,
    /// Rounds run first and discarded.
    warmup_rounds: u32,
    /// Ops per batch for the 64 B operations.
    batch: u32,
    /// Ops per batch for 4 KiB overwrites.
    batch_4k: u32,
    /// Bursts per side of the spinning visibility scenario.
    spin_bursts: u32,
    /// Round trips per burst (spinning).
    spin_per_burst: u32,
    /// Bursts per side of the sleeping visibility scenario.
    sleep_bursts: u32,
    /// Round trips per burst (sleeping).
    sleep_per_burst: u32,
    /// Most time one visibility scenario may take (both sides).
    visibility_budget: Duration,
    /// 1 MiB sections of the takeover checkpoint.
    takeover_sections: u32,
    /// Timed takeovers (and as many baseline maps).
    takeover_reps: u32,
    /// Timed iteration passes (and as many baseline passes).
    iterate_passes: u32,
}

impl Plan {
    const QUICK: Plan = Plan {
        rounds: 2000,
        warmup_rounds: 100,
        batch: 1000,
        batch_4k: 200,
        spin_bursts: 10,
        spin_per_burst: 1500,
        sleep_bursts: 8,
        sleep_per_burst: 300,
        visibility_budget: Duration::from_secs(3),
        takeover_sections: 256,
        takeover_reps: 20,
        iterate_passes: 50,
    };
    const FULL: Plan = Plan {
        rounds: 12000,
        warmup_rounds: 300,
        batch: 1000,
        batch_4k: 200,
        spin_bursts: 40,
        spin_per_burst: 2500,
        sleep_bursts: 30,
        sleep_per_burst: 500,
        visibility_budget: Duration::from_secs(15),
        takeover_sections: 1024,
        takeover_reps: 50,
        iterate_passes: 300,
    };
}

/// Round trips at the start of every burst that are not recorded (the peer
/// may have parked between bursts).
const BURST_WARMUP: u32 = 20;
/// Pause between bursts, so neither vCPU spins for long.
const BURST_PAUSE: Duration = Duration::from_millis(3);
/// How long the spinning standby spins before it parks (between bursts).
const STANDBY_SPIN: Duration = Duration::from_micros(200);
/// How long a round trip may take before the peer is declared stuck.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a standby may take to start and report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the start-up wait checks whether the standby exited.
const READY_POLL: Duration = Duration::from_millis(20);
/// A standby with nothing to do for this long exits (its parent died).
const STANDBY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One side's samples.
#[derive(Default, Clone)]
struct Series {
    /// Per-operation cost of each sample, in ns.
    samples_ns: Vec<f64>,
    /// Operations behind the samples.
    ops: u64,
    /// Wall time behind the samples, in ns.
    elapsed_ns: f64,
}

impl Series {
    fn record(&mut self, sample_ns: f64, ops: u64, elapsed_ns: f64) {
        self.samples_ns.push(sample_ns);
        self.ops += ops;
        self.elapsed_ns += elapsed_ns;
    }

    /// A batch of `ops` operations that took `per_op_ns` each.
    fn record_batch(&mut self, per_op_ns: f64, ops: u32) {
        self.record(per_op_ns, ops as u64, per_op_ns * ops as f64);
    }

    fn summary(&self) -> Summary {
        let mut sorted = self.samples_ns.clone();
        sorted.sort_by(f64::total_cmp);
        Summary {
            p50_ns: percentile(&sorted, 0.50),
            p99_ns: percentile(&sorted, 0.99),
            max_ns: sorted.last().copied().unwrap_or(f64::NAN),
            ops_per_s: if self.elapsed_ns > 0.0 {
                self.ops as f64 * 1e9 / self.elapsed_ns
            } else {
                f64::NAN
            },
        }
    }
}

struct Summary {
    p50_ns: f64,
    p99_ns: f64,
    max_ns: f64,
    ops_per_s: f64,
}

/// Nearest-rank percentile of sorted samples (NaN when empty).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Times `n` calls of `op` and returns ns per call.
#[inline(always)]
fn batch(n: u32, mut op: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        op(i as u64);
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn elapsed_ns(start: Instant) -> f64 {
    start.elapsed().as_nanos() as f64
}

/// A measured row. `met_when(p50, ops_per_s)` decides the target.
fn row(
    scenario: String,
    ours: &Series,
    baseline: String,
    base: &Series,
    target: &str,
    met_when: impl Fn(&Summary) -> bool,
) -> BenchRow {
    let s = ours.summary();
    let b = base.summary();
    let measured = s.p50_ns.is_finite();
    BenchRow {
        scenario,
        p50_ns: s.p50_ns,
        p99_ns: s.p99_ns,
        max_ns: s.max_ns,
        ops_per_s: s.ops_per_s,
        baseline,
        baseline_p50_ns: b.p50_ns,
        ratio: s.p50_ns / b.p50_ns,
        target: target.to_string(),
        met: measured.then(|| met_when(&s)),
    }
}

/// A row for a scenario that could not be measured, with the reason.
fn unmeasured(scenario: String, baseline: String, target: &str, why: &str) -> BenchRow {
    BenchRow {
        scenario,
        p50_ns: f64::NAN,
        p99_ns: f64::NAN,
        max_ns: f64::NAN,
        ops_per_s: f64::NAN,
        baseline,
        baseline_p50_ns: f64::NAN,
        ratio: f64::NAN,
        target: format!("{target}; not measured: {why}"),
        met: None,
    }
}

fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        "-".into()
    } else if ns < 10.0 {
        format!("{ns:.2} ns")
    } else if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} us", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

fn fmt_rate(per_s: f64) -> String {
    if !per_s.is_finite() {
        "-".into()
    } else if per_s >= 1e6 {
        format!("{:.2} M", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1} k", per_s / 1e3)
    } else {
        format!("{per_s:.1}")
    }
}

fn fmt_ratio(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{ratio:.1}x")
    } else {
        "-".into()
    }
}

// ---------------------------------------------------------------------------
// The work directory and the baseline memory

/// Bytes of the scratch section: room for the iteration baseline's 100k lines.
const SCRATCH_BYTES: usize = ITERATE_SECTIONS as usize * 64;

/// Removes the work directory on drop.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The run's directory and the scratch checkpoint whose section memory the
/// baselines use.
struct Work {
    scratch: Segment,
    /// The baselines' memory: a `MAP_SHARED` mapping of a file in the work
    /// directory (the same tmpfs kind of page as a segment's), ours alone.
    memory: std::cell::RefCell<memmap2::MmapMut>,
    // Declared last: the directory goes after the scratch segment is closed.
    dir: DirGuard,
}

/// Maps a new `len`-byte file `path` read-write, zeroed (faulted in).
#[allow(unsafe_code)]
fn map_private_file(path: &Path, len: usize) -> Result<memmap2::MmapMut, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.set_len(len as u64)
        .map_err(|e| format!("cannot size {}: {e}", path.display()))?;
    // SAFETY: the file is new (create_new) in a directory only this run uses;
    // nothing else maps, writes or truncates it while the mapping lives (this
    // process holds the only handle), so the `&mut [u8]` it gives is ours.
    let mut map = unsafe { memmap2::MmapMut::map_mut(&file) }
        .map_err(|e| format!("cannot map {}: {e}", path.display()))?;
    map.fill(0);
    Ok(map)
}

impl Work {
    fn new(parent: &Path) -> Result<Work, String> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let path = parent.join(format!("bench-{}-{stamp}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let dir = DirGuard(path);
        let config = Config::with_dir(&dir.0);
        let scratch = create(&config, "bench-scratch", attributes(1, 64))?;
        let memory = map_private_file(&dir.0.join("baseline-memory"), SCRATCH_BYTES)?;
        Ok(Work {
            scratch,
            memory: std::cell::RefCell::new(memory),
            dir,
        })
    }

    /// A configuration for segments in the work directory.
    fn config(&self, log_bytes: Option<u64>) -> Config {
        Config {
            log_bytes,
            ..Config::with_dir(&self.dir.0)
        }
    }

    /// Runs `f` on `len` zeroed bytes of the baselines' shared-mapping memory.
    fn with_memory<R>(&self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, String> {
        let mut memory = self.memory.borrow_mut();
        let memory = memory
            .get_mut(..len)
            .ok_or_else(|| format!("baseline memory: {len} bytes asked, {SCRATCH_BYTES} mapped"))?;
        memory.fill(0);
        Ok(f(memory))
    }

    /// The scratch segment's header word used as the sequence-counter baseline.
    fn counter(&self) -> &AtomicU64 {
        &self.scratch.header().recoveries
    }
}

/// Bench checkpoints: no retention, 16-byte ids.
fn attributes(sections_max: u32, section_bytes_max: u64) -> CreationAttributes {
    CreationAttributes {
        retention_ns: 0,
        section_id_bytes_max: 16,
        ..CreationAttributes::new(sections_max, section_bytes_max)
    }
}

fn create(config: &Config, name: &str, attrs: CreationAttributes) -> Result<Segment, String> {
    let name = CheckpointName::new(name).map_err(|e| format!("{name}: {e:?}"))?;
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    Segment::open(config, &name, flags, Some(&attrs)).map_err(|e| format!("create {name:?}: {e:?}"))
}

fn open_existing(config: &Config, name: &str) -> Result<Segment, String> {
    let name = CheckpointName::new(name).map_err(|e| format!("{name}: {e:?}"))?;
    Segment::open(config, &name, OpenFlags::READ | OpenFlags::WRITE, None)
        .map_err(|e| format!("open {name:?}: {e:?}"))
}

fn lookup(segment: &Segment, id: &[u8]) -> Result<SectionRef, String> {
    segment
        .lookup(id)
        .map_err(|e| format!("lookup: {e:?}"))?
        .ok_or_else(|| format!("section {:?} missing", String::from_utf8_lossy(id)))
}

// ---------------------------------------------------------------------------
// Scenarios 1-4: the local write and read path

fn local_path(work: &Work, plan: &Plan, emit: &mut dyn FnMut(BenchRow)) {
    let n = plan.batch;
    let handle = format!("64 B overwrite via SectionRef (percentiles over batches of {n})");
    let by_id = format!("64 B overwrite by section id, lookup + write (batches of {n})");
    let big = format!(
        "4 KiB hot overwrite via SectionRef (batches of {})",
        plan.batch_4k
    );
    let read = format!("64 B consistent read via SectionRef (batches of {n})");
    let memcpy_in = "64 B memcpy into a shm mapping".to_string();
    let seq_store = "u64 seq-counter Release store in a shm mapping".to_string();
    let memcpy_4k = "4 KiB memcpy into a shm mapping".to_string();
    let memcpy_out = "64 B memcpy out of a shm mapping".to_string();
    const T1: &str = "p50 <= 20 ns and >= 40 M/s";
    const T2: &str = "p50 <= 40 ns";
    const T3: &str = "p50 <= 1.5x baseline";
    const T4: &str = "p50 <= 10 ns";
    match measure_local(work, plan) {
        Ok(s) => {
            let t1 = |s: &Summary| s.p50_ns <= 20.0 && s.ops_per_s >= 40e6;
            let memcpy_4k_p50 = s.memcpy_4k.summary().p50_ns;
            emit(row(
                handle.clone(),
                &s.handle,
                memcpy_in.clone(),
                &s.memcpy_in,
                T1,
                t1,
            ));
            emit(row(handle, &s.handle, seq_store, &s.seq_store, T1, t1));
            emit(row(by_id, &s.by_id, memcpy_in, &s.memcpy_in, T2, |s| {
                s.p50_ns <= 40.0
            }));
            emit(row(big, &s.big, memcpy_4k, &s.memcpy_4k, T3, |s| {
                s.p50_ns <= 1.5 * memcpy_4k_p50
            }));
            emit(row(read, &s.read, memcpy_out, &s.memcpy_out, T4, |s| {
                s.p50_ns <= 10.0
            }));
        }
        Err(why) => {
            emit(unmeasured(handle.clone(), memcpy_in.clone(), T1, &why));
            emit(unmeasured(handle, seq_store, T1, &why));
            emit(unmeasured(by_id, memcpy_in, T2, &why));
            emit(unmeasured(big, memcpy_4k, T3, &why));
            emit(unmeasured(read, memcpy_out, T4, &why));
        }
    }
}

#[derive(Default)]
struct LocalSeries {
    handle: Series,
    by_id: Series,
    big: Series,
    read: Series,
    memcpy_in: Series,
    seq_store: Series,
    memcpy_4k: Series,
    memcpy_out: Series,
}

fn measure_local(work: &Work, plan: &Plan) -> Result<LocalSeries, String> {
    let seg = create(&work.config(None), "bench-local", attributes(4, 4096))?;
    let created = |id: &[u8], data: &[u8]| {
        seg.create_section(Some(id), Time::END, data)
            .map(|(s, _)| s)
            .map_err(|e| format!("create section: {e:?}"))
    };
    let s64 = created(b"s64", &[0; 64])?;
    let s4k = created(b"s4k", &[0; 4096])?;
    let rd = created(b"read", &[0x5A; 64])?;
    let data_64 = [0x5Au8; 64];
    let data_4k = [0xA5u8; 4096];
    let (n, n4k) = (plan.batch, plan.batch_4k);
    let word = work.counter();
    let saved = word.load(Ordering::Relaxed);
    let mut s = LocalSeries::default();
    let mut failures = 0u64;
    let mut seq = 0u64;
    work.with_memory(8192, |memory| {
        let (dst, rest) = memory.split_at_mut(4096);
        let src = &mut rest[..64];
        src.fill(0x5A);
        let mut out = [0u8; 64];
        for round in 0..plan.warmup_rounds + plan.rounds {
            let keep = round >= plan.warmup_rounds;
            for k in 0..8 {
                match (round + k) % 8 {
                    0 => {
                        let t = batch(n, |_| {
                            failures += seg.write(s64, None, black_box(&data_64)).is_err() as u64;
                        });
                        if keep {
                            s.handle.record_batch(t, n);
                        }
                    }
                    1 => {
                        let t = batch(n, |_| {
                            let ok = match seg.lookup(black_box(b"s64")) {
                                Ok(Some(section)) => {
                                    seg.write(section, None, black_box(&data_64)).is_ok()
                                }
                                _ => false,
                            };
                            failures += !ok as u64;
                        });
                        if keep {
                            s.by_id.record_batch(t, n);
                        }
                    }
                    2 => {
                        let t = batch(n4k, |_| {
                            failures += seg.write(s4k, None, black_box(&data_4k)).is_err() as u64;
                        });
                        if keep {
                            s.big.record_batch(t, n4k);
                        }
                    }
                    3 => {
                        let t = batch(n, |_| {
                            let ok = matches!(seg.read(black_box(rd), 0, &mut out), Ok((64, _)));
                            black_box(&mut out);
                            failures += !ok as u64;
                        });
                        if keep {
                            s.read.record_batch(t, n);
                        }
                    }
                    4 => {
                        let t = batch(n, |_| {
                            dst[..64].copy_from_slice(black_box(&data_64));
                            black_box(&mut dst[..64]);
                        });
                        if keep {
                            s.memcpy_in.record_batch(t, n);
                        }
                    }
                    5 => {
                        let t = batch(n, |i| word.store(black_box(seq + i), Ordering::Release));
                        seq += n as u64;
                        if keep {
                            s.seq_store.record_batch(t, n);
                        }
                    }
                    6 => {
                        let t = batch(n4k, |_| {
                            dst.copy_from_slice(black_box(&data_4k));
                            black_box(&mut *dst);
                        });
                        if keep {
                            s.memcpy_4k.record_batch(t, n4k);
                        }
                    }
                    _ => {
                        let t = batch(n, |_| {
                            out.copy_from_slice(black_box(&*src));
                            black_box(&mut out);
                        });
                        if keep {
                            s.memcpy_out.record_batch(t, n);
                        }
                    }
                }
            }
        }
    })?;
    word.store(saved, Ordering::Relaxed);
    if failures > 0 {
        return Err(format!("{failures} operations failed"));
    }
    Ok(s)
}

// ---------------------------------------------------------------------------
// Scenarios C1-C2: the C library's hot path (libSaCkpt, called through its C
// ABI exactly as a C program calls it)

fn c_path(work: &Work, plan: &Plan, emit: &mut dyn FnMut(BenchRow)) {
    let n = plan.batch;
    let overwrite = format!(
        "C saCkptSectionOverwrite 64 B, by section id through a checkpoint handle (batches of {n})"
    );
    let read = format!("C saCkptCheckpointRead 64 B into the caller's buffer (batches of {n})");
    let memcpy_in = "64 B memcpy into a shm mapping".to_string();
    let memcpy_out = "64 B memcpy out of a shm mapping".to_string();
    const TC1: &str = "p50 <= 50 ns";
    const TC2: &str = "p50 <= 40 ns";
    match measure_c(work, plan) {
        Ok((o, r, min, mout)) => {
            emit(row(overwrite, &o, memcpy_in, &min, TC1, |s| {
                s.p50_ns <= 50.0
            }));
            emit(row(read, &r, memcpy_out, &mout, TC2, |s| s.p50_ns <= 40.0));
        }
        Err(why) => {
            emit(unmeasured(overwrite, memcpy_in, TC1, &why));
            emit(unmeasured(read, memcpy_out, TC2, &why));
        }
    }
}

/// An SA Forum call's result as a `Result`.
fn sa(what: &str, e: u32) -> Result<(), String> {
    if e == SaCkpt::types::SA_AIS_OK {
        Ok(())
    } else {
        Err(format!("{what}: SaAisErrorT {e}"))
    }
}

/// Opens a checkpoint in the work directory through the C API, as a C
/// program does; returns the library and checkpoint handles.
#[allow(unsafe_code)]
fn c_open(work: &Work) -> Result<(u64, u64), String> {
    use SaCkpt::types::*;
    // The library takes its directory from CKPT_DIR at initialization; the
    // bench runs no other thread that reads the environment meanwhile.
    let saved = std::env::var_os("CKPT_DIR");
    std::env::set_var("CKPT_DIR", &work.dir.0);
    let mut lib = 0;
    let mut version = SaVersionT {
        release_code: b'B',
        major_version: 2,
        minor_version: 2,
    };
    // SAFETY: pointers to locals; NULL callbacks are allowed.
    let e = unsafe { SaCkpt::saCkptInitialize(&mut lib, std::ptr::null(), &mut version) };
    match saved {
        Some(v) => std::env::set_var("CKPT_DIR", v),
        None => std::env::remove_var("CKPT_DIR"),
    }
    sa("saCkptInitialize", e)?;
    let name = SaNameT::new(b"safCkpt=bench-c").ok_or("name too long")?;
    let attrs = SaCkptCheckpointCreationAttributesT {
        creation_flags: 0x2 | 0x8, // WR_ACTIVE_REPLICA | COLLOCATED, as csa103
        checkpoint_size: 2 * 64,
        retention_duration: 0,
        max_sections: 2,
        max_section_size: 64,
        max_section_id_size: 16,
    };
    let mut ckpt = 0;
    // SAFETY: pointers to locals.
    let e =
        unsafe { SaCkpt::saCkptCheckpointOpen(lib, &name, &attrs, 0x7, 1_000_000_000, &mut ckpt) };
    sa("saCkptCheckpointOpen", e)?;
    // SAFETY: plain call.
    sa("saCkptActiveReplicaSet", unsafe {
        SaCkpt::saCkptActiveReplicaSet(ckpt)
    })?;
    Ok((lib, ckpt))
}

#[allow(unsafe_code)]
fn measure_c(work: &Work, plan: &Plan) -> Result<(Series, Series, Series, Series), String> {
    use SaCkpt::types::*;
    let (lib, ckpt) = c_open(work)?;
    let mut id_bytes = *b"s64";
    let id = SaCkptSectionIdT {
        id_len: 3,
        id: id_bytes.as_mut_ptr(),
    };
    let data = [0x5Au8; 64];
    let mut create = SaCkptSectionCreationAttributesT {
        section_id: &id as *const _ as *mut _,
        expiration_time: i64::MAX,
    };
    // SAFETY: pointers to locals that outlive the calls.
    let e = unsafe { SaCkpt::saCkptSectionCreate(ckpt, &mut create, data.as_ptr().cast(), 64) };
    sa("saCkptSectionCreate", e)?;
    let n = plan.batch;
    let (mut o, mut r, mut min, mut mout) = Default::default();
    let mut failures = 0u64;
    let mut out = [0u8; 64];
    work.with_memory(128, |memory| {
        let (dst, src) = memory.split_at_mut(64);
        src.fill(0x5A);
        for round in 0..plan.warmup_rounds + plan.rounds {
            let keep = round >= plan.warmup_rounds;
            for k in 0..4 {
                let (series, t): (&mut Series, f64) = match (round + k) % 4 {
                    0 => (
                        &mut o,
                        batch(n, |_| {
                            // SAFETY: the id and the data are locals that
                            // outlive the call.
                            let e = unsafe {
                                SaCkpt::saCkptSectionOverwrite(
                                    black_box(ckpt),
                                    &id,
                                    black_box(&data).as_ptr().cast(),
                                    64,
                                )
                            };
                            failures += (e != SA_AIS_OK) as u64;
                        }),
                    ),
                    1 => (
                        &mut r,
                        batch(n, |_| {
                            let mut iov = SaCkptIOVectorElementT {
                                section_id: id,
                                data_buffer: out.as_mut_ptr().cast(),
                                data_size: 64,
                                data_offset: 0,
                                read_size: 0,
                            };
                            // SAFETY: one element pointing to a local buffer.
                            let e = unsafe {
                                SaCkpt::saCkptCheckpointRead(
                                    black_box(ckpt),
                                    &mut iov,
                                    1,
                                    std::ptr::null_mut(),
                                )
                            };
                            failures += (e != SA_AIS_OK || iov.read_size != 64) as u64;
                            black_box(&mut out);
                        }),
                    ),
                    2 => (
                        &mut min,
                        batch(n, |_| {
                            dst.copy_from_slice(black_box(&data));
                            black_box(&mut *dst);
                        }),
                    ),
                    _ => (
                        &mut mout,
                        batch(n, |_| {
                            out.copy_from_slice(black_box(&*src));
                            black_box(&mut out);
                        }),
                    ),
                };
                if keep {
                    series.record_batch(t, n);
                }
            }
        }
    })?;
    // SAFETY: plain calls; finalize closes the checkpoint (no retention).
    unsafe { SaCkpt::saCkptFinalize(lib) };
    if failures > 0 {
        return Err(format!("{failures} C calls failed"));
    }
    Ok((o, r, min, mout))
}

// ---------------------------------------------------------------------------
// Scenarios 5-6: visibility to a standby in another process

const PING: &[u8] = b"ping";
const PONG: &[u8] = b"pong";
/// The standby's first `pong`: it is following the log.
const READY: u64 = u64::MAX - 1;
/// The last `ping`: the standby exits.
const STOP: u64 = u64::MAX;

fn visibility(work: &Work, plan: &Plan, cmd: Option<&[OsString]>, emit: &mut dyn FnMut(BenchRow)) {
    let spin = "change visible to a SPINNING standby process, one way = RTT/2 of \
                ping->pong, each followed through its checkpoint's delta log \
                (percentiles over round trips)"
        .to_string();
    let spin_base = "raw cache-line ping-pong via AtomicU64s in a shm mapping, RTT/2".to_string();
    let sleep = "change visible to a SLEEPING standby process (futex), one way = RTT/2 \
                 of ping->pong, each followed through its checkpoint's delta log \
                 (percentiles over round trips)"
        .to_string();
    let sleep_base = "pipe ping-pong between the same processes (blocking), RTT/2".to_string();
    const T5: &str = "p50 <= 1 us";
    const T6: &str = "p50 <= 60 us";
    let Some(cmd) = cmd.filter(|c| !c.is_empty()) else {
        let why = "no standby command (BenchOptions::standby_cmd)";
        emit(unmeasured(spin, spin_base, T5, why));
        emit(unmeasured(sleep, sleep_base, T6, why));
        return;
    };
    let with_placement = |v: &Visibility, scenario: &str, baseline: &str| {
        (
            format!("{scenario} [{}{}]", v.ours_placement.describe(), v.note),
            format!("{baseline} [{}]", v.base_placement.describe()),
        )
    };
    match measure_spinning(work, plan, cmd) {
        Ok(v) => {
            let (scenario, baseline) = with_placement(&v, &spin, &spin_base);
            emit(row(scenario, &v.ours, baseline, &v.base, T5, |s| {
                s.p50_ns <= 1e3
            }))
        }
        Err(why) => emit(unmeasured(spin, spin_base, T5, &why)),
    }
    match measure_sleeping(work, plan, cmd) {
        Ok(v) => {
            let (scenario, baseline) = with_placement(&v, &sleep, &sleep_base);
            emit(row(scenario, &v.ours, baseline, &v.base, T6, |s| {
                s.p50_ns <= 60e3
            }))
        }
        Err(why) => emit(unmeasured(sleep, sleep_base, T6, &why)),
    }
}

/// A standby process, killed if still running when dropped.
struct Standby {
    child: Child,
}

impl Standby {
    fn spawn(cmd: &[OsString], args: &[String], pipes: bool) -> Result<Standby, String> {
        let stdio = || if pipes { Stdio::piped() } else { Stdio::null() };
        let child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .args(args)
            .stdin(stdio())
            .stdout(stdio())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the standby {:?}: {e}", cmd[0]))?;
        Ok(Standby { child })
    }

    /// Waits for the standby to exit on its own; an error carries its stderr.
    fn finish(mut self) -> Result<(), String> {
        let deadline = Instant::now() + ROUND_TRIP_TIMEOUT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Ok(None) => return Err("the standby did not exit".into()),
                Err(e) => return Err(format!("waiting for the standby: {e}")),
            }
        };
        if status.success() {
            Ok(())
        } else {
            Err(format!("the standby failed ({status}): {}", self.stderr()))
        }
    }

    /// While waiting for the standby to report ready: why to give up, if so
    /// (it exited, or did not answer within [`READY_TIMEOUT`]).
    fn not_ready(&mut self, started: Instant) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("the standby exited ({status})")),
            Err(e) => Some(format!("waiting for the standby: {e}")),
            Ok(None) if started.elapsed() > READY_TIMEOUT => Some(format!(
                "the standby was not ready within {READY_TIMEOUT:?}"
            )),
            Ok(None) => None,
        }
    }

    /// What the standby printed on stderr (once it has exited or been killed).
    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut text);
        }
        text.trim().to_string()
    }

    /// Turns a failure into a message that includes the standby's stderr.
    fn failed(&mut self, what: String) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        match self.stderr() {
            e if e.is_empty() => what,
            e => format!("{what}; standby: {e}"),
        }
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Our side of the ckpt ping-pong.
struct CkptPeer<'a> {
    /// The checkpoint only we write (section `ping`).
    ping_seg: &'a Segment,
    ping: SectionRef,
    /// Follows the checkpoint only the standby writes (section `pong`).
    consumer: Consumer<'a>,
    spin: Duration,
    standby: Standby,
}

impl<'a> CkptPeer<'a> {
    /// Starts a standby that follows `segs.0` (`NAME-ping`) and answers in
    /// `segs.1` (`NAME-pong`).
    fn start(
        work: &Work,
        segs: &'a (Segment, Segment),
        name: &str,
        cmd: &[OsString],
        spin: Duration,
    ) -> Result<CkptPeer<'a>, String> {
        let ping = lookup(&segs.0, PING)?;
        let consumer = segs.1.consumer(None);
        let args = [
            "ckpt-pong".to_string(),
            work.dir.0.to_string_lossy().into_owned(),
            name.to_string(),
            spin.as_micros().to_string(),
        ];
        let standby = Standby::spawn(cmd, &args, false)?;
        let mut peer = CkptPeer {
            ping_seg: &segs.0,
            ping,
            consumer,
            spin,
            standby,
        };
        peer.await_ready()?;
        Ok(peer)
    }

    fn stop(mut self) -> Result<(), String> {
        if let Err(e) = self.ping_seg.write(self.ping, None, &STOP.to_le_bytes()) {
            return Err(self.standby.failed(format!("stop write: {e:?}")));
        }
        self.standby.finish()
    }
}

impl Peer for CkptPeer<'_> {
    fn send(&mut self, value: u64) -> Result<(), String> {
        self.ping_seg
            .write(self.ping, None, &value.to_le_bytes())
            .map_err(|e| format!("ping write: {e:?}"))
    }

    fn await_pong(&mut self, value: u64, start: Instant, timeout: Duration) -> Result<(), String> {
        let want = value.to_le_bytes();
        loop {
            while let Some(frame) = self
                .consumer
                .next_frame()
                .map_err(|e| format!("log: {e}"))?
            {
                if frame.header.kind == FrameKind::Overwrite
                    && frame.id == PONG
                    && frame.data == want
                {
                    return Ok(());
                }
            }
            if start.elapsed() > timeout {
                return Err(format!("no pong within {timeout:?}"));
            }
            self.consumer.wait(Duration::from_millis(50), self.spin);
        }
    }

    fn standby(&mut self) -> &mut Standby {
        &mut self.standby
    }
}

/// Creates the ping-pong checkpoints of one scenario: `NAME-ping`, written
/// only by us, and `NAME-pong`, written only by the standby. One writer per
/// checkpoint, as between an active and its standbys: neither side ever waits
/// for the other's writer claim.
fn pingpong_segments(work: &Work, name: &str) -> Result<(Segment, Segment), String> {
    let make = |suffix: &str, id: &[u8]| {
        let seg = create(
            &work.config(None),
            &format!("{name}-{suffix}"),
            attributes(2, 64),
        )?;
        seg.create_section(Some(id), Time::END, &0u64.to_le_bytes())
            .map_err(|e| format!("create section: {e:?}"))?;
        Ok::<_, String>(seg)
    };
    Ok((make("ping", PING)?, make("pong", PONG)?))
}

/// Our side of the raw cache-line ping-pong.
struct RawPeer<'a> {
    ping: &'a AtomicU64,
    pong: &'a AtomicU64,
    standby: Standby,
}

impl<'a> RawPeer<'a> {
    fn start(
        work: &Work,
        seg: &'a Segment,
        name: &str,
        cmd: &[OsString],
    ) -> Result<RawPeer<'a>, String> {
        let (ping, pong) = raw_words(seg);
        ping.store(0, Ordering::SeqCst);
        pong.store(0, Ordering::SeqCst);
        let args = [
            "raw-pong".to_string(),
            work.dir.0.to_string_lossy().into_owned(),
            name.to_string(),
        ];
        let standby = Standby::spawn(cmd, &args, false)?;
        let mut peer = RawPeer {
            ping,
            pong,
            standby,
        };
        peer.await_ready()?;
        Ok(peer)
    }

    fn stop(self) -> Result<(), String> {
        self.ping.store(STOP, Ordering::Release);
        self.standby.finish()
    }
}

impl Peer for RawPeer<'_> {
    fn send(&mut self, value: u64) -> Result<(), String> {
        self.ping.store(value, Ordering::Release);
        Ok(())
    }

    fn await_pong(&mut self, value: u64, start: Instant, timeout: Duration) -> Result<(), String> {
        let mut spins = 0u32;
        while self.pong.load(Ordering::Acquire) != value {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins % 4096 == 0 && start.elapsed() > timeout {
                return Err(format!("no pong within {timeout:?}"));
            }
        }
        Ok(())
    }

    fn standby(&mut self) -> &mut Standby {
        &mut self.standby
    }
}

/// The raw ping-pong's words: two header atomics in different cache lines of
/// a segment used for nothing else.
fn raw_words(seg: &Segment) -> (&AtomicU64, &AtomicU64) {
    let h = seg.header();
    (&h.next_generated_id, &h.recoveries)
}

/// Our side of the pipe ping-pong.
struct PipePeer {
    to: ChildStdin,
    from: ChildStdout,
    standby: Standby,
}

impl PipePeer {
    fn start(cmd: &[OsString]) -> Result<PipePeer, String> {
        let mut standby = Standby::spawn(cmd, &["pipe-pong".to_string()], true)?;
        let (Some(to), Some(from)) = (standby.child.stdin.take(), standby.child.stdout.take())
        else {
            return Err("the standby's pipes are missing".into());
        };
        let mut peer = PipePeer { to, from, standby };
        peer.round_trip(READY)?;
        Ok(peer)
    }

    fn stop(self) -> Result<(), String> {
        let PipePeer { to, from, standby } = self;
        drop(to);
        drop(from);
        standby.finish()
    }
}

impl Peer for PipePeer {
    fn send(&mut self, value: u64) -> Result<(), String> {
        self.to
            .write_all(&value.to_le_bytes())
            .map_err(|e| self.standby.failed(format!("pipe: {e}")))
    }

    /// Blocks until the echo arrives (a pipe has no timeout).
    fn await_pong(&mut self, value: u64, _: Instant, _: Duration) -> Result<(), String> {
        let mut back = [0u8; 8];
        match self.from.read_exact(&mut back) {
            Ok(()) if back == value.to_le_bytes() => Ok(()),
            Ok(()) => Err("pipe echo mismatch".into()),
            Err(e) => Err(format!("pipe: {e}")),
        }
    }

    fn standby(&mut self) -> &mut Standby {
        &mut self.standby
    }
}

/// One side of a two-process ping-pong: we send a value, the standby sends
/// it back.
trait Peer {
    /// Sends `value` to the standby.
    fn send(&mut self, value: u64) -> Result<(), String>;
    /// Waits until the standby has sent `value` back, at most `timeout`
    /// after `start`.
    fn await_pong(&mut self, value: u64, start: Instant, timeout: Duration) -> Result<(), String>;
    /// The standby process.
    fn standby(&mut self) -> &mut Standby;

    /// One round trip carrying `value`; its duration in ns.
    fn round_trip(&mut self, value: u64) -> Result<f64, String> {
        let start = Instant::now();
        self.send(value)?;
        self.await_pong(value, start, ROUND_TRIP_TIMEOUT)
            .map_err(|e| self.standby().failed(e))?;
        Ok(elapsed_ns(start))
    }

    /// Waits for the standby's first pong (`READY`: it is following), or
    /// says why it never came.
    fn await_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        while let Err(e) = self.await_pong(READY, Instant::now(), READY_POLL) {
            if let Some(why) = self.standby().not_ready(started) {
                return Err(self.standby().failed(format!("{why} ({e})")));
            }
        }
        Ok(())
    }
}

/// Where the two processes ran, sampled after each burst: the scheduler
/// places them, and on a 2-vCPU VM that changes wake-up costs by 10x.
#[derive(Default)]
struct Placement {
    same: u32,
    sampled: u32,
}

impl Placement {
    fn sample(&mut self, standby: u32) {
        if let (Some(a), Some(b)) = (last_cpu("self"), last_cpu(&standby.to_string())) {
            self.sampled += 1;
            self.same += (a == b) as u32;
        }
    }

    fn describe(&self) -> String {
        if self.sampled == 0 {
            "placement unknown".into()
        } else {
            format!("same vCPU after {} of {} bursts", self.same, self.sampled)
        }
    }
}

/// The CPU a process last ran on (`/proc/PID/stat` field 39).
fn last_cpu(pid: &str) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(36)?.parse().ok()
}

/// Alternates bursts of round trips of two peers; records one-way = RTT/2.
/// Stops early (after a whole pair of bursts) once `budget` has passed: on a
/// loaded host, spinning pairs lose milliseconds to preemption at every turn.
fn interleave_bursts(
    bursts: u32,
    per_burst: u32,
    budget: Duration,
    ours: &mut dyn Peer,
    base: &mut dyn Peer,
) -> Result<Visibility, String> {
    let mut sides: [(Series, Placement); 2] = Default::default();
    let mut value = 1u64;
    let start = Instant::now();
    let mut note = String::new();
    for burst in 0..bursts {
        if start.elapsed() > budget {
            note = format!("; time budget of {budget:?} hit after {burst} of {bursts} bursts");
            break;
        }
        for k in 0..2 {
            let side = ((burst + k) % 2) as usize;
            let peer: &mut dyn Peer = if side == 0 { &mut *ours } else { &mut *base };
            for i in 0..per_burst {
                let rtt = peer.round_trip(value)?;
                value += 1;
                if i >= BURST_WARMUP {
                    sides[side].0.record(rtt / 2.0, 1, rtt);
                }
            }
            sides[side].1.sample(peer.standby().child.id());
            std::thread::sleep(BURST_PAUSE);
        }
    }
    let [(ours, ours_placement), (base, base_placement)] = sides;
    Ok(Visibility {
        ours,
        ours_placement,
        base,
        base_placement,
        note,
    })
}

/// Visibility measured against its baseline, with where the processes ran.
struct Visibility {
    ours: Series,
    ours_placement: Placement,
    base: Series,
    base_placement: Placement,
    /// Says so if the time budget cut the run short.
    note: String,
}

fn measure_spinning(work: &Work, plan: &Plan, cmd: &[OsString]) -> Result<Visibility, String> {
    let segs = pingpong_segments(work, "bench-spin")?;
    let raw_seg = create(&work.config(None), "bench-spin-raw", attributes(2, 64))?;
    let mut ckpt = CkptPeer::start(work, &segs, "bench-spin", cmd, STANDBY_SPIN)?;
    let mut raw = RawPeer::start(work, &raw_seg, "bench-spin-raw", cmd)?;
    let result = interleave_bursts(
        plan.spin_bursts,
        plan.spin_per_burst + BURST_WARMUP,
        plan.visibility_budget,
        &mut ckpt,
        &mut raw,
    );
    let stopped = ckpt.stop().and(raw.stop());
    let visibility = result?;
    stopped?;
    Ok(visibility)
}

fn measure_sleeping(work: &Work, plan: &Plan, cmd: &[OsString]) -> Result<Visibility, String> {
    let segs = pingpong_segments(work, "bench-sleep")?;
    let mut ckpt = CkptPeer::start(work, &segs, "bench-sleep", cmd, Duration::ZERO)?;
    let mut pipe = PipePeer::start(cmd)?;
    let result = interleave_bursts(
        plan.sleep_bursts,
        plan.sleep_per_burst + BURST_WARMUP,
        plan.visibility_budget,
        &mut ckpt,
        &mut pipe,
    );
    let stopped = ckpt.stop().and(pipe.stop());
    let visibility = result?;
    stopped?;
    Ok(visibility)
}

/// `ckpt-pong`: follow `NAME-ping`'s log; answer each `ping` with a `pong`
/// in `NAME-pong`.
fn ckpt_pong(dir: &Path, name: &str, spin: Duration) -> Result<(), String> {
    let config = Config::with_dir(dir);
    let ping_seg = open_existing(&config, &format!("{name}-ping"))?;
    let seg = open_existing(&config, &format!("{name}-pong"))?;
    let pong = lookup(&seg, PONG)?;
    let mut consumer = ping_seg.consumer(None);
    seg.write(pong, None, &READY.to_le_bytes())
        .map_err(|e| format!("ready write: {e:?}"))?;
    let mut last_ping = Instant::now();
    loop {
        let mut latest = None;
        while let Some(frame) = consumer.next_frame().map_err(|e| format!("log: {e}"))? {
            if frame.header.kind == FrameKind::Overwrite && frame.id == PING {
                let bytes: [u8; 8] = frame.data.try_into().map_err(|_| "short ping")?;
                latest = Some(u64::from_le_bytes(bytes));
            }
        }
        match latest {
            Some(STOP) => return Ok(()),
            Some(value) => {
                seg.write(pong, None, &value.to_le_bytes())
                    .map_err(|e| format!("pong write: {e:?}"))?;
                last_ping = Instant::now();
            }
            None if last_ping.elapsed() > STANDBY_IDLE_TIMEOUT => {
                return Err("no ping for 30 s".into())
            }
            None => {
                consumer.wait(Duration::from_millis(100), spin);
            }
        }
    }
}

/// `raw-pong`: copy the ping word into the pong word whenever it changes.
fn raw_pong(dir: &Path, name: &str) -> Result<(), String> {
    let seg = open_existing(&Config::with_dir(dir), name)?;
    let (ping, pong) = raw_words(&seg);
    let mut last = ping.load(Ordering::Acquire);
    pong.store(READY, Ordering::Release);
    let mut idle_spins = 0u32;
    let mut idle_since: Option<Instant> = None;
    loop {
        let value = ping.load(Ordering::Acquire);
        if value != last {
            if value == STOP {
                return Ok(());
            }
            pong.store(value, Ordering::Release);
            last = value;
            idle_spins = 0;
            idle_since = None;
            continue;
        }
        idle_spins = idle_spins.wrapping_add(1);
        if idle_spins % 1024 == 0 {
            // Spin about as long as the ckpt standby does, then park in short
            // sleeps (between bursts) so the two vCPUs do not both spin.
            let idle = idle_since.get_or_insert_with(Instant::now).elapsed();
            if idle > STANDBY_IDLE_TIMEOUT {
                return Err("no ping for 30 s".into());
            }
            if idle > STANDBY_SPIN {
                std::thread::sleep(Duration::from_micros(50));
            }
        } else {
            std::hint::spin_loop();
        }
    }
}

/// `pipe-pong`: echo 8-byte messages until stdin closes.
fn pipe_pong() -> Result<(), String> {
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    let mut message = [0u8; 8];
    loop {
        match input.read_exact(&mut message) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(format!("stdin: {e}")),
        }
        output
            .write_all(&message)
            .and_then(|()| output.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
}

// ---------------------------------------------------------------------------
// Scenario 7: standby takeover

fn takeover(work: &Work, plan: &Plan, emit: &mut dyn FnMut(BenchRow)) {
    let n = plan.takeover_sections;
    let size = if n >= 1024 {
        format!("{} GiB", n / 1024)
    } else {
        format!("{n} MiB")
    };
    let quick = if n < 1024 { ", quick mode" } else { "" };
    let scenario = format!(
        "standby takeover of an already-mapped {size} checkpoint ({n} x 1 MiB{quick}): \
         open + set active + lookup & 0-byte read of every section (percentiles over {} takeovers)",
        plan.takeover_reps
    );
    let baseline = "open of the directory and the file + fstat + mmap (no populate) + \
                    header check of the same file (ckpt_shm::segment::inspect)"
        .to_string();
    const T7: &str = "<= 1 ms";
    match measure_takeover(work, plan) {
        Ok((ours, base)) => emit(row(scenario, &ours, baseline, &base, T7, |s| {
            s.p50_ns <= 1e6
        })),
        Err(why) => emit(unmeasured(scenario, baseline, T7, &why)),
    }
}

fn measure_takeover(work: &Work, plan: &Plan) -> Result<(Series, Series), String> {
    const NAME: &str = "bench-takeover";
    const SECTION_BYTES: usize = 1 << 20;
    let n = plan.takeover_sections;
    // A 1 MiB ring elides the 1 MiB frames: the fill copies the data once.
    let config = work.config(Some(1 << 20));
    let creator = create(&config, NAME, attributes(n, SECTION_BYTES as u64))?;
    let ids: Vec<Vec<u8>> = (0..n).map(|i| format!("t{i:05}").into_bytes()).collect();
    let mut chunk = vec![0u8; SECTION_BYTES];
    for (i, id) in ids.iter().enumerate() {
        chunk.fill(i as u8);
        creator
            .create_section(Some(id), Time::END, &chunk)
            .map_err(|e| format!("fill: {e:?}"))?;
    }
    drop(chunk);
    let take_over = || -> Result<f64, String> {
        let start = Instant::now();
        let standby = open_existing(&config, NAME)?;
        standby
            .set_active_replica(config.node_id)
            .map_err(|e| format!("set active replica: {e:?}"))?;
        let mut versions = 0u64;
        for id in &ids {
            let section = lookup(&standby, id)?;
            let (_, meta) = standby
                .read(section, 0, &mut [])
                .map_err(|e| format!("read: {e:?}"))?;
            versions += meta.version;
        }
        let took = elapsed_ns(start);
        black_box(versions);
        drop(standby);
        Ok(took)
    };
    let name = CheckpointName::new(NAME).map_err(|e| format!("name: {e:?}"))?;
    let map_only = || -> Result<f64, String> {
        let start = Instant::now();
        let mapped =
            ckpt_shm::segment::inspect(&config, &name).map_err(|e| format!("inspect: {e:?}"))?;
        black_box(mapped.header().magic);
        let took = elapsed_ns(start);
        drop(mapped);
        Ok(took)
    };
    let (mut ours, mut base) = (Series::default(), Series::default());
    // One untimed pass of each first.
    take_over()?;
    map_only()?;
    for rep in 0..plan.takeover_reps {
        for side in 0..2 {
            if (rep + side) % 2 == 0 {
                let t = take_over()?;
                ours.record(t, 1, t);
            } else {
                let t = map_only()?;
                base.record(t, 1, t);
            }
        }
    }
    Ok((ours, base))
}

// ---------------------------------------------------------------------------
// Scenario 8: iteration

const ITERATE_SECTIONS: u32 = 100_000;

fn iterate(work: &Work, plan: &Plan, emit: &mut dyn FnMut(BenchRow)) {
    let scenario = format!(
        "iterate {ITERATE_SECTIONS} sections (for_each_section), per section \
         (percentiles over {} passes)",
        plan.iterate_passes
    );
    let baseline =
        format!("load one u64 per 64-byte line over {ITERATE_SECTIONS} lines of a shm mapping");
    const T8: &str = "p50 <= 20 ns per section";
    match measure_iterate(work, plan) {
        Ok((ours, base, stride)) => {
            let scenario = format!("{scenario} [slot headers {stride} B apart]");
            emit(row(scenario, &ours, baseline, &base, T8, |s| {
                s.p50_ns <= 20.0
            }))
        }
        Err(why) => emit(unmeasured(scenario, baseline, T8, &why)),
    }
}

/// Ours, the baseline, and the slot-header stride ours walks.
fn measure_iterate(work: &Work, plan: &Plan) -> Result<(Series, Series, u64), String> {
    let seg = create(
        &work.config(Some(1 << 20)),
        "bench-iterate",
        attributes(ITERATE_SECTIONS, 64),
    )?;
    for i in 0..ITERATE_SECTIONS {
        seg.create_section(
            Some(format!("s{i}").as_bytes()),
            Time::END,
            &(i as u64).to_le_bytes(),
        )
        .map_err(|e| format!("create section {i}: {e:?}"))?;
    }
    let sections = ITERATE_SECTIONS as u64;
    let mut missing = 0u64;
    let series = work.with_memory(SCRATCH_BYTES, |lines| {
        let mut pass = |ours_now: bool| -> f64 {
            let start = Instant::now();
            if ours_now {
                let (mut seen, mut bytes) = (0u64, 0u64);
                seg.for_each_section(SectionsChosen::Any, |view| {
                    seen += 1;
                    bytes += view.size_bytes + view.id.len() as u64;
                });
                black_box(bytes);
                missing += sections.abs_diff(seen);
            } else {
                let mut sum = 0u64;
                for line in black_box(&*lines).chunks_exact(64) {
                    sum = sum
                        .wrapping_add(u64::from_le_bytes(line[..8].try_into().unwrap_or_default()));
                }
                black_box(sum);
            }
            elapsed_ns(start) / sections as f64
        };
        pass(true);
        pass(false);
        let (mut ours, mut base) = (Series::default(), Series::default());
        for p in 0..plan.iterate_passes {
            for side in 0..2 {
                let ours_now = (p + side) % 2 == 0;
                let t = pass(ours_now);
                let series = if ours_now { &mut ours } else { &mut base };
                series.record(t, sections, t * sections as f64);
            }
        }
        (ours, base)
    })?;
    if missing > 0 {
        return Err(format!("iteration missed {missing} sections"));
    }
    let stride = seg.geometry().slot_header_stride;
    Ok((series.0, series.1, stride))
}

// ---------------------------------------------------------------------------
// Scenario 9: frames applied into a replica segment

fn apply_rate(work: &Work, plan: &Plan, emit: &mut dyn FnMut(BenchRow)) {
    let n = plan.batch;
    let scenario = format!(
        "64 B overwrite frames applied into a replica segment (Segment::apply_all: a \
         received batch under one claim; percentiles over batches of {n})"
    );
    let baseline = "the same 64 B overwrites made on the primary (Segment::write)".to_string();
    const T9: &str = ">= 10 M frames/s";
    match measure_apply(work, plan) {
        Ok((ours, base)) => emit(row(scenario, &ours, baseline, &base, T9, |s| {
            s.ops_per_s >= 10e6
        })),
        Err(why) => emit(unmeasured(scenario, baseline, T9, &why)),
    }
}

fn measure_apply(work: &Work, plan: &Plan) -> Result<(Series, Series), String> {
    let n = plan.batch as usize;
    let batches = (plan.rounds / 20).max(20) as usize;
    // 1 MiB rings: warm after a few batches (a fresh page costs a fault).
    let primary_config = work.config(Some(1 << 20));
    let replica_dir = work.dir.0.join("replica");
    std::fs::create_dir_all(&replica_dir).map_err(|e| format!("replica dir: {e}"))?;
    let replica_config = Config {
        log_bytes: Some(1 << 20),
        ..Config::with_dir(&replica_dir)
    };
    let primary = create(&primary_config, "bench-apply", attributes(4, 64))?;
    let mut consumer = primary.consumer(Some(0));
    let created = consumer
        .next_frame()
        .map_err(|e| format!("log: {e}"))?
        .ok_or("no creation frame")?;
    let replica = Segment::open_replica(&replica_config, &created)
        .map_err(|e| format!("open replica: {e:?}"))?;
    let section = primary
        .create_section(Some(b"s64"), Time::END, &[0; 64])
        .map_err(|e| format!("create section: {e:?}"))?
        .0;
    let data = [0x5Au8; 64];
    let (mut ours, mut base) = (Series::default(), Series::default());
    // Frames are shipped in batches as owned bytes (as a network receiver has them).
    let mut frames: Vec<Vec<u8>> = Vec::with_capacity(n + 1);
    for round in 0..batches {
        frames.clear();
        let t = batch(n as u32, |_| {
            let _ = primary.write(section, None, black_box(&data));
        });
        base.record_batch(t, n as u32);
        while let Some(frame) = consumer.next_frame().map_err(|e| format!("log: {e}"))? {
            let bytes = ckpt_core::frame::frame_bytes(frame.id.len(), frame.data.len());
            let mut out = vec![0u8; bytes];
            ckpt_core::frame::encode(&frame.header, frame.id, frame.data, &mut out)
                .map_err(|e| format!("encode: {e}"))?;
            frames.push(out);
        }
        let decoded: Vec<_> = frames
            .iter()
            .map(|f| ckpt_core::frame::decode(f, false))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("decode: {e}"))?;
        let start = Instant::now();
        replica
            .apply_all(decoded.iter().copied())
            .map_err(|(i, e)| format!("apply (round {round}, frame {i}): {e}"))?;
        let count = decoded.len().max(1);
        let took = elapsed_ns(start);
        ours.record(took / count as f64, count as u64, took);
    }
    Ok((ours, base))
}

// ---------------------------------------------------------------------------
// Scenarios R1-R2: replication between two directories over loopback TCP

/// Updates per timed batch of the replicated-throughput scenario for
/// `size`-byte sections: about 1 MiB of data (16,000 for 64 B), enough that
/// the link's start-up (a few cross-vCPU wake-ups) does not count.
fn replicated_batch(size: usize) -> u32 {
    ((1usize << 20) / size).clamp(16, 16_000) as u32
}

/// The replicated-throughput sizes and their targets: updates per second,
/// or (`None`) at least 70 % of the raw stream's.
const REPLICATED_SIZES: [(usize, &str, Option<f64>); 3] = [
    (64, "64 B", Some(5e6)),
    (4096, "4 KiB", Some(270e3)),
    (65536, "64 KiB", None),
];

fn replication(work: &Work, plan: &Plan, emit: &mut dyn FnMut(BenchRow)) {
    // The transport CKPT_TRANSPORT names (auto if unset).
    let (backend, fallback) = ckpt_transport::Auto::from_env();
    use ckpt_transport::Backend;
    let via = match fallback {
        None => format!("transport: {}", backend.name()),
        Some(why) => format!("transport: {} ({why})", backend.name()),
    };
    let mut max_64 = None;
    let mut plain_64 = None;
    let mut plain_4k = None;
    for (size, shown, target) in REPLICATED_SIZES {
        let n = replicated_batch(size);
        let scenario = format!(
            "replicated {shown} overwrites over loopback TCP (ckpt::replication ship/follow, \
             asynchronous mode; per update: batches of {n} written, until the replica holds \
             them) [{via}]"
        );
        let baseline = format!(
            "raw TCP stream of the same frame bytes over the same transport (batches of {n} \
             frames as one message, until the receiver has them and answers)"
        );
        let tr = match target {
            Some(t) => format!(">= {} updates/s", fmt_rate(t)),
            None => ">= 70% of the raw stream".to_string(),
        };
        match measure_replicated(work, plan, backend, size, &Default::default()) {
            Ok((ours, base)) => {
                let floor = base.summary().ops_per_s;
                if size == 64 {
                    max_64 = Some(ours.summary().ops_per_s);
                    plain_64 = Some(ours.clone());
                }
                if size == 4096 {
                    plain_4k = Some(ours.clone());
                }
                emit(row(
                    scenario,
                    &ours,
                    baseline,
                    &base,
                    &tr,
                    |s| match target {
                        Some(t) => s.ops_per_s >= t,
                        None => s.ops_per_s >= 0.7 * floor,
                    },
                ))
            }
            Err(why) => emit(unmeasured(scenario, baseline, &tr, &why)),
        }
    }
    // The io_uring backend's other way to receive, beside the default.
    if let (Some(single), ckpt_transport::Auto::Uring(u)) = (&plain_64, backend) {
        let scenario = "replicated 64 B overwrites received with io_uring multishot recv into \
                        provided buffers (otherwise as the 64 B row above) [transport: \
                        io_uring_multishot]"
            .to_string();
        let baseline =
            "the same with one recv at a time (the 64 B row above, same run)".to_string();
        const TMULTI: &str = "- (a comparison with the default)";
        match u.multishot() {
            Ok(multi) => {
                let multi = ckpt_transport::Auto::Uring(multi);
                match measure_replicated(work, plan, multi, 64, &Default::default()) {
                    Ok((ours, _)) => {
                        let mut r = row(scenario, &ours, baseline, single, TMULTI, |_| true);
                        r.met = None;
                        emit(r)
                    }
                    Err(why) => emit(unmeasured(scenario, baseline, TMULTI, &why)),
                }
            }
            Err(why) => emit(unmeasured(scenario, baseline, TMULTI, &why)),
        }
    }
    let plain_4k_series = plain_4k.clone();
    if let Some(plain) = plain_4k {
        let scenario = format!(
            "replicated 4 KiB overwrites over encrypted links (ChaCha20-Poly1305 under session \
             keys from the cluster key; otherwise as above) [{via}]"
        );
        let baseline = "the same over plain links (the 4 KiB row above, same run)".to_string();
        const TENC: &str = "- (what encryption costs)";
        let sealed = ckpt::replication::LinkOptions {
            key: ckpt::replication::ClusterKey::new(b"the bench's cluster key, 32 bytes"),
            encrypt: true,
            ..Default::default()
        };
        match measure_replicated(work, plan, backend, 4096, &sealed) {
            Ok((ours, _)) => {
                let mut r = row(scenario, &ours, baseline, &plain, TENC, |_| true);
                r.met = None;
                emit(r)
            }
            Err(why) => emit(unmeasured(scenario, baseline, TENC, &why)),
        }
    }
    let scenario = "replication lag p99 of 64 B overwrites at half the maximum replicated rate \
                    (written in a burst each millisecond; write to the replica's frame \
                    applied, by the writer's timestamp in the data; percentiles over writes)"
        .to_string();
    let baseline = "raw one-way message of the frame's size over the same transport (half of \
                    a ping-pong)"
        .to_string();
    const TLAG: &str = "p99 <= 1 ms";
    match max_64.ok_or_else(|| "the 64 B throughput was not measured".to_string()) {
        Ok(max) => match measure_lag(work, plan, backend, max / 2.0) {
            Ok((ours, base)) => emit(row(scenario, &ours, baseline, &base, TLAG, |s| {
                s.p99_ns <= 1e6
            })),
            Err(why) => emit(unmeasured(scenario, baseline, TLAG, &why)),
        },
        Err(why) => emit(unmeasured(scenario, baseline, TLAG, &why)),
    }
    let scenario = format!(
        "sync write 64 B (WR_ALL_REPLICAS: returns once the replica over loopback TCP holds \
         it; percentiles over writes) [{via}]"
    );
    let baseline = "raw TCP ping-pong over the same transport: a message of the write's frame \
                    and an acknowledgement-sized answer"
        .to_string();
    const TR2: &str = "p50 <= 2x baseline";
    let mut sync_64 = None;
    match measure_sync_write(work, plan, backend) {
        Ok((ours, base)) => {
            let floor = base.summary().p50_ns;
            emit(row(scenario, &ours, baseline, &base, TR2, |s| {
                s.p50_ns <= 2.0 * floor
            }));
            sync_64 = Some(ours);
        }
        Err(why) => emit(unmeasured(scenario, baseline, TR2, &why)),
    }
    beside_redis(work, plan, sync_64.as_ref(), plain_4k_series.as_ref(), emit);
    let mib = plan.takeover_sections;
    let scenario = format!(
        "full resync of a {mib} MiB checkpoint (1 MiB sections) into a new replica over \
         loopback TCP (fuzzy snapshot streamed, installed, renamed; per resync, from the \
         link's start until the replica holds the primary's last frame) [{via}]"
    );
    let baseline = format!(
        "raw TCP stream of the same {mib} MiB in 1 MiB messages over the same transport, \
         until the receiver has answered every one"
    );
    let tr3 = format!("<= {:.2} s (0.6 s per GiB)", 0.6 * f64::from(mib) / 1024.0);
    let floor_scenario = format!(
        "full resync of a {mib} MiB checkpoint beside new memory (the same bytes written into \
         a new file in the segment directory: new pages, as the replica's)"
    );
    let floor_baseline = format!("{mib} MiB written into a new file, 1 MiB per write");
    const TFLOOR: &str = "- (what new memory costs here)";
    match measure_resync(work, plan, backend) {
        Ok((ours, base, floor)) => {
            emit(row(scenario, &ours, baseline, &base, &tr3, |s| {
                s.p50_ns <= 0.6e9 * f64::from(mib) / 1024.0
            }));
            let mut r = row(
                floor_scenario,
                &ours,
                floor_baseline,
                &floor,
                TFLOOR,
                |_| true,
            );
            r.met = None;
            emit(r)
        }
        Err(why) => {
            emit(unmeasured(scenario, baseline, &tr3, &why));
            emit(unmeasured(floor_scenario, floor_baseline, TFLOOR, &why))
        }
    }
}

/// The Redis rows: our synchronous write beside Redis SET + WAIT 1, and
/// our replicated 4 KiB throughput beside Redis SETs pipelined to a
/// replica (each batch until the replica holds it). Both are measured in
/// this run, ours in the rows above; skipped with a note where no
/// `redis-server` is installed (CI never needs one).
fn beside_redis(
    work: &Work,
    plan: &Plan,
    sync_64: Option<&Series>,
    replicated_4k: Option<&Series>,
    emit: &mut dyn FnMut(BenchRow),
) {
    let sync_scenario = "Redis comparison: sync write 64 B (ours: the sync write row above) \
                         beside Redis SET of 64 B + WAIT 1 with one replica over loopback \
                         (percentiles over writes)"
        .to_string();
    let sync_baseline =
        "Redis SET + WAIT 1 (a primary and one replica, started for the run)".to_string();
    const TSYNC: &str = "sync write p50 below Redis SET + WAIT 1";
    let n = replicated_batch(4096);
    let put_scenario = format!(
        "Redis comparison: replicated 4 KiB updates (ours: the replicated 4 KiB row above) \
         beside Redis SETs of 4 KiB pipelined in batches of {n}, each batch until WAIT 1 says \
         the replica holds it (per update)"
    );
    let put_baseline = "Redis SET pipelined, one replica, WAIT 1 per batch".to_string();
    const TPUT: &str = "- (a comparison)";
    let skip = |why: &str, emit: &mut dyn FnMut(BenchRow)| {
        emit(unmeasured(
            sync_scenario.clone(),
            sync_baseline.clone(),
            TSYNC,
            why,
        ));
        emit(unmeasured(
            put_scenario.clone(),
            put_baseline.clone(),
            TPUT,
            why,
        ));
    };
    if !redis::installed() {
        return skip("skipped: no redis-server binary on this machine", emit);
    }
    let dir = work.dir.0.join("redis");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return skip(&format!("redis directory: {e}"), emit);
    }
    let measured = redis::Pair::start(&dir).and_then(|pair| {
        let mut client = pair.client()?;
        let writes = (plan.rounds / 4).clamp(200, 3000);
        let sync = redis::set_wait(&mut client, 64, writes)?;
        let put = redis::pipelined_sets(&mut client, 4096, n, (plan.rounds / 200).max(8))?;
        Ok((sync, put))
    });
    let (sync, put) = match measured {
        Ok(m) => m,
        Err(why) => return skip(&why, emit),
    };
    match sync_64 {
        Some(ours) => {
            let theirs = sync.summary().p50_ns;
            emit(row(sync_scenario, ours, sync_baseline, &sync, TSYNC, |s| {
                s.p50_ns < theirs
            }))
        }
        None => emit(unmeasured(
            sync_scenario,
            sync_baseline,
            TSYNC,
            "our sync write was not measured",
        )),
    }
    match replicated_4k {
        Some(ours) => {
            let mut r = row(put_scenario, ours, put_baseline, &put, TPUT, |_| true);
            r.met = None;
            emit(r)
        }
        None => emit(unmeasured(
            put_scenario,
            put_baseline,
            TPUT,
            "our replicated 4 KiB was not measured",
        )),
    }
}

/// Timed resyncs (and as many baseline streams).
const RESYNC_REPS: u32 = 3;

/// A primary of `plan.takeover_sections` 1 MiB sections whose ring has
/// lapped; each rep starts a link to a new, empty replica directory and
/// times until the replica (installed from a snapshot) holds the primary's
/// last frame.
fn measure_resync(
    work: &Work,
    plan: &Plan,
    backend: ckpt_transport::Auto,
) -> Result<(Series, Series, Series), String> {
    use ckpt_transport::{Backend, Connection, Listener};
    let sections = plan.takeover_sections;
    let name = "bench-resync";
    let attrs = CreationAttributes {
        flags: ckpt_core::CreationFlags::new(ckpt_core::UpdateMode::ActiveReplica, true),
        ..attributes(sections, 1 << 20)
    };
    let primary = create(&work.config(Some(4 << 20)), name, attrs)?;
    primary
        .set_active_replica(0)
        .map_err(|e| format!("set active replica: {e:?}"))?;
    let mut data = vec![0u8; 1 << 20];
    for i in 0..sections {
        data.fill(i as u8);
        primary
            .create_section(Some(&i.to_be_bytes()), Time::END, &data)
            .map_err(|e| format!("create section: {e:?}"))?;
    }
    let opts = ckpt::replication::LinkOptions::default();
    let (mut ours, mut base, mut floor) = (Series::default(), Series::default(), Series::default());
    for rep in 0..RESYNC_REPS {
        let stop = std::sync::atomic::AtomicBool::new(false);
        let replica_dir = work.dir.0.join(format!("resync-{rep}"));
        let (listener, addr, replica_config) = link_ends(backend, &replica_dir, &opts)?;
        let cname = CheckpointName::new(name).map_err(|e| format!("{name}: {e:?}"))?;
        let want = primary.last_seq();
        let took = std::thread::scope(|s| {
            let start = Instant::now();
            s.spawn(|| {
                if let Ok(Some((mut conn, _))) = listener.accept(Duration::from_secs(5)) {
                    let _ = ckpt::replication::ship(&primary, 2, true, &mut conn, &opts, &stop);
                }
            });
            let follower = s.spawn(|| {
                let mut conn = backend
                    .connect(addr, Duration::from_secs(5), opts.max_message)
                    .map_err(|e| format!("connect: {e}"))?;
                ckpt::replication::follow(&replica_config, &cname, &mut conn, &opts, &stop)
                    .map_err(|e| format!("follow: {e}"))
            });
            let deadline = start + Duration::from_secs(60);
            let result = loop {
                let held = open_existing(&replica_config, name)
                    .map(|r| r.last_seq())
                    .unwrap_or(0);
                if held == want {
                    break Ok(elapsed_ns(start));
                }
                if Instant::now() > deadline || follower.is_finished() {
                    break Err(format!("the replica holds {held} of {want}"));
                }
                std::thread::sleep(Duration::from_micros(200));
            };
            stop.store(true, Ordering::Relaxed);
            let followed = follower.join();
            result.map_err(|e| match followed {
                Ok(Err(why)) => format!("{e} ({why})"),
                _ => e,
            })
        })?;
        std::fs::remove_dir_all(&replica_dir).map_err(|e| format!("replica dir: {e}"))?;
        // The same bytes, raw.
        let (mut client, mut server) = raw_pair(backend)?;
        let message = raw_message(1 << 20);
        let ack = raw_message(ckpt_core::frame::MESSAGE_HEADER_BYTES);
        let raw = std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..sections {
                    let got = server.recv(ROUND_TRIP_TIMEOUT).map(|m| m.is_some());
                    if got.ok() != Some(true) || server.send(&[&ack]).is_err() {
                        return;
                    }
                }
            });
            let start = Instant::now();
            for _ in 0..sections {
                client
                    .send(&[&message])
                    .map_err(|e| format!("raw send: {e}"))?;
            }
            for _ in 0..sections {
                client
                    .recv(ROUND_TRIP_TIMEOUT)
                    .map_err(|e| format!("raw recv: {e}"))?
                    .ok_or("raw answer timed out")?;
            }
            Ok::<f64, String>(elapsed_ns(start))
        })?;
        // The replica's pages are new memory: the same bytes written into
        // a new file of the segment directory's kind, 1 MiB per write.
        let fresh = write_fresh(&work.dir.0.join(format!("fresh-{rep}")), sections)?;
        // One resync per sample: ops/s is resyncs per second.
        ours.record(took, 1, took);
        base.record(raw, 1, raw);
        floor.record(fresh, 1, fresh);
    }
    Ok((ours, base, floor))
}

/// Writes `mib` MiB into new file `path` (1 MiB per write), removes it, and
/// returns how long the writes took: what putting that much data into new
/// shared memory costs on this machine.
fn write_fresh(path: &Path, mib: u32) -> Result<f64, String> {
    let chunk = vec![0x5Au8; 1 << 20];
    let mut f = std::fs::File::create(path).map_err(|e| format!("fresh file: {e}"))?;
    let start = Instant::now();
    for _ in 0..mib {
        f.write_all(&chunk)
            .map_err(|e| format!("fresh file: {e}"))?;
    }
    let took = elapsed_ns(start);
    drop(f);
    std::fs::remove_file(path).map_err(|e| format!("fresh file: {e}"))?;
    Ok(took)
}

/// The two ends of a bench link over loopback: the primary's listener and
/// its address, and the replica's configuration (directory `replica_dir`,
/// made here; a 4 MiB ring).
fn link_ends(
    backend: ckpt_transport::Auto,
    replica_dir: &Path,
    opts: &ckpt::replication::LinkOptions,
) -> Result<(ckpt_transport::AutoListen, std::net::SocketAddr, Config), String> {
    use ckpt_transport::{Backend, Listener};
    let listener = backend
        .listen("127.0.0.1:0".parse().expect("an address"), opts.max_message)
        .map_err(|e| format!("listen: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("listen: {e}"))?;
    std::fs::create_dir_all(replica_dir).map_err(|e| format!("replica dir: {e}"))?;
    let replica_config = Config {
        log_bytes: Some(4 << 20),
        ..Config::with_dir(replica_dir)
    };
    Ok((listener, addr, replica_config))
}

/// A link between the primary `name` (in the run's directory) and its
/// replica (in a subdirectory), run by two threads until dropped.
struct BenchLink {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    replica: Segment,
}

impl BenchLink {
    fn start(
        work: &Work,
        backend: ckpt_transport::Auto,
        primary: &std::sync::Arc<Segment>,
        name: &str,
        opts: &ckpt::replication::LinkOptions,
    ) -> Result<BenchLink, String> {
        use ckpt_transport::{Backend, Listener};
        let opts = opts.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let replica_dir = work.dir.0.join(format!("replica-{name}"));
        let (listener, addr, replica_config) = link_ends(backend, &replica_dir, &opts)?;
        let (p, s1, s2) = (primary.clone(), stop.clone(), stop.clone());
        let ship_opts = opts.clone();
        let shipper = std::thread::spawn(move || {
            if let Ok(Some((mut conn, _))) = listener.accept(Duration::from_secs(5)) {
                let _ = ckpt::replication::ship(&p, 2, true, &mut conn, &ship_opts, &s1);
            }
        });
        let cname = CheckpointName::new(name).map_err(|e| format!("{name}: {e:?}"))?;
        let config = replica_config.clone();
        let follower = std::thread::spawn(move || {
            if let Ok(mut conn) = backend.connect(addr, Duration::from_secs(5), opts.max_message) {
                let _ = ckpt::replication::follow(&config, &cname, &mut conn, &opts, &s2);
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let replica = loop {
            if let Ok(r) = open_existing(&replica_config, name) {
                break r;
            }
            if Instant::now() > deadline {
                stop.store(true, Ordering::Relaxed);
                return Err("the replica did not appear".into());
            }
            std::thread::sleep(READY_POLL);
        };
        Ok(BenchLink {
            stop,
            threads: vec![shipper, follower],
            replica,
        })
    }

    /// Waits until the replica holds frame `seq`.
    fn wait_for(&self, seq: u64) -> Result<(), String> {
        let deadline = Instant::now() + ROUND_TRIP_TIMEOUT;
        while self.replica.last_seq() < seq {
            if Instant::now() > deadline {
                return Err(format!(
                    "the replica holds {} of {seq}",
                    self.replica.last_seq()
                ));
            }
            // Not a spin: the link's two threads need the machine's two vCPUs.
            std::thread::sleep(Duration::from_micros(20));
        }
        Ok(())
    }
}

impl Drop for BenchLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A primary for the replication scenarios: one 64 B section `s64`.
fn bench_primary(
    work: &Work,
    name: &str,
    mode: ckpt_core::UpdateMode,
    size: usize,
) -> Result<(std::sync::Arc<Segment>, SectionRef), String> {
    let attrs = CreationAttributes {
        flags: ckpt_core::CreationFlags::new(mode, mode.is_asynchronous()),
        ..attributes(4, size as u64)
    };
    // A ring that holds two batches of the throughput scenario (4 MiB at
    // least): the link never falls behind it.
    let batch = replicated_batch(size) as u64 * ckpt_core::frame::frame_bytes(3, size) as u64;
    let ring = (2 * batch).next_power_of_two().max(4 << 20);
    let primary = create(&work.config(Some(ring)), name, attrs)?;
    if mode.is_asynchronous() {
        primary
            .set_active_replica(0)
            .map_err(|e| format!("set active replica: {e:?}"))?;
    }
    let (section, _) = primary
        .create_section(Some(b"s64"), Time::END, &vec![0; size])
        .map_err(|e| format!("create section: {e:?}"))?;
    Ok((std::sync::Arc::new(primary), section))
}

/// Two connected ends of the transport, for the baselines.
fn raw_pair(
    backend: ckpt_transport::Auto,
) -> Result<(ckpt_transport::AutoConn, ckpt_transport::AutoConn), String> {
    use ckpt_transport::{Backend, Listener};
    let tcp = backend;
    let listener = tcp
        .listen("127.0.0.1:0".parse().expect("an address"), 64 << 20)
        .map_err(|e| format!("listen: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("listen: {e}"))?;
    let client = tcp
        .connect(addr, Duration::from_secs(5), 64 << 20)
        .map_err(|e| format!("connect: {e}"))?;
    let (server, _) = listener
        .accept(Duration::from_secs(5))
        .map_err(|e| format!("accept: {e}"))?
        .ok_or("no connection")?;
    Ok((client, server))
}

/// A message of `bytes` (a multiple of 8, at least a header) whose first
/// word says so, as the transport frames messages.
fn raw_message(bytes: usize) -> Vec<u8> {
    let mut m = vec![0u8; bytes];
    m[..4].copy_from_slice(&(bytes as u32).to_le_bytes());
    m
}

/// One baseline round trip: `message` out, the echo's answer back; its ns.
fn raw_round_trip(client: &mut ckpt_transport::AutoConn, message: &[u8]) -> Result<f64, String> {
    use ckpt_transport::Connection;
    let start = Instant::now();
    client
        .send(&[message])
        .map_err(|e| format!("raw send: {e}"))?;
    client
        .recv(ROUND_TRIP_TIMEOUT)
        .map_err(|e| format!("raw recv: {e}"))?
        .ok_or("raw answer timed out")?;
    Ok(elapsed_ns(start))
}

/// The echo side of a baseline: answers every message with `answer` until
/// the connection closes.
fn raw_echo(mut conn: ckpt_transport::AutoConn, answer: Vec<u8>) -> std::thread::JoinHandle<()> {
    use ckpt_transport::Connection;
    std::thread::spawn(move || loop {
        match conn.recv(Duration::from_secs(30)) {
            Ok(Some(_)) => {
                if conn.send(&[&answer]).is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(_) => return,
        }
    })
}

fn measure_replicated(
    work: &Work,
    plan: &Plan,
    backend: ckpt_transport::Auto,
    size: usize,
    opts: &ckpt::replication::LinkOptions,
) -> Result<(Series, Series), String> {
    let n = replicated_batch(size);
    let batches = (plan.rounds / 200).max(8);
    let sealed = if opts.encrypt { "-sealed" } else { "" };
    // One name per transport too: a replica left by another row's link
    // must not be taken for this one's (it may hold later numbers).
    use ckpt_transport::Backend;
    let name = format!("bench-repl-async-{size}{sealed}-{}", backend.name());
    let (primary, section) =
        bench_primary(work, &name, ckpt_core::UpdateMode::ActiveReplica, size)?;
    let link = BenchLink::start(work, backend, &primary, &name, opts)?;
    let frame_bytes = ckpt_core::frame::frame_bytes(3, size);
    let (mut client, server) = raw_pair(backend)?;
    let echo = raw_echo(server, raw_message(ckpt_core::frame::MESSAGE_HEADER_BYTES));
    let stream = raw_message(ckpt_core::frame::MESSAGE_HEADER_BYTES + n as usize * frame_bytes);
    let data = vec![0x5Au8; size];
    let (mut ours, mut base) = (Series::default(), Series::default());
    for round in 0..batches + 2 {
        let start = Instant::now();
        for _ in 0..n {
            primary
                .write(section, None, black_box(&data[..]))
                .map_err(|e| format!("write: {e:?}"))?;
        }
        link.wait_for(primary.last_seq())?;
        let took = elapsed_ns(start);
        let raw = raw_round_trip(&mut client, &stream)?;
        if round >= 2 {
            ours.record(took / n as f64, n as u64, took);
            base.record(raw / n as f64, n as u64, raw);
        }
    }
    drop(client);
    let _ = echo.join();
    Ok((ours, base))
}

/// Writes 64 B overwrites at `rate` per second for a while, each carrying
/// its write time; a thread follows the replica's own log and records, per
/// frame, the time from the write to the frame applied there. The baseline:
/// half a raw ping-pong of the same size, per write.
fn measure_lag(
    work: &Work,
    plan: &Plan,
    backend: ckpt_transport::Auto,
    rate: f64,
) -> Result<(Series, Series), String> {
    let writes = (plan.rounds as u64).clamp(20_000, 400_000);
    let name = "bench-repl-lag";
    let (primary, section) = bench_primary(work, name, ckpt_core::UpdateMode::ActiveReplica, 64)?;
    let link = BenchLink::start(work, backend, &primary, name, &Default::default())?;
    link.wait_for(primary.last_seq())?;
    let clock = Instant::now();
    let done = std::sync::atomic::AtomicBool::new(false);
    let ours = std::thread::scope(|s| {
        let observer = s.spawn(|| {
            let mut lags = Series::default();
            let mut consumer = link.replica.consumer(None);
            while !(done.load(Ordering::Relaxed) && lags.samples_ns.len() as u64 >= writes) {
                match consumer.next_frame() {
                    Ok(Some(f)) => {
                        if let Some(t) = f.data.get(..8) {
                            let at = u64::from_le_bytes(t.try_into().expect("8 bytes"));
                            let lag = (clock.elapsed().as_nanos() as u64).saturating_sub(at);
                            lags.record(lag as f64, 1, lag as f64);
                        }
                    }
                    Ok(None) => {
                        if done.load(Ordering::Relaxed)
                            && consumer.position() >= link.replica.log_tail()
                        {
                            break;
                        }
                        consumer.wait(Duration::from_millis(1), Duration::ZERO);
                    }
                    Err(e) => return Err(format!("the replica's log: {e:?}")),
                }
            }
            Ok(lags)
        });
        // Paced by the millisecond: each tick's share of writes, then a
        // sleep to the next tick (a writer spinning between writes would
        // take a vCPU from the link on this 2-vCPU machine).
        const TICK: Duration = Duration::from_millis(1);
        let per_tick = (rate * TICK.as_secs_f64()).max(1.0) as u64;
        let start = Instant::now();
        let mut data = [0u8; 64];
        let mut failed = None;
        let mut written = 0u64;
        let mut tick = 0u32;
        'ticks: while written < writes {
            for _ in 0..per_tick.min(writes - written) {
                let now = clock.elapsed().as_nanos() as u64;
                data[..8].copy_from_slice(&now.to_le_bytes());
                if let Err(e) = primary.write(section, None, &data) {
                    failed = Some(format!("write: {e:?}"));
                    break 'ticks;
                }
                written += 1;
            }
            tick += 1;
            let due = start + TICK * tick;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let held = link.wait_for(primary.last_seq());
        done.store(true, Ordering::Relaxed);
        let lags = observer
            .join()
            .map_err(|_| "the observer panicked".to_string())??;
        if let Some(why) = failed {
            return Err(why);
        }
        held?;
        Ok::<Series, String>(lags)
    })?;
    let (mut client, server) = raw_pair(backend)?;
    let echo = raw_echo(server, raw_message(ckpt_core::frame::MESSAGE_HEADER_BYTES));
    let ping =
        raw_message(ckpt_core::frame::MESSAGE_HEADER_BYTES + ckpt_core::frame::frame_bytes(3, 64));
    let mut base = Series::default();
    for _ in 0..2000 {
        let raw = raw_round_trip(&mut client, &ping)? / 2.0;
        base.record(raw, 1, raw);
    }
    drop(client);
    let _ = echo.join();
    Ok((ours, base))
}

fn measure_sync_write(
    work: &Work,
    plan: &Plan,
    backend: ckpt_transport::Auto,
) -> Result<(Series, Series), String> {
    let writes = (plan.rounds / 4).clamp(200, 3000);
    let (primary, section) = bench_primary(
        work,
        "bench-repl-sync",
        ckpt_core::UpdateMode::AllReplicas,
        64,
    )?;
    let link = BenchLink::start(
        work,
        backend,
        &primary,
        "bench-repl-sync",
        &Default::default(),
    )?;
    link.wait_for(primary.last_seq())?;
    let frame_bytes = ckpt_core::frame::frame_bytes(3, 64);
    let (mut client, server) = raw_pair(backend)?;
    let echo = raw_echo(server, raw_message(ckpt_core::frame::MESSAGE_HEADER_BYTES));
    let ping = raw_message(ckpt_core::frame::MESSAGE_HEADER_BYTES + frame_bytes);
    let data = [0x5Au8; 64];
    let (mut ours, mut base) = (Series::default(), Series::default());
    for i in 0..writes + 20 {
        let start = Instant::now();
        primary
            .write(section, None, black_box(&data))
            .map_err(|e| format!("sync write: {e:?}"))?;
        // What `ckpt::Checkpoint` does after a write of a synchronous checkpoint.
        let timeout = primary.config().ack_timeout;
        if !primary.wait_acknowledged(ckpt_shm::ack::Need::All, primary.last_seq(), timeout) {
            return Err("a synchronous write was not acknowledged in time".into());
        }
        let took = elapsed_ns(start);
        if link.replica.last_seq() < primary.last_seq() {
            return Err("a synchronous write returned before the replica held it".into());
        }
        let raw = raw_round_trip(&mut client, &ping)?;
        if i >= 20 {
            ours.record(took, 1, took);
            base.record(raw, 1, raw);
        }
    }
    drop(client);
    let _ = echo.join();
    Ok((ours, base))
}

// ---------------------------------------------------------------------------
// Scenario 10: fuzzy snapshot and catch-up under a running writer

fn catch_up(work: &Work, plan: &Plan, emit: &mut dyn FnMut(BenchRow)) {
    let n = plan.takeover_sections;
    let size = if n >= 1024 {
        format!("{} GiB", n / 1024)
    } else {
        format!("{n} MiB")
    };
    let scenario = format!(
        "fuzzy snapshot + catch-up of a {size} checkpoint ({n} x 1 MiB) while a writer \
         overwrites a 64 B section about every 5 us: Mapped::snapshot_with (each section \
         copied once, streamed), then every frame since its resume point, checked against \
         the copy (percentiles over runs)"
    );
    let baseline = format!(
        "copying the same {size} out of the mapping: one consistent read of every \
         section into one buffer (runs interleaved with ours)"
    );
    const T10: &str = "<= 3x baseline";
    match measure_catch_up(work, plan) {
        Ok((ours, base)) => {
            let floor = base.summary().p50_ns;
            emit(row(scenario, &ours, baseline, &base, T10, |s| {
                s.p50_ns <= 3.0 * floor
            }))
        }
        Err(why) => emit(unmeasured(scenario, baseline, T10, &why)),
    }
}

fn measure_catch_up(work: &Work, plan: &Plan) -> Result<(Series, Series), String> {
    const SECTION_BYTES: usize = 1 << 20;
    let n = plan.takeover_sections;
    let reps = 3;
    let config = work.config(Some(64 << 20));
    let seg = create(
        &config,
        "bench-catch-up",
        attributes(n + 1, SECTION_BYTES as u64),
    )?;
    let mut chunk = vec![0u8; SECTION_BYTES];
    let mut sections = Vec::with_capacity(n as usize);
    for i in 0..n {
        chunk.fill(i as u8);
        let id = format!("c{i:05}").into_bytes();
        let (s, _) = seg
            .create_section(Some(&id), Time::END, &chunk)
            .map_err(|e| format!("fill: {e:?}"))?;
        sections.push(s);
    }
    let hot = seg
        .create_section(Some(b"hot"), Time::END, &[0; 64])
        .map_err(|e| format!("hot: {e:?}"))?
        .0;
    let writer_seg = open_existing(&config, "bench-catch-up")?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (mut ours, mut base) = (Series::default(), Series::default());
    let result = std::thread::scope(|scope| -> Result<(), String> {
        let writer = scope.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let _ = writer_seg.write(hot, None, &i.to_be_bytes().repeat(8));
                let pause = Instant::now();
                while pause.elapsed() < Duration::from_micros(5) {
                    std::hint::spin_loop();
                }
            }
            i
        });
        let run = (|| {
            for rep in 0..reps * 2 {
                if rep % 2 == 0 {
                    // Streamed, as a new replica is sent its copy: each
                    // section is copied once into one buffer and handed on.
                    let start = Instant::now();
                    let mut bytes = 0usize;
                    let mut seqs = Vec::with_capacity(n as usize + 1);
                    let head = seg
                        .snapshot_with(|c| {
                            bytes += c.data.len();
                            seqs.push((c.id.to_vec(), c.seqs));
                        })
                        .map_err(|e| format!("snapshot: {e:?}"))?;
                    seqs.sort_by(|a, b| a.0.cmp(&b.0));
                    let mut consumer = seg.consumer(Some(head.resume));
                    let mut replayed = 0u64;
                    while let Some(f) = consumer.next_frame().map_err(|e| format!("log: {e}"))? {
                        let copied = seqs
                            .binary_search_by(|(id, _)| id.as_slice().cmp(f.id))
                            .ok()
                            .map(|i| seqs[i].1);
                        let contained = head.contains(&f.header, copied);
                        replayed += !contained as u64;
                    }
                    let took = elapsed_ns(start);
                    black_box((bytes, replayed));
                    ours.record(took, 1, took);
                } else {
                    let start = Instant::now();
                    let mut copied = 0usize;
                    for &s in &sections {
                        let (len, _) = seg
                            .read(s, 0, &mut chunk)
                            .map_err(|e| format!("read: {e:?}"))?;
                        copied += len;
                    }
                    let took = elapsed_ns(start);
                    black_box(copied);
                    base.record(took, 1, took);
                }
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        let writes = writer.join().map_err(|_| "writer panicked".to_string())?;
        if writes == 0 {
            return Err("the writer did not write".into());
        }
        run
    });
    result?;
    Ok((ours, base))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_row() -> BenchRow {
        BenchRow {
            scenario: "s".into(),
            p50_ns: 10.0,
            p99_ns: 20.0,
            max_ns: 30.0,
            ops_per_s: 1e8,
            baseline: "b".into(),
            baseline_p50_ns: 5.0,
            ratio: 2.0,
            target: "p50 <= 25 ns".into(),
            met: Some(true),
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn json_lines_carry_every_field_and_null_for_unmeasured() {
        let line = to_json_line(&sample_row());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        for key in [
            "scenario",
            "p50_ns",
            "p99_ns",
            "max_ns",
            "ops_per_s",
            "baseline",
            "baseline_p50_ns",
            "ratio",
            "target",
            "met",
        ] {
            assert!(v.get(key).is_some(), "{key} missing from {line}");
        }
        assert!(!line.contains('\n'));
        let none = unmeasured("s".into(), "b".into(), "p50 <= 1 us", "no standby");
        let v: serde_json::Value = serde_json::from_str(&to_json_line(&none)).unwrap();
        assert!(v["p50_ns"].is_null() && v["met"].is_null());
        assert!(v["target"]
            .as_str()
            .unwrap()
            .contains("not measured: no standby"));
    }

    #[test]
    fn the_table_shows_each_row_and_its_baseline() {
        let mut out = Vec::new();
        let none = unmeasured("u".into(), "ub".into(), "t", "why");
        print_table(&[sample_row(), none], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        // Header, two lines per row, a blank line, the notes title, two per row.
        assert_eq!(text.lines().count(), 1 + 2 * 2 + 2 + 2 * 2);
        assert!(text.contains("10.0 ns") && text.contains("5.00 ns") && text.contains("2.0x"));
        assert!(text.contains("vs b") && text.contains("n/a"));
        assert!(text.contains("  2. u") && text.contains("baseline: ub"));
    }

    #[test]
    fn standby_main_rejects_bad_arguments() {
        assert_eq!(standby_main(&[]), 2);
        assert_eq!(
            standby_main(&["bench-standby".into(), "nonsense".into()]),
            2
        );
    }
}
