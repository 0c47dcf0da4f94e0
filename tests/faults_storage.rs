//! Storage faults of the run record: two processes on one run directory, a full disk during a checkpoint and
//! during a metrics flush (a 3 MB tmpfs), and a truncated or corrupted latest checkpoint at resume.

mod record_support;

use candle_core::{Device, Tensor};
use nfbench::record::checkpoint::{
    file_name, load_checkpoint, load_latest, save_checkpoint, CheckpointMeta, CheckpointState,
};
use nfbench::record::metrics::read_run;
use nfbench::record::run_dir::{RunDir, LOCK_FILE};
use nfbench::record::session::start_resume;
use nfbench::record::Recorder;
use nfbench::train::messages::Event;
use record_support::faults::{fill_disk, nfbench, sigkill, small_run_args, Tmpfs};
use record_support::{layer_stats, one_at_a_time, step_metrics};
use std::path::Path;
use std::time::{Duration, Instant};

/// A checkpoint at `step` holding one tensor of `floats` f32 values that depend on the step.
fn state(step: u64, floats: usize) -> CheckpointState {
    let t = Tensor::arange(0f32, floats as f32, &Device::Cpu)
        .unwrap()
        .affine(1e-3, step as f64)
        .unwrap();
    CheckpointState {
        meta: CheckpointMeta {
            step,
            epoch: 0.0,
            seed: 1,
            model: "m".into(),
            loader: serde_json::Value::Null,
            rng: serde_json::Value::Null,
            live: Vec::new(),
            preset_toml: String::new(),
            val_top1: None,
            extra: Default::default(),
        },
        tensors: vec![("param/w".into(), t)],
    }
}

fn first_value(dir: &Path) -> f32 {
    let ck = load_latest(dir, &Device::Cpu).unwrap().unwrap();
    ck.tensor("param/w")
        .unwrap()
        .get(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A second process on a run directory is refused, naming the first's pid; once the first is SIGKILLed its lock
/// file no longer blocks anyone.
#[test]
fn a_second_process_on_a_run_is_refused_naming_the_first() {
    let _serial = one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let args = small_run_args(100_000, 1_000, 1_000);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut first = nfbench(&refs).arg("--run-dir").arg(&run).spawn().unwrap();
    let lock = run.join(LOCK_FILE);
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid = first.id().to_string();
    while std::fs::read_to_string(&lock)
        .ok()
        .map(|s| s.trim().to_string())
        != Some(pid.clone())
    {
        assert!(
            Instant::now() < deadline,
            "the first process never took the lock"
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first process ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // In this process, through the session (what `nfbench resume` and the workbench use) and the run directory.
    let err = start_resume(&run, None).err().expect("refused").to_string();
    assert!(
        err.contains(&format!("process {pid}")) && err.contains(LOCK_FILE),
        "{err}"
    );
    let dir = RunDir::open(&run).unwrap();
    assert!(dir.lock().is_err());
    // And as another `nfbench` process would see it.
    let out = nfbench(&["resume", "--headless"])
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("process {pid}")), "{stderr}");

    sigkill(&mut first);
    let held = dir
        .lock()
        .expect("a SIGKILLed holder's lock does not block");
    assert_eq!(
        std::fs::read_to_string(held.path()).unwrap().trim(),
        std::process::id().to_string(),
        "the new holder writes its own pid"
    );
    // Within one process too, a second lock on the same run is refused while the first lives.
    let err = RunDir::open(&run).unwrap().lock().unwrap_err().to_string();
    assert!(
        err.contains(&format!("process {}", std::process::id())),
        "{err}"
    );
    drop(held);
    assert!(dir.lock().is_ok(), "dropping the lock releases it");
}

/// A checkpoint that does not fit on the disk fails naming its file, leaves no temporary file, and the previous
/// checkpoint stays the one to resume from; once space returns the next one is written.
#[test]
fn a_full_disk_during_a_checkpoint_keeps_the_previous_one() {
    let Some(fs) = Tmpfs::mount("3m") else { return };
    let dir = fs.path().join("checkpoints");
    // 1.2 MB each: two fit in 3 MB, a third does not (old ones are pruned only after a write succeeds).
    let floats = 300_000;
    save_checkpoint(&dir, &state(10, floats), 2).unwrap();
    save_checkpoint(&dir, &state(20, floats), 2).unwrap();
    let before = std::fs::read(dir.join(file_name(20))).unwrap();

    let err = save_checkpoint(&dir, &state(30, floats), 2)
        .expect_err("a third checkpoint does not fit")
        .to_string();
    assert!(
        err.contains("step-30.safetensors") && err.contains("No space left"),
        "{err}"
    );
    assert_eq!(
        names_in(&dir),
        [file_name(10), file_name(20)],
        "no temporary file left"
    );
    assert_eq!(std::fs::read(dir.join(file_name(20))).unwrap(), before);
    assert_eq!(first_value(fs.path()), 20.0);

    // Space returns (the oldest goes): the next checkpoint is written and becomes the latest.
    std::fs::remove_file(dir.join(file_name(10))).unwrap();
    save_checkpoint(&dir, &state(30, floats), 2).unwrap();
    assert_eq!(first_value(fs.path()), 30.0);
    assert_eq!(names_in(&dir), [file_name(20), file_name(30)]);
}

/// A crash mid-write leaves a `.tmp` file: it is never loaded, and the next successful write removes it.
#[test]
fn stale_temp_files_are_removed_by_the_next_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("checkpoints");
    save_checkpoint(&dir, &state(10, 100), 2).unwrap();
    let bytes = std::fs::read(dir.join(file_name(10))).unwrap();
    std::fs::write(
        dir.join(".step-20.safetensors.tmp"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    std::fs::write(dir.join(".other.tmp"), b"not ours").unwrap();
    assert_eq!(first_value(tmp.path()), 10.0);
    save_checkpoint(&dir, &state(20, 100), 2).unwrap();
    assert_eq!(
        names_in(&dir),
        [".other.tmp".to_string(), file_name(10), file_name(20)]
    );
}

/// The latest checkpoint truncated, or with a flipped bit in its tensor data (which the safetensors header cannot
/// see; the checksum does), is skipped for the previous one, with a warning naming both files.
#[test]
fn a_damaged_latest_checkpoint_falls_back_to_the_previous_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("checkpoints");
    save_checkpoint(&dir, &state(10, 1000), 3).unwrap();
    save_checkpoint(&dir, &state(20, 1000), 3).unwrap();
    let latest = dir.join(file_name(20));
    let good = std::fs::read(&latest).unwrap();
    let cases: [(&str, Vec<u8>); 2] = [
        ("truncated", good[..good.len() - 100].to_vec()),
        ("corrupted", {
            let mut b = good.clone();
            let at = b.len() - 2000;
            b[at] ^= 0x10;
            b
        }),
    ];
    for (what, bytes) in cases {
        std::fs::write(&latest, &bytes).unwrap();
        assert!(
            load_checkpoint(&latest, &Device::Cpu).is_err(),
            "{what}: the damage is seen"
        );
        let ck = load_latest(tmp.path(), &Device::Cpu).unwrap().unwrap();
        assert_eq!(ck.meta.step, 10, "{what}");
        let warning = ck.fallback_warning().expect("a warning");
        assert!(
            warning.contains("step-20.safetensors") && warning.contains("step-10.safetensors"),
            "{what}: {warning}"
        );
        if what == "corrupted" {
            assert!(warning.contains("corrupted"), "{warning}");
        }
    }
    std::fs::write(&latest, &good).unwrap();
    let ck = load_latest(tmp.path(), &Device::Cpu).unwrap().unwrap();
    assert_eq!((ck.meta.step, ck.fallback_warning()), (20, None));
}

/// Feeds steps `range` to the recorder with a statistics snapshot (a flush) every 10 steps; returns the errors.
fn feed(rec: &mut Recorder, range: std::ops::RangeInclusive<u64>) -> Vec<String> {
    let mut errors = Vec::new();
    for step in range {
        let mut events = vec![Event::Step(step_metrics(step, 0.01, 0.2))];
        if step % 10 == 0 {
            events.push(Event::Layers(Box::new(layer_stats(step, 0.01))));
        }
        for e in &events {
            if let Err(e) = rec.record(e) {
                errors.push(nfbench::train::error_chain(&e));
            }
        }
    }
    errors
}

/// A metrics flush on a full disk fails, loses nothing already on disk and keeps the unwritten rows; when space
/// returns the next flush writes them: every step exactly once, values as recorded.
#[test]
fn a_full_disk_during_a_metrics_flush_loses_no_row() {
    let Some(fs) = Tmpfs::mount("3m") else { return };
    let path = fs.path().join("metrics.h5");
    let mut rec = Recorder::create_at(&path, "").unwrap();
    assert!(feed(&mut rec, 1..=200).is_empty());
    let filled = fill_disk(fs.path(), "filler");
    assert!(filled > 0);

    // More rows than the chunks already allocated hold (the file would have to grow).
    let errors = feed(&mut rec, 201..=3000);
    assert!(!errors.is_empty(), "the full disk is reported");
    assert!(errors[0].contains("metrics.h5"), "{}", errors[0]);
    // What is on disk now, read from a copy (this process has the file open for writing).
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(&path, copy.path().join("metrics.h5")).unwrap();
    let on_disk = read_run(&copy.path().join("metrics.h5")).expect("the file on disk still opens");
    let steps: Vec<u64> = on_disk.steps.iter().map(|s| s.step).collect();
    assert_eq!(
        steps,
        (1..=200).collect::<Vec<_>>(),
        "the file on disk is as the last good flush left it"
    );
    assert!(
        errors[0].contains("no space left") && errors[0].contains("kept in memory"),
        "{}",
        errors[0]
    );

    std::fs::remove_file(fs.path().join("filler")).unwrap();
    assert!(feed(&mut rec, 3001..=3100).is_empty());
    rec.sync().unwrap();
    drop(rec);
    let run = read_run(&path).unwrap();
    let got: Vec<(u64, u64)> = run
        .steps
        .iter()
        .map(|s| (s.step, s.loss.to_bits()))
        .collect();
    let want: Vec<(u64, u64)> = (1..=3100)
        .map(|s| (s, step_metrics(s, 0.01, 0.2).loss.to_bits()))
        .collect();
    assert_eq!(got.len(), want.len(), "no gap, no duplicate");
    assert_eq!(got, want);
    let snapshots: Vec<u64> = run.layers.iter().map(|l| l.step).collect();
    assert_eq!(snapshots, (1..=310).map(|i| i * 10).collect::<Vec<_>>());
}
