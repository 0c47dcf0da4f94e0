//! The AGC what-if (issue 19): the ratio histogram reduced with the statistics, the clipped share it previews at a
//! lambda against what clipping at that lambda measures on the same gradients, its metrics.h5 round trip, and the
//! layers pane drawing it while lambda is edited.

mod record_support;
mod tui_common;

use candle_core::{DType, Device, Tensor};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use nfbench::optim::agc::{self, AgcStatsRow, ClipShare, RATIO_EDGES};
use nfbench::preset::Preset;
use nfbench::record::metrics::{read_run, Recorder};
use nfbench::record::report::{clip_curves, write_report};
use nfbench::record::runs::list_runs;
use nfbench::record::RunDir;
use nfbench::train::messages::{AgcLayerStats, Event, LayerStats, RunState};
use nfbench::tui::{Action, App, Overlay, Theme};
use tui_common::{render, started, text};

const EPS: f64 = 1e-3;

/// A parameter and a gradient whose unit ratios spread over the whole edge range: unit u's gradient is scaled by
/// 10^(-6 + 8u/units), so ratios run from below the first edge to above the last.
fn param_and_grad(dims: &[usize], seed: u64) -> (Tensor, Tensor) {
    let dev = Device::Cpu;
    let w = Tensor::from_vec(pseudo(dims, seed), dims, &dev).expect("w");
    let g = Tensor::from_vec(pseudo(dims, seed + 1000), dims, &dev).expect("g");
    let units = agc::unit_count(dims);
    let scales: Vec<f32> = (0..units)
        .map(|u| 10f32.powf(-6.0 + 8.0 * u as f32 / units as f32))
        .collect();
    let mut shape = vec![1usize; dims.len().max(1)];
    shape[0] = units;
    let scales = Tensor::from_vec(scales, shape, &dev).expect("scales");
    let g = if dims.len() >= 2 {
        g.broadcast_mul(&scales).expect("scale")
    } else {
        g.broadcast_mul(&scales.reshape(()).expect("scalar"))
            .expect("scale")
    };
    (w, g)
}

/// Deterministic values in (-1, 1) (a hash of the index), so that the test needs no RNG.
fn pseudo(dims: &[usize], seed: u64) -> Vec<f32> {
    let n: usize = dims.iter().product();
    (0..n)
        .map(|i| {
            let x = ((i as f64 * 12.9898 + seed as f64 * 78.233).sin() * 43758.5453).fract();
            x as f32
        })
        .collect()
}

fn host(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .expect("host")
}

/// One parameter's statistics row at `lambda`, decoded.
fn row_at(w: &Tensor, g: &Tensor, lambda: f64) -> AgcStatsRow {
    let (_, row) = agc::clip_with_stats(w, g, lambda, EPS, true).expect("clip");
    AgcStatsRow::from_row(&host(&row.expect("row")))
}

/// The per-unit ratios ||G_u|| / max(||W_u||, eps), computed on the host in f64.
fn host_ratios(w: &Tensor, g: &Tensor) -> Vec<f64> {
    let units = agc::unit_count(w.dims());
    let (wv, gv) = (host(w), host(g));
    let per = wv.len() / units;
    (0..units)
        .map(|u| {
            let norm = |v: &[f32]| {
                v[u * per..(u + 1) * per]
                    .iter()
                    .map(|&x| (x as f64).powi(2))
                    .sum::<f64>()
                    .sqrt()
            };
            norm(&gv) / norm(&wv).max(EPS)
        })
        .collect()
}

fn layer(name: &str, w: &Tensor, g: &Tensor, lambda: f64) -> AgcLayerStats {
    let r = row_at(w, g, lambda);
    AgcLayerStats {
        name: name.into(),
        weight_norm: r.weight_norm,
        grad_norm: r.grad_norm,
        max_ratio: r.max_ratio,
        mean_ratio: r.mean_ratio,
        clipped_fraction: r.clipped_fraction,
        units: agc::unit_count(w.dims()),
        clipped_by_agc: true,
        frozen: false,
        ratio_counts: r.ratio_counts,
    }
}

const SHAPES: [&[usize]; 3] = [&[24, 3, 3, 3], &[40, 17], &[16, 8, 1, 1]];

fn snapshot(lambda: f64) -> (Vec<(Tensor, Tensor)>, LayerStats) {
    let params: Vec<(Tensor, Tensor)> = SHAPES
        .iter()
        .enumerate()
        .map(|(i, d)| param_and_grad(d, 7 + i as u64))
        .collect();
    let agc = params
        .iter()
        .enumerate()
        .map(|(i, (w, g))| layer(&format!("l{i}.w"), w, g, lambda))
        .collect();
    let stats = LayerStats {
        step: 50,
        agc,
        spp: Vec::new(),
        total_clipped_fraction: f64::NAN,
    };
    (params, stats)
}

#[test]
fn histogram_counts_sum_to_the_units_and_match_host_ratios() {
    for dims in SHAPES {
        let (w, g) = param_and_grad(dims, 3);
        let units = agc::unit_count(dims);
        let r = row_at(&w, &g, 0.01);
        assert_eq!(r.ratio_counts.len(), RATIO_EDGES.len(), "{dims:?}");
        let bins = agc::ratio_bins(&r.ratio_counts, units as f64);
        assert_eq!(bins.len(), RATIO_EDGES.len() + 1);
        assert_eq!(bins.iter().sum::<f64>(), units as f64, "{dims:?}");
        assert!(bins.iter().all(|&b| b >= 0.0), "{dims:?}: {bins:?}");
        // The spread reaches both the under- and the overflow bin.
        assert!(bins[0] > 0.0 && bins[RATIO_EDGES.len()] > 0.0, "{bins:?}");
        let ratios = host_ratios(&w, &g);
        for (k, &e) in RATIO_EDGES.iter().enumerate() {
            let want = ratios.iter().filter(|&&x| x > e).count() as f64;
            assert_eq!(r.ratio_counts[k], want, "{dims:?} edge {e}");
        }
    }
}

/// What clipping at `lambda` measures on the snapshot's gradients: per layer, and over all units (its clipped
/// fraction is an f32 mean, hence the 1e-6 tolerance below).
fn measured(params: &[(Tensor, Tensor)], lambda: f64) -> (Vec<f64>, f64) {
    let mut clipped = 0.0;
    let mut units = 0.0;
    let per_layer = params
        .iter()
        .map(|(w, g)| {
            let f = row_at(w, g, lambda).clipped_fraction;
            let n = agc::unit_count(w.dims()) as f64;
            clipped += f * n;
            units += n;
            f
        })
        .collect();
    (per_layer, clipped / units)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn previewed_share_equals_the_share_clipping_measures_at_that_lambda() {
    let (params, stats) = snapshot(0.01);
    let mut nontrivial = 0;
    for &lambda in &RATIO_EDGES {
        let (per_layer, net) = measured(&params, lambda);
        for (l, want) in stats.agc.iter().zip(&per_layer) {
            match l.clipped_share_at(lambda) {
                Some(ClipShare::Exact(s)) => assert!(close(s, *want), "{} at {lambda}", l.name),
                other => panic!("{} at edge {lambda}: {other:?}", l.name),
            }
        }
        match stats.net_clipped_share_at(lambda) {
            Some(ClipShare::Exact(s)) => assert!(close(s, net), "net at {lambda}: {s} vs {net}"),
            other => panic!("net at edge {lambda}: {other:?}"),
        }
        if net > 0.0 && net < 1.0 {
            nontrivial += 1;
        }
    }
    assert!(
        nontrivial > 20,
        "only {nontrivial} edges clip part of the net"
    );
    // Between two edges: the measured share lies in the bracket the neighbouring edges give.
    for pair in RATIO_EDGES.windows(2) {
        let lambda = (pair[0] * pair[1]).sqrt();
        let (per_layer, net) = measured(&params, lambda);
        let inside = |s: Option<ClipShare>, want: f64| match s {
            Some(ClipShare::Between { low, high }) => low - 1e-6 <= want && want <= high + 1e-6,
            _ => false,
        };
        for (l, want) in stats.agc.iter().zip(&per_layer) {
            assert!(
                inside(l.clipped_share_at(lambda), *want),
                "{} at {lambda}",
                l.name
            );
        }
        assert!(
            inside(stats.net_clipped_share_at(lambda), net),
            "net at {lambda}"
        );
    }
}

#[test]
fn ratio_counts_round_trip_through_metrics_h5_and_old_files_read_without_them() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("metrics.h5");
    let (_, mut stats) = snapshot(0.01);
    stats.agc[1].frozen = true;
    stats.agc[1].ratio_counts.clear();
    {
        let mut rec = Recorder::create_at(&path, "").expect("create");
        rec.record(&Event::Layers(Box::new(stats.clone())))
            .expect("record");
        let mut later = stats.clone();
        later.step = 100;
        later.agc[0].ratio_counts[3] -= 1.0;
        rec.record(&Event::Layers(Box::new(later))).expect("record");
        rec.flush().expect("flush");
    }
    let run = read_run(&path).expect("read");
    assert_eq!(run.layers.len(), 2);
    let back = &run.layers[0].agc;
    assert_eq!(back[0].ratio_counts, stats.agc[0].ratio_counts);
    assert_eq!(back[2].ratio_counts, stats.agc[2].ratio_counts);
    assert!(back[1].ratio_counts.is_empty(), "a frozen layer has none");
    assert_eq!(
        run.layers[1].agc[0].ratio_counts[3],
        stats.agc[0].ratio_counts[3] - 1.0
    );
    // A file from before the what-if: the same without the dataset reads with empty counts.
    {
        let file = hdf5::File::open_rw(&path).expect("open");
        file.unlink("layers/agc/ratio_counts").expect("unlink");
    }
    let old = read_run(&path).expect("read old");
    assert_eq!(old.layers.len(), 2);
    assert!(old.layers[0].agc.iter().all(|a| a.ratio_counts.is_empty()));
    assert_eq!(old.layers[0].agc[0].units, stats.agc[0].units);
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

#[test]
fn layers_pane_draws_the_histogram_and_previews_the_edited_lambda() {
    let mut app = App::new(
        &Preset::default(),
        "presets/default.toml".into(),
        Theme::plain(),
    );
    app.on_event(started(100));
    app.on_event(Event::State {
        state: RunState::Running,
        step: 0,
    });
    let (_, stats) = snapshot(0.01);
    app.on_event(Event::Layers(Box::new(stats.clone())));
    let before = text(&render(&mut app, 200, 60));
    assert!(before.contains("l0.w: units by"), "{before}");
    assert!(before.contains("1e-2"), "{before}");
    assert!(!before.contains("would clip"), "{before}");
    // Edit agc.lambda (the first row) to 0.1: typed, not applied.
    app.hyper_mut().select_key("agc.lambda");
    app.on_key(key(KeyCode::Char('e')));
    for _ in 0.."0.01".len() {
        app.on_key(key(KeyCode::Backspace));
    }
    for c in "0.1".chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
    assert_eq!(app.lambda_preview(), Some(0.1));
    let screen = text(&render(&mut app, 200, 60));
    let want = |s: Option<ClipShare>| s.expect("share").percent();
    let layer = want(stats.agc[0].clipped_share_at(0.1));
    let net = want(stats.net_clipped_share_at(0.1));
    let line = format!("would clip: layer {layer} · net {net}");
    assert_eq!(
        screen.matches(&line).count(),
        2,
        "in the layers pane and on the lambda row: {line}\n{screen}"
    );
    assert!(screen.contains('┊') && screen.contains('│'), "{screen}");
    // ↑ steps the typed value (still unapplied); between edges the share is a range.
    app.on_key(key(KeyCode::Up));
    assert_eq!(app.lambda_preview(), Some(0.2));
    app.hyper_mut().editing = Some("0.012".into());
    let screen = text(&render(&mut app, 200, 60));
    let range = want(stats.net_clipped_share_at(0.012));
    assert!(range.contains('-'), "{range}");
    assert!(screen.contains(&format!("net {range}")), "{screen}");
    // esc drops the preview.
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.lambda_preview(), None);
    assert!(!text(&render(&mut app, 200, 60)).contains("would clip"));
}

#[test]
fn the_report_draws_the_clipped_share_curve_of_the_last_snapshot_from_the_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let run = RunDir::create(
        Some(&tmp.path().join("default-20261202-000000")),
        std::path::Path::new("presets/default.toml"),
        &Default::default(),
    )
    .expect("run dir");
    let mut rec = Recorder::create(&run).expect("recorder");
    for e in record_support::synthetic_events(40, 10) {
        rec.record(&e).expect("record");
    }
    // A last snapshot with counts: layer i has (units - k*i) units above edge k, at least none.
    let mut last = record_support::layer_stats(40, 0.01);
    for (i, a) in last.agc.iter_mut().enumerate() {
        let units = a.units as f64;
        a.ratio_counts = (0..RATIO_EDGES.len())
            .map(|k| (units - (k * (i + 1)) as f64).max(0.0))
            .collect();
    }
    rec.record(&Event::Layers(Box::new(last.clone())))
        .expect("record");
    rec.flush().expect("flush");
    drop(rec);
    let recorded = read_run(&run.metrics_path()).expect("read");
    let curves = clip_curves(&recorded.layers).expect("curves");
    assert_eq!(curves.step, 40);
    for &(lambda, share) in &curves.net {
        assert_eq!(
            last.net_clipped_share_at(lambda),
            Some(ClipShare::Exact(share)),
            "net at {lambda}"
        );
    }
    let most = last
        .agc
        .iter()
        .filter(|a| a.clipped_by_agc)
        .max_by(|a, b| a.clipped_fraction.total_cmp(&b.clipped_fraction))
        .expect("a clipped layer");
    let (name, pts) = curves.layer.as_ref().expect("layer curve");
    assert_eq!(name, &most.name);
    assert_eq!(pts[5].1, most.ratio_counts[5] / most.units as f64);
    let report = write_report(run.path(), &tmp.path().join("report")).expect("report");
    let png = report
        .pictures
        .iter()
        .find(|p| p.ends_with("agc_whatif.png"))
        .expect("agc_whatif.png drawn");
    let img = image::open(png).expect("png").to_rgb8();
    assert_eq!((img.width(), img.height()), (1100, 650));
}

#[test]
fn r_lists_the_finished_runs_and_enter_makes_the_chosen_one_the_reference() {
    let tmp = tempfile::tempdir().expect("tmp");
    let runs = tmp.path().join("runs");
    let record = |name: &str, steps: u64| {
        let run = RunDir::create(
            Some(&runs.join(name)),
            std::path::Path::new("presets/default.toml"),
            &Default::default(),
        )
        .expect("run dir");
        let mut rec = Recorder::create(&run).expect("recorder");
        for e in record_support::synthetic_events(steps, 10) {
            rec.record(&e).expect("record");
        }
        run.path().to_path_buf()
    };
    let a = record("a-20261201-000000", 30);
    let b = record("b-20261201-000000", 40);
    let mut app = App::new(
        &Preset::default(),
        "presets/default.toml".into(),
        Theme::plain(),
    );
    let mut start = started(100);
    if let Event::Started(s) = &mut start {
        s.run_dir = Some(runs.join("current-20261202-000000"));
    }
    app.on_event(start);
    assert_eq!(
        app.on_key(key(KeyCode::Char('r'))),
        [Action::ListRuns(runs.clone())]
    );
    // What the loop does with it: nfbench runs' own listing.
    app.show_runs(&runs, list_runs(&runs).map_err(|e| e.to_string()));
    assert_eq!(app.overlay(), Overlay::Runs);
    assert_eq!(app.picker().runs().len(), 2);
    let screen = text(&render(&mut app, 140, 40));
    assert!(screen.contains("Compare with a finished run"), "{screen}");
    assert!(screen.contains("a-20261201-000000") && screen.contains("b-20261201-000000"));
    app.on_key(key(KeyCode::Down));
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        [Action::LoadReference(b.clone())]
    );
    assert_eq!(app.overlay(), Overlay::None);
    // esc closes without choosing.
    app.show_runs(&runs, list_runs(&runs).map_err(|e| e.to_string()));
    assert!(app.on_key(key(KeyCode::Esc)).is_empty());
    assert_eq!(app.overlay(), Overlay::None);
    let _ = a;
}
