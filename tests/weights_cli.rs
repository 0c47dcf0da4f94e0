//! The weights commands on a tiny real run: `nfbench eval` gives the run's own last evaluation, `predict` names a
//! class of a JPEG made here, fine-tuning from the run's checkpoint onto another class count replaces the head and
//! leaves the frozen layers bit-identical, and a freeze pattern matching nothing is an error naming it.

use candle_core::Device;
use nfbench::data::{DatasetWriter, ImageShape, Split};
use nfbench::record::checkpoint::load_checkpoint;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `classes` classes of 8x8 RGB images whose brightness is the class, with some texture.
fn write_fixture(path: &Path, classes: u32) -> PathBuf {
    std::env::set_var("HDF5_USE_FILE_LOCKING", "FALSE");
    let shape = ImageShape {
        height: 8,
        width: 8,
        channels: 3,
    };
    let names = (0..classes).map(|k| format!("tone{k}")).collect();
    let mut w = DatasetWriter::create(path, shape, names).unwrap();
    for (split, n) in [(Split::Train, 48usize), (Split::Val, 18)] {
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let label = i as u32 % classes;
            for p in 0..shape.bytes() {
                let base = 30 + 180 * label as usize / classes.max(2) as usize;
                images.push((base + (p * 7 + i * 13) % 40) as u8);
            }
            labels.push(label);
        }
        w.append(split, &images, &labels).unwrap();
    }
    w.finish("weights_cli fixture").unwrap()
}

fn nfbench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nfbench"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn preset(dir: &Path, name: &str, data: &Path, extra: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[model]\nname = \"nf_resnet8_cifar\"\n{extra}\n[data]\npath = {:?}\nbatch_size = 8\nworkers = 1\n\
             [run]\nsteps = 30\neval_every = 15\ncheckpoint_every = 15\ndevice = \"cpu\"\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    path
}

fn train(preset: &Path, run: &Path) -> serde_json::Value {
    let out = nfbench(&[
        "train",
        "--headless",
        "--json-summary",
        "--preset",
        preset.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
    ]);
    let stdout = ok(&out);
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

fn latest_checkpoint(run: &Path) -> PathBuf {
    let mut all: Vec<PathBuf> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    all.sort_by_key(|p| nfbench::record::checkpoint::step_of(p));
    all.pop().unwrap()
}

fn params(path: &Path) -> HashMap<String, Vec<f32>> {
    load_checkpoint(path, &Device::Cpu)
        .unwrap()
        .tensors
        .iter()
        .filter_map(|(k, t)| {
            let name = k.strip_prefix("param/")?;
            Some((
                name.to_string(),
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            ))
        })
        .collect()
}

#[test]
fn eval_predict_and_fine_tuning_on_a_tiny_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_fixture(&dir.path().join("two.h5"), 2);
    let run = dir.path().join("run");
    let summary = train(&preset(dir.path(), "p.toml", &data, ""), &run);
    let recorded = summary["val_top1"].as_f64().unwrap();
    let evals = nfbench::record::metrics::read_run(&run.join("metrics.h5"))
        .unwrap()
        .evals;
    let last = evals.last().unwrap();
    assert_eq!(last.top1, recorded);
    // A run that learnt something, so equal accuracies are no coincidence of chance-level guessing.
    assert!(recorded > 0.5, "{summary}");

    // eval on the run directory: the run's own last evaluation (same weights, same images).
    let out = nfbench(&[
        "eval",
        run.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    let line: serde_json::Value = serde_json::from_str(ok(&out).lines().last().unwrap()).unwrap();
    eprintln!("eval {line}");
    assert_eq!(line["top1"].as_f64().unwrap(), recorded, "{line}");
    assert_eq!(line["images"], 18);
    assert_eq!(line["top5"].as_f64().unwrap(), 1.0);
    assert!(line["loss"].as_f64().unwrap().is_finite());

    // predict on a JPEG made here: two classes with names and probabilities summing to 1.
    let jpeg = dir.path().join("bright.jpg");
    image::RgbImage::from_fn(32, 24, |x, y| {
        image::Rgb([200 + (x % 20) as u8, 190 + (y % 30) as u8, 210])
    })
    .save(&jpeg)
    .unwrap();
    let out = nfbench(&[
        "predict",
        run.to_str().unwrap(),
        jpeg.to_str().unwrap(),
        "--json",
    ]);
    let line: serde_json::Value = serde_json::from_str(ok(&out).lines().last().unwrap()).unwrap();
    let top = line["top"].as_array().unwrap();
    assert_eq!(top.len(), 2);
    let names: Vec<&str> = top.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"tone0") && names.contains(&"tone1"),
        "{names:?}"
    );
    let total: f64 = top.iter().map(|g| g["probability"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-5, "{total}");

    // Fine-tune onto three classes from the run's checkpoint: a new head, stem and stage 1 frozen.
    let start = latest_checkpoint(&run);
    let three = write_fixture(&dir.path().join("three.h5"), 3);
    let extra = format!(
        "init_from = {:?}\nfreeze = [\"stem*\", \"s1*\"]\nhead_lr_multiplier = 10.0",
        start.display().to_string()
    );
    let tuned_run = dir.path().join("tuned");
    train(&preset(dir.path(), "ft.toml", &three, &extra), &tuned_run);
    let (before, after) = (params(&start), params(&latest_checkpoint(&tuned_run)));
    let mut frozen = 0;
    for (name, v) in &after {
        if name.starts_with("stem") || name.starts_with("s1") {
            assert_eq!(v, &before[name], "{name} moved although frozen");
            frozen += 1;
        } else if name.starts_with("s2") && name.ends_with(".w") {
            assert_ne!(v, &before[name], "{name} did not train");
        }
    }
    assert!(frozen >= 4, "{frozen} frozen parameters");
    assert_eq!(after["linear.b"].len(), 3);

    // A pattern that matches nothing is an error naming it.
    let bad = preset(dir.path(), "bad.toml", &three, "freeze = [\"stage1*\"]");
    let out = Command::new(env!("CARGO_BIN_EXE_nfbench"))
        .args(["train", "--headless", "--preset"])
        .arg(&bad)
        .arg("--run-dir")
        .arg(dir.path().join("bad"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("model.freeze") && stderr.contains("stage1*"),
        "{stderr}"
    );
}
