//! `nfbench sweep` on the real binary and the shipped data: a 2x3 grid of tiny runs, once straight through and
//! once SIGKILLed mid-sweep and started again; both tables are the same, and each row is what the run's
//! `metrics.h5` holds.

use nfbench::record::metrics::read_run;
use nfbench::record::runs::RunOutcome;
use nfbench::record::LiveFile;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const STEPS: u64 = 12;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sweep_cmd(out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nfbench"));
    c.current_dir(root())
        .args([
            "sweep",
            "presets/default.toml",
            "--grid",
            "agc.lambda=0.02,0.16",
            "--grid",
            "data.batch_size=8,16,32",
            "--steps",
            &STEPS.to_string(),
            "--jobs",
            "1",
        ])
        .args(
            [
                "model.name=nf_resnet8_cifar",
                "data.eval_images=64",
                "run.eval_every=4",
                "run.stats_every=2",
                "run.checkpoint_every=4",
                "optim.warmup_epochs=0",
            ]
            .iter()
            .flat_map(|s| ["--set", s]),
        )
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn ok(out: Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn run_dirs(out: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.join("metrics.h5").is_file() || p.join("checkpoints").is_dir())
        .collect();
    v.sort();
    v
}

/// The second run of the grid has a checkpoint and is not done: the sweep is half-way.
fn wait_half_way(out: &Path, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sweep ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "the sweep never got half-way");
        let dirs = run_dirs(out);
        if let Some(second) = dirs.get(1) {
            let ck = second.join("checkpoints").join("step-4.safetensors");
            if ck.is_file() {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_no_live(dirs: &[PathBuf]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while dirs.iter().any(|d| LiveFile::read_alive(d).is_some()) {
        assert!(Instant::now() < deadline, "a child outlived its sweep");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// results.csv's rows by run name: (step, loss bits, val top-1, clipped fraction, state).
fn csv_rows(out: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(out.join("results.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn a_killed_and_restarted_2x3_sweep_gives_the_uninterrupted_table_and_the_records_values() {
    let tmp = tempfile::tempdir().unwrap();
    let straight = tmp.path().join("straight");
    let stdout = ok(sweep_cmd(&straight).output().unwrap());
    assert!(stdout.contains("best: agc.lambda="), "{stdout}");
    let want = csv_rows(&straight);
    assert_eq!(want.len(), 6);

    let killed = tmp.path().join("killed");
    let mut child = sweep_cmd(&killed).spawn().unwrap();
    wait_half_way(&killed, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    // The children get SIGTERM with their parent: each stops with a final checkpoint.
    let dirs = run_dirs(&killed);
    wait_no_live(&dirs);
    let unfinished: Vec<&PathBuf> = dirs
        .iter()
        .filter(|d| !RunOutcome::read(d).is_ok_and(|o| o.is_done()))
        .collect();
    assert!(
        !unfinished.is_empty(),
        "the kill left no half-done run to resume: the test proves nothing"
    );
    assert!(dirs.len() < 6, "every run had started before the kill");
    ok(sweep_cmd(&killed).output().unwrap());
    let got = csv_rows(&killed);
    assert_eq!(got, want, "the restarted sweep's table differs");

    // Each row is the run's own record.
    for row in &got {
        let run = read_run(&killed.join(&row[0]).join("metrics.h5")).unwrap();
        let last = run.steps.last().unwrap();
        assert_eq!(run.steps.len() as u64, STEPS, "{}: every step once", row[0]);
        assert_eq!(row[3], last.step.to_string());
        assert_eq!(
            row[4].parse::<f64>().unwrap().to_bits(),
            last.loss.to_bits()
        );
        let top1 = run.evals.last().unwrap().top1;
        assert_eq!(row[5].parse::<f64>().unwrap(), top1);
        let clipped = run
            .steps
            .iter()
            .rev()
            .find(|s| s.clipped_fraction.is_finite())
            .unwrap()
            .clipped_fraction;
        assert_eq!(row[6].parse::<f64>().unwrap(), clipped);
        assert_eq!(row[7], "finished");
        // The grid values are the ones the run trained with.
        let preset: toml::Table = toml::from_str(
            &std::fs::read_to_string(killed.join(&row[0]).join("preset.toml")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            preset["agc"]["lambda"].as_float().unwrap().to_string(),
            row[1]
        );
        assert_eq!(
            preset["data"]["batch_size"]
                .as_integer()
                .unwrap()
                .to_string(),
            row[2]
        );
    }
    let png = image::open(killed.join("heatmap.png")).unwrap().to_rgb8();
    assert!(png.width() >= 600 && png.height() >= 400);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(killed.join("results.json")).unwrap())
            .unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), 6);
}

#[test]
fn a_bad_grid_key_is_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bad");
    let res = Command::new(env!("CARGO_BIN_EXE_nfbench"))
        .current_dir(root())
        .args([
            "sweep",
            "presets/default.toml",
            "--grid",
            "agc.lamda=0.1,0.2",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("agc.lamda") && err.contains("unknown field"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is created for a refused sweep");
}
