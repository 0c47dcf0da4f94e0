//! The real path: `Trainer::spawn` on the model zoo's `nf_resnet_cifar` and an HDF5 fixture written here, with the
//! run record's checkpoints; exact resume from a checkpoint file; the headless CLI's JSON summary.

use candle_core::Device;
use nfbench::data::{DatasetWriter, ImageShape, Split};
use nfbench::preset::Preset;
use nfbench::record::checkpoint::load_checkpoint;
use nfbench::record::trainer_checkpoint::from_checkpoint;
use nfbench::record::RecordCheckpointWriter;
use nfbench::train::messages::{Event, RunState};
use nfbench::train::{Trainer, TrainerOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Two classes: dark and bright 8x8 RGB images with some texture.
fn write_fixture(path: &Path) -> PathBuf {
    // The tests of this file write fixtures and train in parallel threads of one process; HDF5's advisory file
    // locks then sporadically refuse an open (EAGAIN) while another thread's writer is closing. Data files are
    // written by a separate `nfbench data import` in real use, so only the tests need this.
    std::env::set_var("HDF5_USE_FILE_LOCKING", "FALSE");
    let shape = ImageShape {
        height: 8,
        width: 8,
        channels: 3,
    };
    let mut w = DatasetWriter::create(path, shape, vec!["dark".into(), "bright".into()]).unwrap();
    for (split, n) in [(Split::Train, 48usize), (Split::Val, 16)] {
        let mut images = Vec::with_capacity(n * shape.bytes());
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let label = (i % 2) as u32;
            for p in 0..shape.bytes() {
                let base = if label == 0 { 40 } else { 200 };
                images.push((base + (p * 7 + i * 13) % 50) as u8);
            }
            labels.push(label);
        }
        w.append(split, &images, &labels).unwrap();
    }
    w.finish("train_hdf5 fixture").unwrap()
}

fn preset(data: &Path, steps: u64) -> Preset {
    let mut p = Preset::default();
    p.model.name = "nf_resnet_cifar".into();
    p.data.path = data.to_path_buf();
    p.data.batch_size = 8;
    p.data.workers = 1;
    p.data.prefetch = 2;
    p.data.crop_padding = 1;
    p.run.steps = steps;
    p.run.eval_every = 3;
    p.run.stats_every = 2;
    p.run.checkpoint_every = 3;
    p.run.keep_checkpoints = 5;
    p.run.device = nfbench::preset::DeviceSpec::Cpu;
    p.optim.warmup_epochs = 0.5;
    p
}

fn run_to_end(p: Preset, opts: TrainerOptions) -> Vec<Event> {
    let h = Trainer::spawn(p, opts).unwrap();
    let mut events = Vec::new();
    while let Some(e) = h.recv() {
        events.push(e);
    }
    let summary = h.join().unwrap_or_else(|e| panic!("trainer failed: {e}"));
    assert_eq!(summary.state, RunState::Finished, "{events:#?}");
    events
}

fn params_of(path: &Path) -> HashMap<String, Vec<f32>> {
    let ck = load_checkpoint(path, &Device::Cpu).unwrap();
    ck.tensors
        .iter()
        .filter(|(k, _)| k.starts_with("param/") || k.starts_with("momentum/"))
        .map(|(k, t)| {
            (
                k.clone(),
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        })
        .collect()
}

/// Options that write checkpoints in the run record's format under `run/checkpoints` (as `record::session` does).
fn recorded_at(run: &Path) -> TrainerOptions {
    TrainerOptions {
        run_dir: Some(run.to_path_buf()),
        checkpoint_writer: Some(Box::new(RecordCheckpointWriter {
            dir: run.join("checkpoints"),
            keep_last: 5,
        })),
        ..Default::default()
    }
}

#[test]
fn trains_on_hdf5_with_checkpoints_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_fixture(&dir.path().join("two.h5"));
    let run_a = dir.path().join("a");
    let events = run_to_end(
        preset(&data, 6),
        TrainerOptions {
            ..recorded_at(&run_a)
        },
    );
    let checkpoints: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Checkpoint { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(checkpoints, vec![3, 6]);
    let evals: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Eval(m) => Some(m.step),
            _ => None,
        })
        .collect();
    assert_eq!(evals, vec![3, 6]);
    let layers = events
        .iter()
        .find_map(|e| match e {
            Event::Layers(l) => Some(l.clone()),
            _ => None,
        })
        .unwrap();
    let cfg = nfbench::preset::ModelConfig {
        name: "nf_resnet_cifar".into(),
        ..Default::default()
    };
    let planned = nfbench::model::NetPlan::new(&cfg, 10, 3, 32).unwrap();
    assert_eq!(
        layers.spp.len(),
        planned.blocks.len(),
        "one signal-propagation row per residual block"
    );
    let cls = layers.agc.iter().find(|a| a.name == "linear.w").unwrap();
    assert!(!cls.clipped_by_agc);
    assert!(layers.agc.iter().all(|a| a.weight_norm.is_finite()));

    // Resume from the step-3 checkpoint into another run directory: its step-6 checkpoint must match A's.
    let ck3 = run_a.join("checkpoints").join("step-3.safetensors");
    let state = from_checkpoint(load_checkpoint(&ck3, &Device::Cpu).unwrap()).unwrap();
    assert_eq!(state.meta.step, 3);
    let run_b = dir.path().join("b");
    let events = run_to_end(
        preset(&data, 6),
        TrainerOptions {
            resume: Some(state),
            ..recorded_at(&run_b)
        },
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Started(s) if s.start_step == 3)));
    let a = params_of(&run_a.join("checkpoints").join("step-6.safetensors"));
    let b = params_of(&run_b.join("checkpoints").join("step-6.safetensors"));
    assert!(!a.is_empty());
    assert_eq!(a, b, "resumed run differs from the uninterrupted one");
}

#[test]
fn bad_data_path_fails_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.h5");
    let h = Trainer::spawn(preset(&missing, 2), TrainerOptions::default()).unwrap();
    let mut errors = Vec::new();
    while let Some(e) = h.recv() {
        if let Event::Error(m) = e {
            errors.push(m);
        }
    }
    // The trainer's error says its level (`data`); the file is in its source, the data error.
    let err = h.join().unwrap_err();
    let chain = nfbench::train::error_chain(&err);
    assert!(
        matches!(err, nfbench::train::TrainError::Data(_)),
        "{chain}"
    );
    assert!(
        chain.starts_with("data: ") && chain.contains("nope.h5"),
        "{chain}"
    );
    assert!(errors.iter().any(|m| m == &chain), "{errors:?}");
}

#[test]
fn headless_cli_prints_a_json_summary() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_fixture(&dir.path().join("two.h5"));
    let preset_path = dir.path().join("p.toml");
    std::fs::write(
        &preset_path,
        format!(
            "[model]\nname = \"nf_resnet_cifar\"\n[data]\npath = {:?}\nbatch_size = 8\nworkers = 1\n\
             [run]\nsteps = 4\neval_every = 0\ncheckpoint_every = 0\ndevice = \"cpu\"\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nfbench"))
        .args(["train", "--headless", "--preset"])
        .arg(&preset_path)
        .args([
            "--steps",
            "3",
            "--set",
            "agc.lambda=0.02",
            "--device",
            "auto",
            "--json-summary",
            "--run-dir",
        ])
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["steps"], 3);
    assert!(v["final_train_loss"].as_f64().unwrap().is_finite());
    let top1 = v["val_top1"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&top1));
    assert!(v["images_per_sec"].as_f64().unwrap() > 0.0);
    assert!(dir.path().join("run").join("metrics.h5").is_file());

    // A bad --set names the key.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nfbench"))
        .args(["train", "--headless", "--preset"])
        .arg(&preset_path)
        .args(["--set", "agc.lambda=-1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("agc.lambda"));

    // --device and --dtype are checked as the preset fields they override.
    for (flag, value, field) in [
        ("--device", "gpu0", "run.device"),
        ("--dtype", "fp16", "run.dtype"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nfbench"))
            .args(["train", "--headless", "--preset"])
            .arg(&preset_path)
            .args([flag, value])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(field) && err.contains(value), "{err}");
    }
}

/// `run.dtype = "bf16"`: the trainer says so (and warns that the CPU is the wrong place for it), trains with f32
/// master weights and momentum, and reports device memory with the statistics.
#[test]
fn bf16_trains_with_f32_master_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_fixture(&dir.path().join("two.h5"));
    let run = dir.path().join("bf16");
    let mut p = preset(&data, 3);
    p.run.dtype = nfbench::model::Precision::Bf16;
    let events = run_to_end(
        p,
        TrainerOptions {
            ..recorded_at(&run)
        },
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Started(s) if s.precision == "bf16"
    )));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Warning(w) if w.contains("bf16"))));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Memory { memory, .. } if memory.used_bytes > 0)));
    let losses: Vec<f64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Step(m) => Some(m.loss),
            _ => None,
        })
        .collect();
    assert_eq!(losses.len(), 3);
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let dir = run.join(nfbench::record::run_dir::CHECKPOINT_DIR);
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .expect("a final checkpoint");
    let ck = load_checkpoint(&file, &Device::Cpu).unwrap();
    for (name, t) in &ck.tensors {
        if name.starts_with("param/") || name.starts_with("momentum/") {
            assert_eq!(t.dtype(), candle_core::DType::F32, "{name}");
        }
    }
}
