//! Fault injection on the real binary: `nfbench train --headless` on the shipped data, SIGKILLed at 20 seeded
//! random points (mid checkpoint write, mid metrics flush, any time), resumed with `nfbench resume --headless` after
//! each; a damaged latest checkpoint; a disk that fills up during checkpointing.
//!
//! After every kill: the metrics file opens and holds steps 1..=m once each, the latest checkpoint loads (never a
//! torn one: writes are atomic), at most one checkpoint interval of training is lost (m <= checkpoint step +
//! interval), and nothing panicked. At the end the run has every step exactly once and the same losses, bit for bit,
//! as an uninterrupted run.

mod record_support;

use candle_core::Device;
use nfbench::record::checkpoint::{load_latest, load_latest_up_to, step_of};
use nfbench::record::metrics::read_run;
use nfbench::record::{Recorder, RunDir};
use rand::{Rng, SeedableRng};
use record_support::faults::{
    assert_every_step_once, loss_bits, nfbench, resume_to_end, sigkill, small_run_args,
    spawn_train, Tmpfs,
};
use record_support::one_at_a_time;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime};

const SEED: u64 = 15;
const KILLS: usize = 20;
const INTERVAL: u64 = 5;
const STEPS: u64 = 150;
/// Statistics (hence a metrics flush) every step: a kill at any time is likely mid-flush.
const STATS_EVERY: u64 = 1;
const PATIENCE: Duration = Duration::from_secs(120);

fn args() -> Vec<String> {
    small_run_args(STEPS, INTERVAL, STATS_EVERY)
}

/// Checkpoint steps on disk by file name (temporary files excluded).
fn checkpoint_steps(run: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(run.join("checkpoints"))
        .map(|d| {
            d.filter_map(|e| step_of(&e.ok()?.path()))
                .collect::<Vec<u64>>()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn temp_in_progress(run: &Path) -> bool {
    std::fs::read_dir(run.join("checkpoints"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        })
        .unwrap_or(false)
}

fn metrics_stamp(run: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(run.join("metrics.h5")).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// Where a kill lands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kill {
    /// While a checkpoint's temporary file exists.
    MidCheckpoint,
    /// Right after `metrics.h5` changed on disk the n-th time (a flush is being written).
    MidFlush(u32),
    /// After a random delay.
    After(Duration),
}

/// Waits for `pred`, polling every half millisecond; panics with `what` when the child ends or time runs out.
fn wait_for(child: &mut Child, what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !pred() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the run ended ({status}) while waiting for {what}:\n{}",
                stderr_of(child)
            );
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// What one kill left behind.
struct Aftermath {
    kill: Kill,
    /// A checkpoint's temporary file existed at the moment of the kill.
    mid_checkpoint: bool,
    checkpoint: u64,
    rows: u64,
}

/// Starts the run (or resumes it), waits for a checkpoint newer than any on disk (progress), kills it as `kill`
/// says, and checks what it left.
fn kill_once(run: &Path, fresh: bool, kill: Kill) -> Aftermath {
    let before = checkpoint_steps(run).last().copied().unwrap_or(0);
    let mut child = if fresh {
        spawn_train(&args(), run, &[])
    } else {
        nfbench(&["resume", "--headless"]).arg(run).spawn().unwrap()
    };
    wait_for(&mut child, "a new checkpoint", || {
        checkpoint_steps(run).last().is_some_and(|&s| s > before)
    });
    match kill {
        Kill::MidCheckpoint => wait_for(&mut child, "a checkpoint write", || temp_in_progress(run)),
        Kill::MidFlush(n) => {
            for _ in 0..n {
                let stamp = metrics_stamp(run);
                wait_for(&mut child, "a metrics flush", || {
                    metrics_stamp(run) != stamp
                });
            }
        }
        Kill::After(d) => std::thread::sleep(d),
    }
    let mid_checkpoint = temp_in_progress(run);
    let _ = child.kill();
    let status = child.wait().unwrap();
    let stderr = stderr_of(&mut child);
    assert!(!stderr.contains("panicked"), "{kill:?}: a panic:\n{stderr}");
    assert!(
        status.code().is_none() || status.success(),
        "{kill:?}: the run failed before the kill ({status}):\n{stderr}"
    );
    check_resumable(run, kill, mid_checkpoint)
}

/// The run after a kill: metrics readable and contiguous, latest checkpoint loadable, at most one interval lost.
fn check_resumable(run: &Path, kill: Kill, mid_checkpoint: bool) -> Aftermath {
    let metrics = read_run(&run.join("metrics.h5"))
        .unwrap_or_else(|e| panic!("{kill:?}: metrics.h5 does not open after SIGKILL: {e}"));
    let rows: Vec<u64> = metrics.steps.iter().map(|s| s.step).collect();
    assert_eq!(
        rows,
        (1..=rows.len() as u64).collect::<Vec<_>>(),
        "{kill:?}: the steps on disk are 1..=m once each"
    );
    let latest = load_latest(run, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{kill:?}: the latest checkpoint does not load: {e}"))
        .unwrap_or_else(|| panic!("{kill:?}: no checkpoint"));
    assert!(
        latest.skipped.is_empty(),
        "{kill:?}: atomic writes never leave a torn checkpoint: {:?}",
        latest.skipped
    );
    // What a resume starts from: the latest checkpoint the metrics log has every step of.
    let m = rows.len() as u64;
    let ck = load_latest_up_to(run, &Device::Cpu, Some(m))
        .unwrap()
        .unwrap_or_else(|| {
            panic!("{kill:?}: no checkpoint at or before step {m}, the end of the log")
        });
    assert!(
        m <= ck.meta.step + INTERVAL,
        "{kill:?}: {m} steps recorded but the checkpoint to resume from is at {}: more than one interval \
         ({INTERVAL}) lost",
        ck.meta.step
    );
    Aftermath {
        kill,
        mid_checkpoint,
        checkpoint: ck.meta.step,
        rows: m,
    }
}

/// The seeded kill points: a third each mid-checkpoint, mid-flush and at a random delay.
fn kill_points() -> Vec<Kill> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    (0..KILLS)
        .map(|i| match i % 3 {
            0 => Kill::MidCheckpoint,
            1 => Kill::MidFlush(rng.random_range(1..=4)),
            _ => Kill::After(Duration::from_millis(rng.random_range(0..=600))),
        })
        .collect()
}

fn straight_run(run: &Path) {
    let mut child = spawn_train(&args(), run, &[]);
    let status = child.wait().unwrap();
    assert!(status.success(), "{}", stderr_of(&mut child));
}

#[test]
fn sigkill_at_seeded_points_then_resume_loses_at_most_one_interval() {
    let _serial = one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let straight = tmp.path().join("straight");
    straight_run(&straight);

    let run = tmp.path().join("killed");
    let mut report = Vec::new();
    for (i, kill) in kill_points().into_iter().enumerate() {
        if checkpoint_steps(&run)
            .last()
            .is_some_and(|&s| s + INTERVAL >= STEPS)
        {
            break;
        }
        report.push(kill_once(&run, i == 0, kill));
    }
    let (ok, stderr) = resume_to_end(&run);
    assert!(ok, "the last resume runs to the end:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_every_step_once(&run, STEPS, "after the kills");
    assert_eq!(
        loss_bits(&run),
        loss_bits(&straight),
        "the killed and resumed run's losses equal the uninterrupted run's bit for bit"
    );
    let mid_ck = report.iter().filter(|a| a.mid_checkpoint).count();
    let flushes = report
        .iter()
        .filter(|a| matches!(a.kill, Kill::MidFlush(_)))
        .count();
    let lost: Vec<u64> = report.iter().map(|a| a.rows - a.checkpoint).collect();
    println!(
        "kills: {} ({mid_ck} with a checkpoint write in progress, {flushes} right after a metrics flush began); \
         steps recorded past the latest checkpoint at each kill: {lost:?}",
        report.len()
    );
    assert!(
        report.len() >= KILLS - 2,
        "the run was long enough for the kill points: {}",
        report.len()
    );
    assert!(mid_ck >= 3, "several kills landed mid-checkpoint: {mid_ck}");
}

/// Runs until the checkpoint at `stop_at` exists, then SIGKILLs; returns the run directory.
fn run_until_checkpoint(run: &Path, stop_at: u64) {
    let mut child = spawn_train(&args(), run, &[]);
    wait_for(&mut child, "the checkpoint", || {
        checkpoint_steps(run).contains(&stop_at)
    });
    // And its steps in the metrics log, so the resume would start from it if it were intact.
    let dir = RunDir::open(run).unwrap();
    wait_for(&mut child, "the checkpoint's steps in the log", || {
        Recorder::last_recorded_step(&dir).is_ok_and(|s| s >= Some(stop_at))
    });
    sigkill(&mut child);
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Damage done to a checkpoint file's bytes.
type Damage = fn(&mut Vec<u8>);

/// A truncated or bit-flipped latest checkpoint: `nfbench resume` says so naming both files, resumes from the
/// previous one, and the run ends with every step once and the uninterrupted losses.
#[test]
fn a_damaged_latest_checkpoint_resumes_from_the_previous_one() {
    let _serial = one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    run_until_checkpoint(&base, 2 * INTERVAL);
    let latest_name = format!("step-{}.safetensors", 2 * INTERVAL);
    let previous_name = format!("step-{INTERVAL}.safetensors");
    let cases: [(&str, Damage); 2] = [
        ("truncated", |b| b.truncate(b.len() / 2)),
        ("corrupted", |b| {
            let at = b.len() - 1000;
            b[at] ^= 0x01;
        }),
    ];
    let mut finished: Vec<PathBuf> = Vec::new();
    for (what, damage) in cases {
        let run = tmp.path().join(what);
        copy_dir(&base, &run);
        let latest = run.join("checkpoints").join(&latest_name);
        let mut bytes = std::fs::read(&latest).unwrap();
        damage(&mut bytes);
        std::fs::write(&latest, &bytes).unwrap();
        let (ok, stderr) = resume_to_end(&run);
        assert!(ok, "{what}: resume runs:\n{stderr}");
        let warning = stderr
            .lines()
            .find(|l| l.starts_with("warning:") && l.contains(&latest_name))
            .unwrap_or_else(|| panic!("{what}: no warning naming {latest_name}:\n{stderr}"));
        assert!(warning.contains(&previous_name), "{what}: {warning}");
        assert!(
            stderr.contains(&format!("(step {INTERVAL})")),
            "{what}: resumed from step {INTERVAL}:\n{stderr}"
        );
        assert_every_step_once(&run, STEPS, what);
        finished.push(run);
    }
    assert_eq!(loss_bits(&finished[0]), loss_bits(&finished[1]));
    let events = read_run(&finished[0].join("metrics.h5")).unwrap().events;
    assert!(
        events
            .iter()
            .any(|e| e.kind == "warning" && e.detail.contains(&latest_name)),
        "the fallback is in the events table"
    );
}

/// The run directory on a tmpfs too small for the run's checkpoints: the run does not panic, leaves a
/// checkpoint that loads, and (moved where there is space) resumes to the end with every step once.
#[test]
fn a_disk_that_fills_during_checkpointing_pauses_the_run_which_goes_on_when_space_returns() {
    let _serial = one_at_a_time();
    let Some(fs) = Tmpfs::mount("3m") else { return };
    let run = fs.path().join("run");
    let mut child = spawn_train(&args(), &run, &[]);
    // The progress lines, read as they come.
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                lines.lock().unwrap().push(l);
            }
        })
    };
    let said = |needle: &str| lines.lock().unwrap().iter().any(|l| l.contains(needle));
    let start = Instant::now();
    while !said("could not be written") {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run must pause on a full disk, not end:\n{}",
            lines.lock().unwrap().join("\n")
        );
        assert!(start.elapsed() < Duration::from_secs(300), "no pause");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(said("No space left on device"), "the full disk is named");
    // Paused, the run on the full disk is resumable from its last good checkpoint, with no torn file.
    let ck = load_latest(&run, &Device::Cpu)
        .expect("the checkpoints on the full disk load")
        .expect("at least the first checkpoint fits");
    assert!(ck.meta.step < STEPS, "the disk was too small for all");
    assert_eq!(
        ck.fallback_warning(),
        None,
        "no torn checkpoint on the full disk"
    );
    assert!(
        !temp_in_progress(&run),
        "no temporary file left on the full disk"
    );

    // Space returns: the run writes the checkpoint it owes and goes on by itself to the end.
    fs.resize("256m");
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let all = lines.lock().unwrap().join("\n");
    assert!(status.success(), "{status}:\n{all}");
    assert!(!all.contains("panicked"), "{all}");
    assert!(all.contains("training goes on"), "{all}");
    assert_every_step_once(&run, STEPS, "after the full disk");
    assert_eq!(checkpoint_steps(&run).last(), Some(&STEPS));
}
