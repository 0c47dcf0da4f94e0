//! `nfbench compare`: two real runs that differ in lambda give the overlay PNGs and a markdown table whose values
//! are the records' and whose preset differences are exactly the field that differs.

use nfbench::record::metrics::read_run;
use std::path::Path;
use std::process::Command;

fn nfbench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nfbench"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn train(dir: &Path, lambda: &str) {
    let lambda = format!("agc.lambda={lambda}");
    let mut args = vec![
        "train",
        "--headless",
        "--steps",
        "8",
        "--run-dir",
        dir.to_str().unwrap(),
    ];
    for s in [
        "model.name=nf_resnet8_cifar",
        "data.batch_size=16",
        "data.eval_images=64",
        "run.eval_every=4",
        "run.checkpoint_every=8",
        lambda.as_str(),
    ] {
        args.extend(["--set", s]);
    }
    nfbench(&args);
}

#[test]
fn compare_writes_overlays_and_a_table_of_the_records() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("run-a"), tmp.path().join("run-b"));
    train(&a, "0.01");
    train(&b, "0.16");
    let out = tmp.path().join("cmp");
    let listed = nfbench(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(listed.lines().count(), 3, "{listed}");
    for png in ["compare_loss.png", "compare_top1.png"] {
        let img = image::open(out.join(png)).unwrap().to_rgb8();
        assert_eq!((img.width(), img.height()), (1200, 650), "{png}");
        // Two runs in two colours (tab10's first two), so both curves are drawn.
        for color in [[31u8, 119, 180], [255, 127, 14]] {
            assert!(
                img.pixels().any(|p| p.0 == color),
                "{png}: no pixel of run colour {color:?}"
            );
        }
    }
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    for (name, dir) in [("run-a", &a), ("run-b", &b)] {
        let run = read_run(&dir.join("metrics.h5")).unwrap();
        let top1 = format!("{:.2}%", 100.0 * run.evals.last().unwrap().top1);
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{md}"));
        assert!(
            row.contains(&top1) && row.contains("| 8 |"),
            "{row} lacks {top1}"
        );
    }
    let diffs: Vec<&str> = md
        .lines()
        .skip_while(|l| !l.starts_with("## Preset differences"))
        .filter(|l| l.starts_with("| `"))
        .collect();
    assert_eq!(diffs, ["| `agc.lambda` | 0.01 | 0.16 |"], "{md}");
}
