//! Resume with the real trainer thread (tiny net, synthetic data, CPU): a training process killed with SIGKILL
//! mid-run, its metrics read back, the run resumed from the latest checkpoint, and the loss trajectory compared bit
//! for bit with an uninterrupted run.

mod record_support;

use nfbench::record::checkpoint::{list_checkpoints, load_latest};
use nfbench::record::metrics::read_run;
use nfbench::record::session::{drive, start_new, start_resume};
use nfbench::train::messages::{Command, Event};
use record_support::{one_at_a_time, spawn_tiny, tiny_preset};
use std::io::{BufRead, Write};
use std::path::Path;

const STEPS: u64 = 40;
const KILL_AFTER: u64 = 23;
const CHILD_ENV: &str = "NFBENCH_TEST_RESUME_CHILD_DIR";

/// Trains the tiny net for STEPS steps into `dir` without interruption.
fn straight_run(dir: &Path) {
    let preset = tiny_preset(STEPS);
    let (mut session, opts) = start_new(Path::new("tiny.toml"), &preset, Some(dir)).unwrap();
    let handle = spawn_tiny(preset, opts);
    drive(&handle, &mut session.recorder, |_| {}, |e| panic!("{e}")).unwrap();
    handle.join().unwrap();
}

/// Not a test on its own: the child process of `sigkill_mid_run_then_resume_matches_an_uninterrupted_run`. It
/// trains one step at a time (so the parent kills it at a known step), tells the parent when it reached
/// KILL_AFTER, and waits to be killed.
#[test]
fn sigkill_child_trainer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let preset = tiny_preset(STEPS);
    let (mut session, mut opts) =
        start_new(Path::new("tiny.toml"), &preset, Some(Path::new(&dir))).unwrap();
    opts.start_paused = true;
    let handle = spawn_tiny(preset, opts);
    handle.send(Command::StepOnce);
    let mut last_checkpoint = 0;
    drive(
        &handle,
        &mut session.recorder,
        |e| match e {
            Event::Checkpoint { step, .. } => last_checkpoint = *step,
            Event::Step(m) if m.step < KILL_AFTER => {
                handle.send(Command::StepOnce);
            }
            Event::Step(m) if m.step == KILL_AFTER => {
                // A marker libtest's own output cannot be mistaken for (it may share the line).
                println!("<<child at {} checkpoint {last_checkpoint}>>", m.step);
                std::io::stdout().flush().unwrap();
                // Wait to be killed, mid-run (the trainer is paused, holding its state in memory).
                let _ = std::io::stdin().lock().read_line(&mut String::new());
                std::process::abort();
            }
            _ => {}
        },
        |e| panic!("{e}"),
    )
    .unwrap();
}

#[test]
fn sigkill_mid_run_then_resume_matches_an_uninterrupted_run() {
    let _serial = one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let straight = tmp.path().join("straight");
    straight_run(&straight);

    // The interrupted run: a real training process, killed with SIGKILL after step KILL_AFTER.
    let run = tmp.path().join("killed");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_child_trainer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &run)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reached = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.split("<<child at ").nth(1) {
            let rest = rest.split(">>").next().unwrap_or_default();
            let v: Vec<u64> = rest
                .split(" checkpoint ")
                .map(|s| s.trim().parse().unwrap())
                .collect();
            reached = Some((v[0], v[1]));
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (at, last_ck) = reached.expect("the child reported its step");
    assert_eq!((at, last_ck), (KILL_AFTER, 20));

    // The metrics file opens and holds everything up to the last flush (the step-21 statistics snapshot).
    let killed = read_run(&run.join("metrics.h5")).expect("metrics.h5 opens after SIGKILL");
    let steps: Vec<u64> = killed.steps.iter().map(|s| s.step).collect();
    assert_eq!(
        steps,
        (1..=21).collect::<Vec<_>>(),
        "rows up to the last flush"
    );
    assert!(killed
        .events
        .iter()
        .any(|e| e.kind == "checkpoint" && e.step == 20));
    let ck = load_latest(&run, &candle_core::Device::Cpu)
        .unwrap()
        .unwrap();
    assert_eq!(ck.meta.step, 20);
    assert!(
        KILL_AFTER - ck.meta.step < 5,
        "at most one checkpoint interval lost"
    );

    // Resume to the end.
    let (mut session, opts) = start_resume(&run, None).unwrap();
    assert_eq!(session.start_step, 20);
    let handle = spawn_tiny(session.preset.clone(), opts);
    drive(&handle, &mut session.recorder, |_| {}, |e| panic!("{e}")).unwrap();
    handle.join().unwrap();
    drop(session);

    let a = read_run(&straight.join("metrics.h5")).unwrap();
    let b = read_run(&run.join("metrics.h5")).unwrap();
    let bits = |r: &nfbench::record::RecordedRun| -> Vec<(u64, u64)> {
        r.steps.iter().map(|s| (s.step, s.loss.to_bits())).collect()
    };
    assert_eq!(bits(&a).len(), STEPS as usize);
    assert_eq!(
        bits(&b),
        bits(&a),
        "the resumed loss trajectory equals the uninterrupted one bit for bit"
    );
    let lr = |r: &nfbench::record::RecordedRun| -> Vec<u64> {
        r.steps.iter().map(|s| s.lr.to_bits()).collect()
    };
    assert_eq!(lr(&b), lr(&a));
    assert_eq!(
        a.evals
            .iter()
            .map(|e| (e.step, e.top1.to_bits()))
            .collect::<Vec<_>>(),
        b.evals
            .iter()
            .map(|e| (e.step, e.top1.to_bits()))
            .collect::<Vec<_>>()
    );
    assert!(b.events.iter().any(|e| e.kind == "resumed" && e.step == 20));

    // The final checkpoints are identical tensor for tensor.
    let ca = load_latest(&straight, &candle_core::Device::Cpu)
        .unwrap()
        .unwrap();
    let cb = load_latest(&run, &candle_core::Device::Cpu)
        .unwrap()
        .unwrap();
    assert_eq!((ca.meta.step, cb.meta.step), (STEPS, STEPS));
    for (name, t) in &ca.tensors {
        let u = &cb.tensors[name];
        let flat = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (x, y) = (flat(t), flat(u));
        assert!(
            x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{name} differs"
        );
    }
    // Keep-K + best: the last two and the best by val top-1.
    let kept: Vec<u64> = list_checkpoints(&run.join("checkpoints"))
        .unwrap()
        .iter()
        .map(|c| c.step)
        .collect();
    assert!(kept.ends_with(&[35, 40]), "{kept:?}");
}

#[test]
fn resume_errors_name_the_run() {
    let _serial = one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let err = start_resume(&tmp.path().join("nope"), None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("nope") && err.contains("no such run directory"),
        "{err}"
    );

    let preset = tiny_preset(3);
    let dir = tmp.path().join("r");
    drop(start_new(Path::new("tiny.toml"), &preset, Some(&dir)).unwrap());
    let err = start_resume(&dir, None).err().unwrap().to_string();
    assert!(
        err.contains("checkpoints") && err.contains("no checkpoint to resume from"),
        "{err}"
    );

    // A finished run resumes only with --steps.
    let run = tmp.path().join("done");
    let (mut s, opts) = start_new(Path::new("tiny.toml"), &preset, Some(&run)).unwrap();
    let h = spawn_tiny(preset, opts);
    drive(&h, &mut s.recorder, |_| {}, |e| panic!("{e}")).unwrap();
    h.join().unwrap();
    drop(s);
    let err = start_resume(&run, None).err().unwrap().to_string();
    assert!(
        err.contains("the run is complete") && err.contains("--steps"),
        "{err}"
    );
    let (s, _opts) = start_resume(&run, Some(2)).unwrap();
    assert_eq!((s.start_step, s.preset.run.steps), (3, 5));
}
