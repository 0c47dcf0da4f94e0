//! `nfbench report RUN_DIR --out DIR`: PNG pictures of a recorded run (plotters) and a markdown summary.
//!
//! - `loss.png`: training loss (raw and smoothed) and validation loss; training and validation top-1 below.
//! - `clip_heatmap.png`: the share of each layer's AGC units clipped, layers x statistics snapshots.
//! - `signal_propagation.png`: each block's output variance over time, and the latest snapshot against the
//!   variance the alpha/beta bookkeeping predicts.
//! - `hyperparameters.png`: learning rate, lambda and alpha over the run.
//! - `agc_whatif.png`: at the last statistics snapshot, the share of units AGC would clip vs lambda (whole net and
//!   the layer that clips most), from the recorded ratio counts (`whatif.rs`; absent in older records).
//!
//! Every picture marks the steps where lambda or alpha were changed live (dashed lines, labelled).
//! Text needs a TrueType font found through fontconfig (Debian: `fonts-dejavu-core`).

//!
//! One file per picture (`loss.rs`, `heatmap.rs`, `spp.rs`, `hyper.rs`), the chart pieces they share in
//! `charts.rs`, and the markdown summary in `markdown.rs`.

mod charts;
pub mod compare;
mod heatmap;
mod hyper;
mod loss;
mod markdown;
mod spp;
mod spp_compare;
mod sweep;
mod whatif;

pub use markdown::summary_markdown;
pub use spp_compare::{write_spp_comparison, SppSeries};
pub use sweep::{write_sweep_heatmap, HeatmapCell, SweepHeatmap};
pub use whatif::{clip_curves, ClipCurves};

use super::metrics::{read_run, RecordedRun};
use super::run_dir::{RunDir, METRICS_FILE};
use super::{RecordError, Result};
use heatmap::draw_clip_heatmap;
use hyper::draw_hyper;
use loss::draw_loss;
use plotters::prelude::*;
use spp::draw_spp;
use std::path::{Path, PathBuf};

/// What a report wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub pictures: Vec<PathBuf>,
    pub summary: PathBuf,
}

/// A live change drawn on the pictures.
#[derive(Debug, Clone, PartialEq)]
struct Marker {
    step: f64,
    label: String,
    color: RGBColor,
}

const LAMBDA_COLOR: RGBColor = RGBColor(200, 40, 40);
const ALPHA_COLOR: RGBColor = RGBColor(130, 40, 190);
const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const VAL_COLOR: RGBColor = RGBColor(255, 127, 14);
const FONT: &str = "sans-serif";

/// Writes the pictures and `summary.md` for the run in `run_dir` into `out`.
pub fn write_report(run_dir: &Path, out: &Path) -> Result<Report> {
    let run_dir = RunDir::open(run_dir)?;
    let run = read_run(&run_dir.path().join(METRICS_FILE))?;
    if run.steps.is_empty() {
        return Err(RecordError::invalid(
            &run_dir.metrics_path(),
            "no training steps recorded yet: nothing to draw",
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| RecordError::io(out, e))?;
    let markers = markers(&run);
    let mut pictures = Vec::new();
    let path = out.join("loss.png");
    draw_loss(&path, &run, &markers).map_err(|e| plot_err(&path, e))?;
    pictures.push(path);
    let path = out.join("clip_heatmap.png");
    if draw_clip_heatmap(&path, &run.layers, &markers).map_err(|e| plot_err(&path, e))? {
        pictures.push(path);
    }
    let path = out.join("signal_propagation.png");
    if draw_spp(&path, &run.layers, &markers).map_err(|e| plot_err(&path, e))? {
        pictures.push(path);
    }
    let path = out.join("hyperparameters.png");
    draw_hyper(&path, &run, &markers).map_err(|e| plot_err(&path, e))?;
    pictures.push(path);
    let path = out.join("agc_whatif.png");
    let lambda = run.steps.last().map_or(f64::NAN, |s| s.lambda);
    if whatif::draw_whatif(&path, &run.layers, lambda).map_err(|e| plot_err(&path, e))? {
        pictures.push(path);
    }
    let summary = out.join("summary.md");
    let text = summary_markdown(&run_dir, &run, &pictures);
    std::fs::write(&summary, text).map_err(|e| RecordError::io(&summary, e))?;
    Ok(Report { pictures, summary })
}

fn plot_err(path: &Path, e: Box<dyn std::error::Error>) -> RecordError {
    let mut message = e.to_string();
    if message.to_lowercase().contains("font") {
        message.push_str(" (text needs a TrueType font through fontconfig; on Debian: apt-get install fonts-dejavu-core)");
    }
    RecordError::Plot {
        path: path.to_path_buf(),
        message,
    }
}

/// Dashed, labelled lines at the steps where lambda or alpha changed.
fn markers(run: &RecordedRun) -> Vec<Marker> {
    let mut out = Vec::new();
    for (key, sym, color) in [
        ("agc.lambda", "λ", LAMBDA_COLOR),
        ("model.alpha", "α", ALPHA_COLOR),
    ] {
        for (step, value) in run.changes_of(key) {
            out.push(Marker {
                step: step as f64,
                label: format!("{sym}={value}"),
                color,
            });
        }
    }
    out.sort_by(|a, b| a.step.total_cmp(&b.step));
    out
}
