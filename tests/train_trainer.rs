//! The trainer thread on a tiny MLP and synthetic data: pause, resume, step, stop, live changes at step boundaries,
//! NaN injection and divergence, back-pressure, exact resume from a checkpoint. Deterministic: every wait is on an
//! event, never on time.

use candle_core::{Device, Var};
use nfbench::preset::Preset;
use nfbench::record::trainer_checkpoint::from_checkpoint;
use nfbench::record::RecordCheckpointWriter;
use nfbench::train::messages::{Command, Event, LiveParam, RunState};
use nfbench::train::parts::Parts;
use nfbench::train::{
    BatchSource, CheckpointWriter, SyntheticSource, TrainState, Trainer, TrainerHandle,
    TrainerOptions,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

mod mlp_support;

use mlp_support::{Mlp, INFO};

fn preset(steps: u64) -> Preset {
    let mut p = Preset::default();
    p.model.name = "mlp".into();
    p.data.batch_size = 32;
    p.run.steps = steps;
    p.run.eval_every = 0;
    p.run.stats_every = 1;
    p.run.checkpoint_every = 0;
    p.run.device = nfbench::preset::DeviceSpec::Cpu;
    p.run.max_bad_steps = 3;
    p.optim.lr = 0.5;
    p.optim.warmup_epochs = 0.0;
    p.agc.lambda = 0.05;
    p
}

struct Spawned {
    handle: TrainerHandle,
    vars: Arc<Mutex<Vec<Var>>>,
}

fn spawn(preset: Preset, opts: TrainerOptions, poison: Arc<AtomicBool>) -> Spawned {
    let vars = Arc::new(Mutex::new(Vec::new()));
    let vars2 = vars.clone();
    let handle = Trainer::spawn_with(
        preset,
        opts,
        Box::new(
            move |_dev: &Device, p: &Preset, resume: Option<&TrainState>| {
                let model = Mlp::new(poison);
                *vars2.lock().unwrap() = model.params.iter().map(|p| p.var.clone()).collect();
                let mut source = SyntheticSource::new(INFO, p.data.batch_size, 7)?;
                if let Some(s) = resume {
                    source.seek(&s.meta.loader_position);
                }
                Ok(Parts {
                    model: Box::new(model),
                    source: Box::new(source) as Box<dyn BatchSource>,
                })
            },
        ),
    )
    .unwrap();
    Spawned { handle, vars }
}

/// Receive until `pred` matches; panics if the trainer exits first (or, as a guard against a hung test, when nothing
/// at all arrives for several minutes). Returns everything seen.
fn until(h: &TrainerHandle, pred: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        match h.recv_timeout(std::time::Duration::from_secs(300)) {
            Ok(e) => {
                let hit = pred(&e);
                seen.push(e);
                if hit {
                    return seen;
                }
            }
            Err(err) => panic!("no expected event ({err:?}); saw {seen:#?}"),
        }
    }
}

fn step_of(e: &Event) -> Option<u64> {
    match e {
        Event::Step(m) => Some(m.step),
        _ => None,
    }
}

fn params_host(vars: &Arc<Mutex<Vec<Var>>>) -> Vec<Vec<f32>> {
    vars.lock()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .collect()
}

#[test]
fn pause_resume_step_stop_and_live_lambda() {
    let opts = TrainerOptions {
        start_paused: true,
        ..Default::default()
    };
    let s = spawn(preset(100_000), opts, Arc::new(AtomicBool::new(false)));
    let h = &s.handle;
    until(h, |e| {
        matches!(
            e,
            Event::State {
                state: RunState::Paused,
                ..
            }
        )
    });

    // Step once twice: exactly steps 1 and 2 run.
    h.send(Command::StepOnce);
    until(h, |e| step_of(e) == Some(1));
    h.send(Command::StepOnce);
    until(h, |e| step_of(e) == Some(2));

    // A live lambda change is applied at the next boundary and step 3 is the first to run with it.
    h.send(Command::Set {
        params: vec![LiveParam::AgcLambda(0.5)],
        origin: "test".into(),
    });
    h.send(Command::StepOnce);
    let seen = until(h, |e| step_of(e) == Some(3));
    let applied = seen.iter().find_map(|e| match e {
        Event::Applied {
            params,
            origin,
            step,
        } => Some((params.clone(), origin.clone(), *step)),
        _ => None,
    });
    assert_eq!(
        applied,
        Some((vec![LiveParam::AgcLambda(0.5)], "test".to_string(), 3))
    );
    let m = seen.iter().find_map(|e| match e {
        Event::Step(m) if m.step == 3 => Some(m.clone()),
        _ => None,
    });
    assert_eq!(m.unwrap().lambda, 0.5);

    // An out-of-range value is rejected, with the step it was considered at.
    h.send(Command::Set {
        params: vec![LiveParam::Momentum(1.5)],
        origin: "test".into(),
    });
    h.send(Command::StepOnce);
    let seen = until(h, |e| step_of(e) == Some(4));
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Rejected { step: 4, .. })),
        "{seen:#?}"
    );

    // Resume runs freely; Pause stops at a boundary: no step after it.
    h.send(Command::Resume);
    until(h, |e| {
        matches!(
            e,
            Event::State {
                state: RunState::Running,
                ..
            }
        )
    });
    until(h, |e| step_of(e).is_some_and(|s| s >= 6));
    h.send(Command::Pause);
    let seen = until(h, |e| {
        matches!(
            e,
            Event::State {
                state: RunState::Paused,
                ..
            }
        )
    });
    let paused_at = match seen.last() {
        Some(Event::State { step, .. }) => *step,
        _ => unreachable!(),
    };
    h.send(Command::Stop { checkpoint: false });
    let rest = until(h, |e| matches!(e, Event::Finished { .. }));
    for e in seen.iter().chain(&rest) {
        if let Some(st) = step_of(e) {
            assert!(
                st <= paused_at,
                "step {st} ran after the pause at {paused_at}"
            );
        }
    }
    assert!(rest.iter().any(|e| matches!(
        e,
        Event::State {
            state: RunState::Stopped,
            ..
        }
    )));
    let summary = s.handle.join().unwrap();
    assert_eq!(summary.steps, paused_at);
    assert_eq!(summary.state, RunState::Stopped);
}

#[test]
fn nan_injection_skips_updates_then_pauses_and_resumes() {
    let poison = Arc::new(AtomicBool::new(false));
    let opts = TrainerOptions {
        start_paused: true,
        ..Default::default()
    };
    let s = spawn(preset(12), opts, poison.clone());
    let h = &s.handle;
    h.send(Command::StepOnce);
    until(h, |e| step_of(e) == Some(1));
    let before = params_host(&s.vars);

    poison.store(true, Ordering::SeqCst);
    h.send(Command::Resume);
    let seen = until(h, |e| {
        matches!(
            e,
            Event::State {
                state: RunState::Diverged,
                ..
            }
        )
    });
    let bad: Vec<(u64, u32)> = seen
        .iter()
        .filter_map(|e| match e {
            Event::NonFinite {
                step,
                consecutive,
                what,
            } => {
                assert!(what.contains("loss"), "{what}");
                Some((*step, *consecutive))
            }
            _ => None,
        })
        .collect();
    assert_eq!(bad, vec![(2, 1), (3, 2), (4, 3)]);
    // Nothing was updated by the bad steps.
    assert_eq!(params_host(&s.vars), before);

    poison.store(false, Ordering::SeqCst);
    h.send(Command::Resume);
    let rest = until(h, |e| matches!(e, Event::Finished { .. }));
    assert!(!rest.iter().any(|e| matches!(e, Event::NonFinite { .. })));
    let summary = s.handle.join().unwrap();
    assert_eq!(summary.steps, 12);
    assert_eq!(summary.state, RunState::Finished);
    assert!(summary.final_train_loss.is_finite());
    assert!(params_host(&s.vars).iter().flatten().all(|v| v.is_finite()));
    assert_ne!(params_host(&s.vars), before);
}

#[test]
fn learns_synthetic_data_and_reports_statistics() {
    let mut p = preset(80);
    p.run.stats_every = 10;
    p.optim.ema_decay = 0.0;
    let s = spawn(
        p,
        TrainerOptions::default(),
        Arc::new(AtomicBool::new(false)),
    );
    let mut layers = Vec::new();
    let mut evals = Vec::new();
    while let Some(e) = s.handle.recv() {
        match e {
            Event::Layers(l) => layers.push(*l),
            Event::Eval(m) => evals.push(m),
            _ => {}
        }
    }
    let summary = s.handle.join().unwrap();
    assert_eq!(summary.steps, 80);
    assert_eq!(layers.len(), 8, "statistics every 10 steps");
    let first = &layers[0];
    assert_eq!(first.step, 1);
    assert_eq!(first.agc.len(), 5);
    let cls = first.agc.iter().find(|a| a.name == "linear.w").unwrap();
    assert!(
        !cls.clipped_by_agc,
        "the classifier weight is excluded from AGC"
    );
    assert_eq!(cls.clipped_fraction, 0.0);
    assert_eq!(cls.units, INFO.num_classes);
    assert!(first
        .agc
        .iter()
        .filter(|a| a.name != "linear.w")
        .all(|a| a.clipped_by_agc));
    assert_eq!(first.spp.len(), 1);
    assert_eq!(first.spp[0].avg_var, 1.0);
    let eval = evals.last().unwrap();
    assert_eq!(eval.images, INFO.val_images);
    assert!(eval.top1 > 0.6, "top-1 {}", eval.top1);
    assert_eq!(summary.val_top1, eval.top1);
}

#[test]
fn telemetry_is_dropped_oldest_first_and_control_events_never() {
    let mut p = preset(20);
    p.run.stats_every = 1000;
    let opts = TrainerOptions {
        event_capacity: 2,
        ..Default::default()
    };
    let s = spawn(p, opts, Arc::new(AtomicBool::new(false)));
    // Read nothing until the trainer is done.
    let handle = s.handle;
    let control: Vec<Event> = handle.lanes.events.iter().collect();
    assert!(control
        .iter()
        .any(|e| matches!(e, Event::Finished { step: 20 })));
    assert!(control.iter().any(|e| matches!(e, Event::Eval(_))));
    let telemetry: Vec<Event> = handle.lanes.telemetry.try_iter().collect();
    assert_eq!(telemetry.len(), 2);
    // 20 steps + one Layers, one Throughput and one Memory at step 0 = 23 telemetry events, 2 kept.
    assert_eq!(handle.dropped_telemetry(), 21);
    assert_eq!(step_of(&telemetry[1]), Some(20), "the newest is kept");
    handle.join().unwrap();
}

/// A live change as acknowledged: the parameters and the step before which they took effect.
type Applied = Option<(Vec<LiveParam>, u64)>;

/// Runs three steps, sending `smoothing` (if any) as a live change before step 3; returns each step's loss, the
/// applied event, and the label smoothing the final checkpoint records.
fn run_with_smoothing(smoothing: Option<f64>) -> (Vec<f64>, Applied, f64) {
    let saved = Arc::new(Mutex::new(Vec::new()));
    let opts = TrainerOptions {
        start_paused: true,
        checkpoint_writer: Some(Box::new(Capture(saved.clone()))),
        ..Default::default()
    };
    let s = spawn(preset(100_000), opts, Arc::new(AtomicBool::new(false)));
    let (mut losses, mut applied) = (Vec::new(), None);
    for i in 1..=3 {
        if let (3, Some(v)) = (i, smoothing) {
            s.handle.send(Command::Set {
                params: vec![LiveParam::LabelSmoothing(v)],
                origin: "test".into(),
            });
        }
        s.handle.send(Command::StepOnce);
        let seen = until(&s.handle, |e| step_of(e) == Some(i));
        for e in &seen {
            match e {
                Event::Step(m) if m.step == i => losses.push(m.loss),
                Event::Applied { params, step, .. } => applied = Some((params.clone(), *step)),
                _ => {}
            }
        }
    }
    s.handle.send(Command::Stop { checkpoint: true });
    until(&s.handle, |e| matches!(e, Event::Finished { .. }));
    s.handle.join().unwrap();
    let state = saved.lock().unwrap().pop().unwrap();
    assert_eq!(
        state.meta.preset.optim.label_smoothing,
        state.meta.live.label_smoothing
    );
    (losses, applied, state.meta.live.label_smoothing)
}

#[test]
fn live_label_smoothing_changes_the_loss_from_the_next_step() {
    let (plain, none, kept) = run_with_smoothing(None);
    assert_eq!(none, None);
    assert_eq!(kept, Preset::default().optim.label_smoothing);
    let (smoothed, applied, in_effect) = run_with_smoothing(Some(0.5));
    assert_eq!(applied, Some((vec![LiveParam::LabelSmoothing(0.5)], 3)));
    assert_eq!(in_effect, 0.5);
    assert_eq!(
        plain[..2],
        smoothed[..2],
        "steps before the change are the same"
    );
    assert!(
        (plain[2] - smoothed[2]).abs() > 1e-6,
        "step 3 runs with the new smoothing: {plain:?} vs {smoothed:?}"
    );
}

struct Capture(Arc<Mutex<Vec<TrainState>>>);

impl CheckpointWriter for Capture {
    fn write(&mut self, state: &TrainState) -> Result<PathBuf, nfbench::train::BoxError> {
        self.0.lock().unwrap().push(state.clone());
        Ok(PathBuf::from(format!("mem://{}", state.meta.step)))
    }
}

#[test]
fn checkpoint_resume_is_exact() {
    let mut p = preset(8);
    p.optim.ema_decay = 0.5;
    p.optim.warmup_epochs = 0.5;
    // Straight through.
    let a = spawn(
        p.clone(),
        TrainerOptions::default(),
        Arc::new(AtomicBool::new(false)),
    );
    while a.handle.recv().is_some() {}
    let straight = params_host(&a.vars);
    a.handle.join().unwrap();

    // Three steps, a live change, a checkpoint, stop; then resume from it.
    let saved = Arc::new(Mutex::new(Vec::new()));
    let opts = TrainerOptions {
        start_paused: true,
        checkpoint_writer: Some(Box::new(Capture(saved.clone()))),
        ..Default::default()
    };
    let b = spawn(p.clone(), opts, Arc::new(AtomicBool::new(false)));
    for i in 0..3 {
        b.handle.send(Command::StepOnce);
        until(&b.handle, |e| step_of(e) == Some(i + 1));
    }
    b.handle.send(Command::Stop { checkpoint: true });
    let seen = until(&b.handle, |e| matches!(e, Event::Finished { .. }));
    assert!(seen
        .iter()
        .any(|e| matches!(e, Event::Checkpoint { step: 3, .. })));
    b.handle.join().unwrap();
    let state = saved.lock().unwrap().pop().unwrap();
    assert_eq!(state.meta.step, 3);
    assert_eq!(
        state.meta.loader_position,
        serde_json::json!({ "batch": 3 })
    );
    assert!(state.get("momentum/hidden.w").is_some());
    assert!(state.get("ema/linear.b").is_some());

    // Round trip through the run record's checkpoint files too.
    let dir = tempfile::tempdir().unwrap();
    let mut writer = RecordCheckpointWriter {
        dir: dir.path().join("checkpoints"),
        keep_last: 1,
    };
    let path = writer.write(&state).unwrap();
    let loaded = nfbench::record::checkpoint::load_checkpoint(&path, &Device::Cpu).unwrap();
    let state = from_checkpoint(loaded).unwrap();

    let opts = TrainerOptions {
        resume: Some(state),
        ..Default::default()
    };
    let c = spawn(p, opts, Arc::new(AtomicBool::new(false)));
    let seen = until(&c.handle, |e| matches!(e, Event::Finished { .. }));
    assert!(seen
        .iter()
        .any(|e| matches!(e, Event::Started(s) if s.start_step == 3)));
    let resumed = params_host(&c.vars);
    c.handle.join().unwrap();
    assert_eq!(
        resumed, straight,
        "resumed run must match the straight run bit for bit"
    );
}

/// A disk that is full for the first `failures` writes, then has room.
struct FullDisk {
    failures: Arc<Mutex<u32>>,
    written: Arc<Mutex<Vec<u64>>>,
}

impl CheckpointWriter for FullDisk {
    fn write(&mut self, state: &TrainState) -> Result<PathBuf, nfbench::train::BoxError> {
        let mut left = self.failures.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            return Err("No space left on device (os error 28)".into());
        }
        self.written.lock().unwrap().push(state.meta.step);
        Ok(PathBuf::from(format!("mem://{}", state.meta.step)))
    }
}

fn full_disk(failures: u32) -> (FullDisk, Arc<Mutex<Vec<u64>>>) {
    let written = Arc::new(Mutex::new(Vec::new()));
    let disk = FullDisk {
        failures: Arc::new(Mutex::new(failures)),
        written: written.clone(),
    };
    (disk, written)
}

#[test]
fn a_failed_checkpoint_pauses_the_run_which_goes_on_once_the_write_succeeds() {
    let mut p = preset(6);
    p.run.checkpoint_every = 2;
    let (disk, written) = full_disk(2);
    let opts = TrainerOptions {
        checkpoint_writer: Some(Box::new(disk)),
        ..Default::default()
    };
    let s = spawn(p, opts, Arc::new(AtomicBool::new(false)));
    let seen = until(&s.handle, |e| matches!(e, Event::Finished { .. }));
    let summary = s.handle.join().unwrap();
    assert_eq!(summary.state, RunState::Finished);
    // One report for the streak of failures (not one per retry), naming the step and that nothing is on disk yet.
    let failed: Vec<&Event> = seen
        .iter()
        .filter(|e| matches!(e, Event::CheckpointFailed { .. }))
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(matches!(
        failed[0],
        Event::CheckpointFailed { step: 2, last_saved: None, reason } if reason.contains("No space left")
    ));
    // Paused while waiting: no step ran between the failure and the successful write.
    let at = |pred: &dyn Fn(&Event) -> bool| seen.iter().position(pred).unwrap();
    let fail_at = at(&|e| matches!(e, Event::CheckpointFailed { .. }));
    let saved_at = at(&|e| matches!(e, Event::Checkpoint { step: 2, .. }));
    assert!(fail_at < saved_at);
    // Step 2's own telemetry may arrive after the failure (control events overtake the telemetry lane); no later
    // step may.
    assert!(
        seen[fail_at..saved_at]
            .iter()
            .all(|e| step_of(e).is_none_or(|s| s <= 2)),
        "no training while the checkpoint is not written: {:?}",
        &seen[fail_at..saved_at]
    );
    assert!(seen[fail_at..].iter().any(|e| matches!(
        e,
        Event::State {
            state: RunState::Paused,
            ..
        }
    )));
    assert!(seen[saved_at..].iter().any(|e| matches!(
        e,
        Event::State {
            state: RunState::Running,
            ..
        }
    )));
    assert_eq!(*written.lock().unwrap(), vec![2, 4, 6]);
}

#[test]
fn a_stop_whose_final_checkpoint_fails_says_so_and_names_the_last_saved_step() {
    let mut p = preset(100);
    p.run.checkpoint_every = 2;
    // The step-2 checkpoint is written; everything after fails.
    let (disk, written) = full_disk(0);
    let failures = disk.failures.clone();
    let opts = TrainerOptions {
        start_paused: true,
        checkpoint_writer: Some(Box::new(disk)),
        ..Default::default()
    };
    let s = spawn(p, opts, Arc::new(AtomicBool::new(false)));
    for i in 0..3 {
        s.handle.send(Command::StepOnce);
        until(&s.handle, |e| step_of(e) == Some(i + 1));
    }
    *failures.lock().unwrap() = 1000;
    s.handle.send(Command::Stop { checkpoint: true });
    let seen = until(&s.handle, |e| matches!(e, Event::Finished { .. }));
    assert!(
        seen.iter().any(|e| matches!(
            e,
            Event::CheckpointFailed {
                step: 3,
                last_saved: Some(2),
                ..
            }
        )),
        "{seen:#?}"
    );
    assert_eq!(s.handle.join().unwrap().state, RunState::Stopped);
    assert_eq!(*written.lock().unwrap(), vec![2]);
}
