//! Reports (real PNG files), the runs listing, and replay's rebuilt event stream, on a synthetic recorded run.

mod record_support;

use nfbench::record::metrics::{read_run, Recorder};
use nfbench::record::replay::{cursor_stops, recorded_events};
use nfbench::record::report::write_report;
use nfbench::record::runs::{format_table, list_runs};
use nfbench::record::RunDir;
use nfbench::train::messages::Event;
use record_support::synthetic_events;
use std::path::Path;

fn recorded_run(dir: &Path, steps: u64) -> (RunDir, Vec<Event>) {
    let run = RunDir::create(
        Some(dir),
        Path::new("presets/default.toml"),
        &Default::default(),
    )
    .unwrap();
    let events = synthetic_events(steps, 10);
    let mut rec = Recorder::create(&run).unwrap();
    for e in &events {
        rec.record(e).unwrap();
    }
    (run, events)
}

/// Decodes a PNG and returns (width, height, number of distinct colours).
fn png_facts(path: &Path) -> (u32, u32, usize) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    let mut colours: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    colours.sort_unstable();
    colours.dedup();
    (img.width(), img.height(), colours.len())
}

#[test]
fn report_writes_real_pngs_and_a_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, _) = recorded_run(&tmp.path().join("default-20261127-000000"), 240);
    let out = tmp.path().join("report");
    let report = write_report(run.path(), &out).unwrap();
    let names: Vec<String> = report
        .pictures
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "loss.png",
            "clip_heatmap.png",
            "signal_propagation.png",
            "hyperparameters.png"
        ]
    );
    for p in &report.pictures {
        let bytes = std::fs::read(p).unwrap();
        assert_eq!(
            &bytes[..8],
            b"\x89PNG\r\n\x1a\n",
            "{} is a PNG",
            p.display()
        );
        let (w, h, colours) = png_facts(p);
        assert!(w >= 1000 && h >= 400, "{}: {w}x{h}", p.display());
        assert!(
            colours > 20,
            "{} has {colours} colours: nothing drawn?",
            p.display()
        );
    }
    // The heatmap uses the colormap: many distinct colours across 6 layers x 24 snapshots.
    assert!(png_facts(&out.join("clip_heatmap.png")).2 > 50);

    let md = std::fs::read_to_string(&report.summary).unwrap();
    assert!(md.contains("# Run `default-20261127-000000`"), "{md}");
    assert!(md.contains("`nf_resnet_cifar` (12345 parameters)"), "{md}");
    assert!(md.contains("240 of 240"), "{md}");
    assert!(md.contains("| 80 | `agc.lambda` | 0.02 | keys |"), "{md}");
    assert!(
        md.contains("| 160 | `model.alpha` | 0.5 | preset reload |"),
        "{md}"
    );
    assert!(md.contains("1 rejected edits"), "{md}");
    // The validation curve, one row per evaluation (what was recorded, formatted).
    assert!(md.contains("## Validation"), "{md}");
    let last = (240.0f64, 2.0 / (1.0 + 240.0 / 50.0));
    let top1 = 100.0 * (0.1 + 0.8 * (1.0 - (-last.0 / 150.0).exp()));
    let top5 = 100.0 * (0.5 + 0.4 * (1.0 - (-last.0 / 100.0).exp()));
    let row = format!(
        "| 240 | {top1:.2}% | {top5:.2}% | {:.4} | 500 | EMA |",
        last.1
    );
    assert!(md.contains(&row), "{row} missing in {md}");
    assert_eq!(md.matches(" | 500 | ").count(), 240 / 40, "{md}");
    assert!(md.contains("![clip_heatmap.png](clip_heatmap.png)"), "{md}");
}

#[test]
fn report_without_layer_statistics_draws_what_it_can() {
    let tmp = tempfile::tempdir().unwrap();
    let run = RunDir::create(
        Some(&tmp.path().join("r")),
        Path::new("p.toml"),
        &Default::default(),
    )
    .unwrap();
    {
        let mut rec = Recorder::create(&run).unwrap();
        for e in synthetic_events(30, 10)
            .into_iter()
            .filter(|e| !matches!(e, Event::Layers(_) | Event::Eval(_)))
        {
            rec.record(&e).unwrap();
        }
    }
    let report = write_report(run.path(), &tmp.path().join("out")).unwrap();
    assert_eq!(report.pictures.len(), 2, "loss and hyperparameters only");

    // No steps at all: a clear error naming the file.
    let empty = RunDir::create(
        Some(&tmp.path().join("e")),
        Path::new("p.toml"),
        &Default::default(),
    )
    .unwrap();
    drop(Recorder::create(&empty).unwrap());
    let err = write_report(empty.path(), &tmp.path().join("out2"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("metrics.h5") && err.contains("no training steps"),
        "{err}"
    );
    let err = write_report(&tmp.path().join("missing"), &tmp.path().join("out3"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn runs_lists_each_run_with_its_final_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    recorded_run(&tmp.path().join("a-run"), 120);
    let b = RunDir::create(
        Some(&tmp.path().join("b-run")),
        Path::new("p.toml"),
        &Default::default(),
    )
    .unwrap();
    {
        let mut rec = Recorder::create(&b).unwrap();
        for e in synthetic_events(50, 10)
            .into_iter()
            .take_while(|e| !matches!(e, Event::Step(m) if m.step > 30))
        {
            rec.record(&e).unwrap();
        }
    }
    // Stopped by the user (or SIGTERM): the trainer sends State(Stopped) and then Finished.
    let c = RunDir::create(
        Some(&tmp.path().join("c-run")),
        Path::new("p.toml"),
        &Default::default(),
    )
    .unwrap();
    {
        let mut rec = Recorder::create(&c).unwrap();
        for e in synthetic_events(50, 10)
            .into_iter()
            .take_while(|e| !matches!(e, Event::Step(m) if m.step > 20))
        {
            rec.record(&e).unwrap();
        }
        rec.record(&Event::State {
            state: nfbench::train::messages::RunState::Stopped,
            step: 20,
        })
        .unwrap();
        rec.record(&Event::Finished { step: 20 }).unwrap();
    }
    std::fs::create_dir_all(tmp.path().join("not-a-run")).unwrap();
    std::fs::create_dir_all(tmp.path().join("broken")).unwrap();
    std::fs::write(tmp.path().join("broken/metrics.h5"), b"junk").unwrap();

    let runs = list_runs(tmp.path()).unwrap();
    assert_eq!(runs.len(), 4);
    let a = &runs[0];
    assert_eq!(
        (a.model.as_str(), a.step, a.planned, a.state.as_str()),
        ("nf_resnet_cifar", 120, 120, "finished")
    );
    let best = a.best_top1.unwrap();
    assert_eq!(best.1, 120);
    let expected_loss: f64 = (71..=120)
        .map(|s| record_support::step_metrics(s, 0.0, 0.0).loss)
        .sum::<f64>()
        / 50.0;
    assert!((a.final_loss - expected_loss).abs() < 1e-12);
    let b = &runs[1];
    assert_eq!((b.step, b.planned, b.state.as_str()), (30, 50, "running?"));
    assert!(runs[2].error.as_ref().unwrap().contains("broken"));
    let c = &runs[3];
    assert_eq!((c.step, c.planned, c.state.as_str()), (20, 50, "stopped"));

    let table = format_table(&runs);
    assert!(table.starts_with("RUN"), "{table}");
    assert!(
        table.contains("a-run") && table.contains("120/120") && table.contains("finished"),
        "{table}"
    );
    assert!(table.contains("30/50"), "{table}");
    let err = list_runs(&tmp.path().join("nope")).unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn replay_rebuilds_the_event_stream_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, events) = recorded_run(&tmp.path().join("r"), 60);
    let back = read_run(&run.metrics_path()).unwrap();
    let replayed = recorded_events(&back);
    let dbg = |v: &[Event]| v.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>();
    let (a, b) = (dbg(&replayed), dbg(&events));
    if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
        panic!(
            "event {i} differs:\n replayed: {:?}\n recorded: {:?}",
            a.get(i),
            b.get(i)
        );
    }
    let stops = cursor_stops(&replayed);
    assert_eq!(stops.len(), 7, "six snapshots and the end");
    assert!(matches!(replayed[stops[0] - 1], Event::Layers(ref l) if l.step == 10));
}

#[test]
fn replay_leaves_out_events_of_retrained_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, _) = recorded_run(&tmp.path().join("r"), 60);
    // A resume from step 15: the lambda change at 20 (recorded before the crash) was retrained away.
    drop(Recorder::open_for_resume(&run, 15).unwrap());
    let back = read_run(&run.metrics_path()).unwrap();
    let replayed = recorded_events(&back);
    assert!(!replayed.iter().any(|e| matches!(e, Event::Applied { .. })));
    assert!(!replayed
        .iter()
        .any(|e| matches!(e, Event::Step(m) if m.step > 15)));
    assert!(replayed.iter().any(
        |e| matches!(e, Event::Warning(w) if w.contains("resumed from the checkpoint at step 15"))
    ));
}

/// Writes a demo report to $NFBENCH_DEMO_REPORT (for looking at the pictures); does nothing without it.
#[test]
fn demo_report_for_inspection() {
    let Ok(out) = std::env::var("NFBENCH_DEMO_REPORT") else {
        return;
    };
    let out = Path::new(&out);
    let _ = std::fs::remove_dir_all(out);
    let (run, _) = recorded_run(&out.join("run"), 600);
    write_report(run.path(), &out.join("report")).unwrap();
}

#[test]
fn replayed_events_drive_the_workbench() {
    use ratatui::{backend::TestBackend, Terminal};
    let tmp = tempfile::tempdir().unwrap();
    let (run, _) = recorded_run(&tmp.path().join("r"), 60);
    let events = recorded_events(&read_run(&run.metrics_path()).unwrap());
    let preset = run.load_preset().unwrap();
    let mut app = nfbench::tui::App::replay(
        &preset,
        run.path().to_path_buf(),
        nfbench::tui::Theme::from_env(),
    );
    for e in &events {
        app.on_event(e.clone());
    }
    assert!(app.is_replay());
    assert_eq!(app.status().step, 60);
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    terminal.draw(|f| app.render(f)).unwrap();
}
