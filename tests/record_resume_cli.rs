//! Exact resume of the real binary on the default preset (shorter, checkpointing more often and evaluating on
//! fewer images, through `--steps` and `--set`; nothing that trains differently): a run SIGKILLed mid-run and a run stopped with SIGTERM, each resumed with
//! `nfbench resume --headless`, record the same loss at every step, bit for bit, as an uninterrupted run with the
//! same seed, and their metrics table has every step exactly once. (tests/record_resume.rs proves the same for the
//! trainer thread on a tiny net; this is the product path: data loader workers, augmentation, the real model.)

mod record_support;

use candle_core::Device;
use nfbench::record::checkpoint::{load_latest, step_of};
use record_support::faults::{
    assert_every_step_once, loss_bits, nfbench, resume_to_end, sigkill, signal,
};
use record_support::one_at_a_time;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

const STEPS: u64 = 40;
const CHECKPOINT_EVERY: u64 = 15;

/// The default preset, `STEPS` long, checkpointing every `CHECKPOINT_EVERY` steps.
fn spawn(run: &Path) -> Child {
    nfbench(&[
        "train",
        "--headless",
        "--preset",
        "presets/default.toml",
        "--steps",
        &STEPS.to_string(),
        "--set",
        &format!("run.checkpoint_every={CHECKPOINT_EVERY}"),
        "--set",
        "data.eval_images=500",
        "--run-dir",
    ])
    .arg(run)
    .spawn()
    .unwrap()
}

fn checkpoints(run: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(run.join("checkpoints"))
        .map(|d| d.filter_map(|e| step_of(&e.ok()?.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn wait_for_checkpoint(child: &mut Child, run: &Path, step: u64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !checkpoints(run).contains(&step) {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        assert!(Instant::now() < deadline, "no checkpoint at {step}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn killed_or_stopped_and_resumed_equals_an_uninterrupted_run_bit_for_bit() {
    let _serial = one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let straight = tmp.path().join("straight");
    let out = spawn(&straight).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = loss_bits(&straight);
    assert_eq!(want.len() as u64, STEPS);

    // SIGKILL a few steps after the second checkpoint: the steps after it are trained again on resume.
    let killed = tmp.path().join("killed");
    let mut child = spawn(&killed);
    wait_for_checkpoint(&mut child, &killed, 2 * CHECKPOINT_EVERY);
    std::thread::sleep(Duration::from_millis(200));
    sigkill(&mut child);
    let (ok, stderr) = resume_to_end(&killed);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(&format!("(step {})", 2 * CHECKPOINT_EVERY)),
        "{stderr}"
    );
    assert_every_step_once(&killed, STEPS, "killed");
    assert_eq!(
        loss_bits(&killed),
        want,
        "SIGKILL, resume: bit-identical losses"
    );

    // SIGTERM between checkpoints: the run stops with a checkpoint at the step it reached, off the interval.
    let stopped = tmp.path().join("stopped");
    let mut child = spawn(&stopped);
    wait_for_checkpoint(&mut child, &stopped, CHECKPOINT_EVERY);
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert!(!status.success(), "a stopped run is not a finished one");
    let at = load_latest(&stopped, &Device::Cpu)
        .unwrap()
        .unwrap()
        .meta
        .step;
    assert!(at > CHECKPOINT_EVERY && at < STEPS, "stopped at {at}");
    let (ok, stderr) = resume_to_end(&stopped);
    assert!(ok, "{stderr}");
    assert_every_step_once(&stopped, STEPS, "stopped");
    assert_eq!(
        loss_bits(&stopped),
        want,
        "SIGTERM, resume: bit-identical losses"
    );
}
