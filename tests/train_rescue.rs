//! Divergence rescue (`[rescue]`) on the trainer thread: a tiny MLP on synthetic data whose batches can be
//! poisoned (all NaN) at chosen draws, checkpoints through the run record's writer in a temporary directory. A
//! diverging run rolls back to the last good checkpoint, tightens (values checked), skips the offending batches,
//! recovers and says so in its events; M rescues, then it gives up as `Diverged`; without a checkpoint it pauses.
//! Deterministic: every wait is on an event. The NaN test hook of the real binary (`NFBENCH_FAULT_NAN_AT_STEP`) is
//! driven through `nfbench train --headless` at the end.

use candle_core::{Device, Var};
use nfbench::preset::{Preset, Remedy};
use nfbench::record::RecordCheckpointWriter;
use nfbench::train::messages::{
    Command, Event, LiveParam, RescueAction, RescueReport, RescueTrigger, RunState,
};
use nfbench::train::parts::Parts;
use nfbench::train::{
    BatchSource, EvalBatches, HostBatch, SourceInfo, SyntheticSource, TrainState, Trainer,
    TrainerHandle, TrainerOptions,
};
use std::ops::RangeInclusive;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

mod mlp_support;

use mlp_support::{Mlp, INFO};

fn preset(steps: u64) -> Preset {
    let mut p = Preset::default();
    p.model.name = "mlp".into();
    p.data.batch_size = 32;
    p.run.steps = steps;
    p.run.eval_every = 0;
    p.run.stats_every = 1000;
    p.run.checkpoint_every = 10;
    p.run.keep_checkpoints = 3;
    p.run.device = nfbench::preset::DeviceSpec::Cpu;
    p.run.max_bad_steps = 5;
    p.optim.lr = 0.5;
    p.optim.warmup_epochs = 0.0;
    p.agc.lambda = 0.08;
    p.rescue.enabled = true;
    p.rescue.bad_steps = 2;
    p.rescue.max_rescues = 3;
    p.rescue.spike_window = 0;
    p.rescue.remedy = Remedy::Both;
    p
}

/// Synthetic batches; the draws (numbered from 1) in `bad` come out all NaN, as a corrupt batch would.
struct Poisoned {
    inner: SyntheticSource,
    drawn: u64,
    bad: RangeInclusive<u64>,
}

impl BatchSource for Poisoned {
    fn info(&self) -> SourceInfo {
        self.inner.info()
    }
    fn next_train(&mut self) -> nfbench::train::Result<HostBatch> {
        let mut b = self.inner.next_train()?;
        self.drawn += 1;
        if self.bad.contains(&self.drawn) {
            b.images = (b.images.zeros_like()? * f64::NAN)?;
        }
        Ok(b)
    }
    fn position(&self) -> serde_json::Value {
        self.inner.position()
    }
    fn eval_batches(&mut self, max_images: usize) -> nfbench::train::Result<EvalBatches<'_>> {
        self.inner.eval_batches(max_images)
    }
}

struct Run {
    handle: TrainerHandle,
    vars: Arc<Mutex<Vec<Var>>>,
    dir: tempfile::TempDir,
}

/// A trainer on `preset` whose draws in `bad` are poisoned, writing checkpoints to a temporary run directory.
fn spawn(preset: Preset, bad: RangeInclusive<u64>, start_paused: bool) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let vars = Arc::new(Mutex::new(Vec::new()));
    let vars2 = vars.clone();
    let opts = TrainerOptions {
        start_paused,
        checkpoint_writer: Some(Box::new(RecordCheckpointWriter {
            dir: dir.path().join("checkpoints"),
            keep_last: preset.run.keep_checkpoints,
        })),
        ..Default::default()
    };
    let handle = Trainer::spawn_with(
        preset,
        opts,
        Box::new(
            move |_dev: &Device, p: &Preset, _resume: Option<&TrainState>| {
                let model = Mlp::new(Arc::new(AtomicBool::new(false)));
                *vars2.lock().unwrap() = model.params.iter().map(|p| p.var.clone()).collect();
                let inner = SyntheticSource::new(INFO, p.data.batch_size, 7)?;
                Ok(Parts {
                    model: Box::new(model),
                    source: Box::new(Poisoned {
                        inner,
                        drawn: 0,
                        bad,
                    }) as Box<dyn BatchSource>,
                })
            },
        ),
    )
    .unwrap();
    Run { handle, vars, dir }
}

/// Receive until `pred` matches (panics when nothing arrives for minutes: a hung test).
fn until(h: &TrainerHandle, pred: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let e = h
            .recv_timeout(std::time::Duration::from_secs(300))
            .unwrap_or_else(|err| panic!("no expected event ({err:?}); saw {seen:#?}"));
        let hit = pred(&e);
        seen.push(e);
        if hit {
            return seen;
        }
    }
}

/// Every event until the trainer exits.
fn drain(h: &TrainerHandle) -> Vec<Event> {
    let mut seen = Vec::new();
    while let Ok(e) = h.recv_timeout(std::time::Duration::from_secs(300)) {
        seen.push(e);
    }
    seen
}

fn rescues(events: &[Event]) -> Vec<&RescueReport> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Rescued(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// The steps in the order they ran (telemetry is never dropped here: the lane holds every step of these runs).
fn steps(events: &[Event]) -> Vec<(u64, f64, f64, f64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Step(m) => Some((m.step, m.loss, m.lr, m.lambda)),
            _ => None,
        })
        .collect()
}

fn rescue_applied(events: &[Event]) -> Vec<(Vec<LiveParam>, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Applied {
                params,
                origin,
                step,
            } if origin == "rescue" => Some((params.clone(), *step)),
            _ => None,
        })
        .collect()
}

fn final_state(events: &[Event]) -> Option<RunState> {
    events.iter().rev().find_map(|e| match e {
        Event::State { state, .. } => Some(*state),
        _ => None,
    })
}

#[test]
fn poisoned_batches_roll_back_tighten_skip_and_recover() {
    let p = preset(60);
    let run = spawn(p, 25..=26, false);
    let events = drain(&run.handle);
    let summary = run.handle.join().unwrap();

    // Steps 25 and 26 are non-finite; at the second (N = 2) the rescue rolls back to the step-20 checkpoint.
    let r = rescues(&events);
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0].step, 26);
    assert_eq!(r[0].trigger, RescueTrigger::NonFinite { consecutive: 2 });
    let RescueAction::RolledBack {
        to_step,
        checkpoint,
        params,
        skipped_batches,
    } = &r[0].action
    else {
        panic!("{:?}", r[0].action);
    };
    assert_eq!(*to_step, 20);
    assert!(
        checkpoint.ends_with("step-20.safetensors") || checkpoint.to_string_lossy().contains("20")
    );
    // The batches of steps 21..=26, the poisoned ones among them, are not trained again.
    assert_eq!(*skipped_batches, 6);
    // Tightened: lambda 0.08 -> 0.04 and lr_scale 1 -> 0.5, by value, through the live path from step 21 on.
    let tightened = vec![LiveParam::AgcLambda(0.04), LiveParam::LrScale(0.5)];
    assert_eq!(params, &tightened);
    assert_eq!(rescue_applied(&events), vec![(tightened, 21)]);
    assert_eq!((r[0].rescues, r[0].max_rescues), (1, 3));
    assert!(
        r[0].describe().contains("rolled back to step 20"),
        "{}",
        r[0].describe()
    );

    // The steps ran 1..=26, then 21..=60 again: the run went back to 20.
    let s = steps(&events);
    let order: Vec<u64> = s.iter().map(|x| x.0).collect();
    let expected: Vec<u64> = (1..=26).chain(21..=60).collect();
    assert_eq!(order, expected);
    // Same schedule step, half the rate and half lambda after the rollback; finite losses all the way.
    let (before, after) = (&s[20], &s[26]);
    assert_eq!((before.0, after.0), (21, 21));
    assert!(
        (after.2 - before.2 / 2.0).abs() < 1e-12 * before.2,
        "{before:?} {after:?}"
    );
    assert_eq!((before.3, after.3), (0.08, 0.04));
    assert!(s[26..].iter().all(|x| x.1.is_finite()), "{:?}", &s[26..]);
    assert!(!s[26..].iter().any(|x| x.1 > 3.0 * s[19].1));
    // Recovered: it finished, learning (the synthetic classes are separable).
    assert_eq!(final_state(&events), Some(RunState::Finished));
    assert_eq!(summary.steps, 60);
    assert!(summary.final_train_loss < s[0].1, "{summary:?}");
    assert!(run.dir.path().join("checkpoints").exists());
}

#[test]
fn the_rollback_restores_the_checkpoint_exactly() {
    let p = preset(40);
    let run = spawn(p, 15..=16, true);
    // Step by step up to step 16, the second poisoned one, then wait for the rescue it triggers: the trainer is
    // paused then, so the weights read are the rolled-back ones.
    for i in 1..=16 {
        run.handle.send(Command::StepOnce);
        until(&run.handle, |e| matches!(e, Event::Step(m) if m.step == i));
    }
    until(&run.handle, |e| matches!(e, Event::Rescued(_)));
    let weights: Vec<Vec<f32>> = run
        .vars
        .lock()
        .unwrap()
        .iter()
        .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    let ck = nfbench::record::checkpoint::load_checkpoint(
        &run.dir
            .path()
            .join("checkpoints")
            .join(nfbench::record::checkpoint::file_name(10)),
        &Device::Cpu,
    )
    .unwrap();
    let names = ["hidden.w", "hidden.b", "gain", "linear.w", "linear.b"];
    for (name, w) in names.iter().zip(&weights) {
        let saved: Vec<f32> = ck.tensors[&format!("param/{name}")]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(
            &saved, w,
            "{name} after the rollback is the step-10 checkpoint's"
        );
    }
    run.handle.send(Command::Stop { checkpoint: false });
    drain(&run.handle);
    run.handle.join().unwrap();
}

#[test]
fn gives_up_after_m_rescues_with_a_clear_final_state() {
    let mut p = preset(80);
    p.rescue.max_rescues = 2;
    p.rescue.remedy = Remedy::HalveLambda;
    // Every batch from the 15th on is bad: each rollback runs into bad batches again.
    let run = spawn(p, 15..=u64::MAX, false);
    // Diverged pauses the run; nobody resumes it here, so stop it once it says so.
    let mut events = until(&run.handle, |e| {
        matches!(
            e,
            Event::State {
                state: RunState::Diverged,
                ..
            }
        )
    });
    run.handle.send(Command::Stop { checkpoint: false });
    events.extend(drain(&run.handle));
    run.handle.join().unwrap();

    let r = rescues(&events);
    assert_eq!(r.len(), 3, "{r:#?}");
    // 14 good steps, checkpoint at 10; steps 15, 16 bad: back to 10. Then 11..=12 on bad batches: back to 10 again.
    let to: Vec<Option<u64>> = r
        .iter()
        .map(|x| match &x.action {
            RescueAction::RolledBack { to_step, .. } => Some(*to_step),
            _ => None,
        })
        .collect();
    assert_eq!(to, vec![Some(10), Some(10), None]);
    assert_eq!((r[0].step, r[1].step, r[2].step), (16, 12, 12));
    assert_eq!(r[2].action, RescueAction::GaveUp);
    assert_eq!((r[2].rescues, r[2].max_rescues), (2, 2));
    assert!(
        r[2].describe().contains("gave up after 2 rescues"),
        "{}",
        r[2].describe()
    );
    // lambda halved at each rescue: 0.08 -> 0.04 -> 0.02; lr_scale untouched (remedy = halve_lambda).
    let applied: Vec<Vec<LiveParam>> = rescue_applied(&events).into_iter().map(|a| a.0).collect();
    assert_eq!(
        applied,
        vec![
            vec![LiveParam::AgcLambda(0.04)],
            vec![LiveParam::AgcLambda(0.02)]
        ]
    );
    let diverged_at = events.iter().find_map(|e| match e {
        Event::State {
            state: RunState::Diverged,
            step,
        } => Some(*step),
        _ => None,
    });
    assert_eq!(diverged_at, Some(12));
    assert_eq!(final_state(&events), Some(RunState::Stopped));
}

#[test]
fn without_a_checkpoint_it_says_so_and_pauses_as_diverged() {
    let mut p = preset(40);
    p.run.checkpoint_every = 100;
    let run = spawn(p, 3..=4, false);
    let mut events = until(&run.handle, |e| {
        matches!(
            e,
            Event::State {
                state: RunState::Diverged,
                ..
            }
        )
    });
    run.handle.send(Command::Stop { checkpoint: false });
    events.extend(drain(&run.handle));
    run.handle.join().unwrap();
    let r = rescues(&events);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].step, 4);
    let RescueAction::NoCheckpoint { reason } = &r[0].action else {
        panic!("{:?}", r[0].action);
    };
    assert!(reason.contains("no checkpoint"), "{reason}");
    assert!(rescue_applied(&events).is_empty());
}

#[test]
fn off_it_pauses_after_max_bad_steps_as_before() {
    let mut p = preset(40);
    p.rescue.enabled = false;
    p.run.max_bad_steps = 3;
    let run = spawn(p, 15..=17, false);
    let mut events = until(&run.handle, |e| {
        matches!(
            e,
            Event::State {
                state: RunState::Diverged,
                ..
            }
        )
    });
    run.handle.send(Command::Stop { checkpoint: false });
    events.extend(drain(&run.handle));
    run.handle.join().unwrap();
    assert!(rescues(&events).is_empty());
    assert_eq!(steps(&events).last().map(|s| s.0), Some(17));
}

/// The real binary on the shipped CIFAR-10 subset, made to diverge by the NaN test hook: the rescue is printed, and
/// the run record holds it (an events row that replays as the same `Rescued`, the remedy as `applied` rows), with
/// one step row per step (the rows of the abandoned steps dropped), and the run finishes with its accuracy.
#[test]
fn headless_run_with_injected_nans_is_rescued_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nfbench"))
        .env(nfbench::train::rescue::NAN_FAULT_ENV, "15-16")
        .args(["train", "--headless", "--preset", "presets/default.toml"])
        .args(["--steps", "24", "--json-summary", "--run-dir"])
        .arg(&run_dir)
        .args([
            "--set",
            "data.batch_size=16",
            "--set",
            "data.eval_images=64",
            "--set",
            "run.eval_every=0",
            "--set",
            "run.checkpoint_every=10",
            "--set",
            "rescue.enabled=true",
            "--set",
            "rescue.bad_steps=2",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "rescue: step 16: 2 non-finite steps in a row: rescue 1/3: rolled back to step 10"
        ),
        "{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["state"], "Finished");
    assert_eq!(summary["steps"], 24);
    assert!((0.0..=1.0).contains(&summary["val_top1"].as_f64().unwrap()));

    let rec = nfbench::record::metrics::read_run(&run_dir.join("metrics.h5")).unwrap();
    let steps: Vec<u64> = rec.steps.iter().map(|s| s.step).collect();
    assert_eq!(steps, (1..=24).collect::<Vec<u64>>());
    // Steps 11.. are the ones trained again, with the remedy: lambda 0.08 -> 0.04.
    assert!(rec.steps[..10].iter().all(|s| s.lambda == 0.08));
    assert!(rec.steps[10..]
        .iter()
        .all(|s| s.lambda == 0.04 && s.loss.is_finite()));
    let rows: Vec<_> = rec.events.iter().filter(|r| r.kind == "rescued").collect();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].step, rows[0].value.as_str()), (16, "rolled_back"));
    let report: RescueReport = serde_json::from_str(&rows[0].detail).unwrap();
    assert!(matches!(
        report.action,
        RescueAction::RolledBack {
            to_step: 10,
            skipped_batches: 6,
            ..
        }
    ));
    let applied: Vec<(u64, &str, &str)> = rec
        .events
        .iter()
        .filter(|r| r.kind == "applied" && r.detail == "rescue")
        .map(|r| (r.step, r.key.as_str(), r.value.as_str()))
        .collect();
    assert_eq!(
        applied,
        vec![(11, "agc.lambda", "0.04"), (11, "optim.lr_scale", "0.5")]
    );
    let replayed = nfbench::record::replay::recorded_events(&rec);
    assert!(replayed.contains(&Event::Rescued(report)));
}
