//! metrics.h5: schema round trip, resume truncation, crash safety (SIGKILL), errors that name the file.

mod record_support;

use nfbench::record::metrics::{self, read_run, Recorder};
use nfbench::record::RunDir;
use nfbench::train::messages::{Event, LayerStats};
use record_support::{layer_stats, step_metrics, synthetic_events, BLOCKS, LAYERS};
use std::io::BufRead;

fn new_run(dir: &std::path::Path) -> RunDir {
    RunDir::create(
        Some(&dir.join("run")),
        std::path::Path::new("presets/default.toml"),
        &Default::default(),
    )
    .expect("run dir")
}

/// NaN-aware equality through Debug (NaN grad norms are part of the stream).
fn same<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

#[test]
fn schema_round_trip() {
    let _serial = record_support::one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    let events = synthetic_events(120, 10);
    {
        let mut rec = Recorder::create(&run).unwrap();
        for e in &events {
            rec.record(e).unwrap();
        }
    }
    let back = read_run(&run.metrics_path()).unwrap();

    let steps: Vec<_> = events
        .iter()
        .filter_map(|e| {
            if let Event::Step(m) = e {
                Some(m.clone())
            } else {
                None
            }
        })
        .collect();
    assert!(same(&back.steps, &steps), "steps differ");
    assert_eq!(back.step_times.len(), steps.len());
    let evals: Vec<_> = events
        .iter()
        .filter_map(|e| {
            if let Event::Eval(m) = e {
                Some(m.clone())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(back.evals, evals);
    let layers: Vec<LayerStats> = events
        .iter()
        .filter_map(|e| {
            if let Event::Layers(l) = e {
                Some((**l).clone())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(back.layers.len(), 12);
    assert!(same(&back.layers, &layers), "layer statistics differ");
    let thr: Vec<_> = events
        .iter()
        .filter_map(|e| {
            if let Event::Throughput(t) = e {
                Some(t.clone())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(back.throughput, thr);

    let kinds: Vec<&str> = back.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "started",
            "state",
            "applied",
            "rejected",
            "applied",
            "applied",
            "checkpoint",
            "warning",
            "finished"
        ]
    );
    assert_eq!(
        back.changes_of("agc.lambda"),
        vec![(40, "0.02".to_string())]
    );
    assert_eq!(
        back.changes_of("model.alpha"),
        vec![(80, "0.5".to_string())]
    );
    assert_eq!(
        back.changes_of("agc.enabled"),
        vec![(80, "true".to_string())]
    );
    let applied = &back.events[4];
    assert_eq!(applied.detail, "preset reload");
    assert_eq!(back.events[3].detail, "must be in (0, 1]");
    assert_eq!(
        back.events[7].detail,
        "a warning\twith \"quotes\" and ünïcode"
    );
    assert_eq!(
        back.events[7].step, 120,
        "warnings carry the last step seen"
    );
    let started = back.started().unwrap();
    assert_eq!(
        (started.model.as_str(), started.params, started.steps),
        ("nf_resnet_cifar", 12345, 120)
    );
    assert!(
        back.preset_toml.contains("[model]"),
        "the preset is kept as an attribute"
    );
    assert_eq!(back.best_eval().map(|e| e.step), Some(120));
    assert_eq!(back.last_step(), Some(120));
}

#[test]
fn layer_names_are_attributes_and_arrays_are_snapshot_by_layer() {
    let _serial = record_support::one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    {
        let mut rec = Recorder::create(&run).unwrap();
        for e in synthetic_events(30, 10) {
            rec.record(&e).unwrap();
        }
    }
    let file = hdf5::File::open(run.metrics_path()).unwrap();
    let agc = file.group("layers/agc").unwrap();
    let names: Vec<hdf5::types::VarLenUnicode> = agc.attr("names").unwrap().read_raw().unwrap();
    let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
    assert_eq!(names, LAYERS);
    assert_eq!(
        agc.dataset("clipped_fraction").unwrap().shape(),
        vec![3, LAYERS.len()]
    );
    assert_eq!(
        agc.dataset("units").unwrap().read_raw::<u64>().unwrap(),
        vec![16, 32, 48, 64, 80, 96]
    );
    let spp = file.group("layers/spp").unwrap();
    assert_eq!(
        spp.dataset("avg_var").unwrap().shape(),
        vec![3, BLOCKS.len()]
    );
    let steps = file.group("steps").unwrap();
    assert_eq!(
        steps
            .dataset("loss")
            .unwrap()
            .read_raw::<f64>()
            .unwrap()
            .len(),
        30
    );
    let format: hdf5::types::VarLenUnicode = file.attr("format").unwrap().read_scalar().unwrap();
    assert_eq!(format.as_str(), metrics::FORMAT);
}

#[test]
fn a_snapshot_with_other_layer_names_is_skipped_with_a_warning() {
    let _serial = record_support::one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    {
        let mut rec = Recorder::create(&run).unwrap();
        rec.record(&Event::Layers(Box::new(layer_stats(10, 0.01))))
            .unwrap();
        let mut other = layer_stats(20, 0.01);
        other.agc.pop();
        rec.record(&Event::Layers(Box::new(other))).unwrap();
    }
    let back = read_run(&run.metrics_path()).unwrap();
    assert_eq!(back.layers.len(), 2, "spp still recorded at step 20");
    assert_eq!(back.layers[1].agc.len(), 0);
    assert_eq!(back.layers[1].spp.len(), BLOCKS.len());
    assert!(back
        .events
        .iter()
        .any(|e| e.kind == "warning" && e.key == "layers/agc" && e.step == 20));
}

#[test]
fn resume_drops_rows_after_the_checkpoint_and_appends() {
    let _serial = record_support::one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    {
        let mut rec = Recorder::create(&run).unwrap();
        for e in synthetic_events(100, 10) {
            rec.record(&e).unwrap();
        }
    }
    {
        let mut rec = Recorder::open_for_resume(&run, 60).unwrap();
        for step in 61..=75 {
            rec.record(&Event::Step(step_metrics(step, 0.5, 0.5)))
                .unwrap();
            if step % 10 == 0 {
                rec.record(&Event::Layers(Box::new(layer_stats(step, 0.5))))
                    .unwrap();
            }
        }
    }
    let back = read_run(&run.metrics_path()).unwrap();
    let steps: Vec<u64> = back.steps.iter().map(|s| s.step).collect();
    assert_eq!(steps, (1..=75).collect::<Vec<_>>());
    assert_eq!(
        back.steps[70].lambda, 0.5,
        "rows after 60 come from the resumed run"
    );
    assert_eq!(
        back.steps[59].lambda, 0.02,
        "rows up to 60 are the original ones"
    );
    let snaps: Vec<u64> = back.layers.iter().map(|l| l.step).collect();
    assert_eq!(snaps, vec![10, 20, 30, 40, 50, 60, 70]);
    assert_eq!(
        back.evals.iter().map(|e| e.step).collect::<Vec<_>>(),
        vec![40]
    );
    assert!(back.throughput.iter().all(|t| t.step <= 60));
    let resumed = back.events.iter().find(|e| e.kind == "resumed").unwrap();
    assert_eq!(resumed.step, 60);
    assert!(
        back.events
            .iter()
            .any(|e| e.kind == "finished" && e.step == 100),
        "history is kept"
    );
}

#[test]
fn errors_name_the_file() {
    let _serial = record_support::one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.h5");
    let err = read_run(&missing).unwrap_err().to_string();
    assert!(err.contains("nope.h5"), "{err}");

    let other = tmp.path().join("other.h5");
    hdf5::File::create(&other)
        .unwrap()
        .create_group("x")
        .unwrap();
    let err = read_run(&other).unwrap_err().to_string();
    assert!(
        err.contains("other.h5") && err.contains("not an nfbench metrics file"),
        "{err}"
    );

    let garbage = tmp.path().join("garbage.h5");
    std::fs::write(&garbage, b"not hdf5 at all").unwrap();
    let err = read_run(&garbage).unwrap_err().to_string();
    assert!(err.contains("garbage.h5"), "{err}");

    let run = new_run(tmp.path());
    drop(Recorder::create(&run).unwrap());
    let err = Recorder::create(&run).err().unwrap().to_string();
    assert!(
        err.contains("metrics.h5") && err.contains("already exists"),
        "{err}"
    );
}

const CHILD_ENV: &str = "NFBENCH_TEST_SIGKILL_CHILD_DIR";

/// Not a test on its own: the child process of `sigkill_leaves_a_readable_file` (it does nothing unless the
/// parent set CHILD_ENV). It records forever and says on stdout which step each flush covered.
#[test]
fn sigkill_child_writer() {
    let _serial = record_support::one_at_a_time();
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let run = RunDir::open(std::path::Path::new(&dir)).unwrap();
    let mut rec = Recorder::create(&run).unwrap();
    for step in 1.. {
        rec.record(&Event::Step(step_metrics(step, 0.01, 0.2)))
            .unwrap();
        if step % 10 == 0 {
            rec.record(&Event::Layers(Box::new(layer_stats(step, 0.01))))
                .unwrap();
            println!("<<flushed {step}>>");
        }
    }
}

#[test]
fn sigkill_leaves_a_readable_file_with_everything_flushed() {
    let _serial = record_support::one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, run.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut flushed = 0;
    for line in std::io::BufReader::new(stdout).lines() {
        // libtest may print on the same line first; the marker is unambiguous.
        if let Some(n) = line.unwrap().split("<<flushed ").nth(1) {
            flushed = n.trim_end_matches(">>").trim().parse().unwrap();
            if flushed >= 300 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(flushed >= 300, "the child stopped early");

    let back = read_run(&run.metrics_path()).expect("the file opens after SIGKILL");
    let steps: Vec<u64> = back.steps.iter().map(|s| s.step).collect();
    assert!(
        steps.len() as u64 >= flushed,
        "{} rows, {} flushed",
        steps.len(),
        flushed
    );
    assert_eq!(
        steps,
        (1..=steps.len() as u64).collect::<Vec<_>>(),
        "a contiguous prefix"
    );
    assert!(back.layers.len() as u64 >= flushed / 10);

    // And it can be continued.
    let resume_at = flushed - 5;
    drop(Recorder::open_for_resume(&run, resume_at).unwrap());
    let back = read_run(&run.metrics_path()).unwrap();
    assert_eq!(back.last_step(), Some(resume_at));
}

#[test]
fn readme_documents_every_column() {
    let _serial = record_support::one_at_a_time();
    let readme = include_str!("../README.md");
    let section = readme
        .split("## Run records (metrics.h5)")
        .nth(1)
        .expect("README section");
    let section = section.split("\n## ").next().unwrap_or_default();
    for spec in metrics::STEP_COLUMNS
        .iter()
        .chain(metrics::EVAL_COLUMNS)
        .chain(metrics::THROUGHPUT_COLUMNS)
        .chain(metrics::EVENT_COLUMNS)
        .chain(metrics::AGC_FIELDS)
        .chain(metrics::SPP_FIELDS)
    {
        assert!(
            section.contains(&format!("`{}`", spec.name)),
            "README does not document `{}`",
            spec.name
        );
    }
}
