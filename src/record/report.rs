//! `nfbench report RUN_DIR --out DIR`: PNG pictures of a recorded run (plotters) and a markdown summary.
//!
//! - `loss.png`: training loss (raw and smoothed) and validation loss; training and validation top-1 below.
//! - `clip_heatmap.png`: the share of each layer's AGC units clipped, layers x statistics snapshots.
//! - `signal_propagation.png`: each block's output variance over time, and the latest snapshot against the
//!   variance the alpha/beta bookkeeping predicts.
//! - `hyperparameters.png`: learning rate, lambda and alpha over the run.
//!
//! Every picture marks the steps where lambda or alpha were changed live (dashed lines, labelled).
//! Text needs a TrueType font found through fontconfig (Debian: `fonts-dejavu-core`).

use super::metrics::{read_run, RecordedRun};
use super::run_dir::{RunDir, METRICS_FILE};
use super::{RecordError, Result};
use crate::train::messages::LayerStats;
use plotters::coord::Shift;
use plotters::prelude::*;
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

type DrawResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

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

/// Finite min and max of `values`, padded so a flat series still gets a range.
fn range_of(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return None;
    }
    let pad = ((hi - lo) * 0.05).max(hi.abs() * 1e-3).max(1e-9);
    Some((lo - pad, hi + pad))
}

/// Moving average over `window` points (the centred part of a trailing window), skipping non-finite values.
fn smooth(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len());
    let mut sum = 0.0;
    let mut n = 0usize;
    let mut queue = std::collections::VecDeque::new();
    for &(x, y) in points {
        if !y.is_finite() {
            continue;
        }
        queue.push_back(y);
        sum += y;
        n += 1;
        if queue.len() > window {
            sum -= queue.pop_front().unwrap_or(0.0);
            n -= 1;
        }
        out.push((x, sum / n as f64));
    }
    out
}

fn x_range(run: &RecordedRun) -> (f64, f64) {
    let first = run.steps.first().map(|s| s.step as f64).unwrap_or(0.0);
    let last = run.steps.last().map(|s| s.step as f64).unwrap_or(1.0);
    (first.min(last - 1.0), last.max(first + 1.0))
}

/// The validation points of a loss or accuracy chart: a line through them, a dot on each, a legend entry.
fn draw_validation<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    points: &[(f64, f64)],
    label: &str,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    if points.is_empty() {
        return Ok(());
    }
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            VAL_COLOR.stroke_width(2),
        ))?
        .label(label)
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], VAL_COLOR.stroke_width(2)));
    chart.draw_series(
        points
            .iter()
            .map(|&p| Circle::new(p, 3, VAL_COLOR.filled())),
    )?;
    Ok(())
}

fn draw_markers<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    markers: &[Marker],
    (y0, y1): (f64, f64),
    labels: bool,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    for (i, m) in markers.iter().enumerate() {
        chart.draw_series(DashedLineSeries::new(
            vec![(m.step, y0), (m.step, y1)],
            6,
            4,
            m.color.stroke_width(2),
        ))?;
        if labels {
            // Stagger labels so close changes stay readable.
            let y = y1 - (y1 - y0) * (0.04 + 0.07 * (i % 3) as f64);
            chart.draw_series(std::iter::once(Text::new(
                format!(" {}", m.label),
                (m.step, y),
                (FONT, 15).into_font().color(&m.color),
            )))?;
        }
    }
    Ok(())
}

fn draw_loss(path: &Path, run: &RecordedRun, markers: &[Marker]) -> DrawResult<()> {
    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!("{}: loss and accuracy", run_title(run)),
        (FONT, 24),
    )?;
    let (top, bottom) = root.split_vertically(420);
    let (x0, x1) = x_range(run);
    let raw: Vec<(f64, f64)> = run.steps.iter().map(|s| (s.step as f64, s.loss)).collect();
    let window = (run.steps.len() / 50).clamp(1, 200);
    let smoothed = smooth(&raw, window);
    let val: Vec<(f64, f64)> = run.evals.iter().map(|e| (e.step as f64, e.loss)).collect();
    let (y0, y1) = range_of(raw.iter().chain(&val).map(|p| p.1)).unwrap_or((0.0, 1.0));
    let mut chart = ChartBuilder::on(&top)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .y_desc("loss")
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    chart.draw_series(LineSeries::new(
        raw.iter().copied().filter(|p| p.1.is_finite()),
        TRAIN_COLOR.mix(0.25),
    ))?;
    chart
        .draw_series(LineSeries::new(smoothed, TRAIN_COLOR.stroke_width(2)))?
        .label(format!("train (mean of {window})"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], TRAIN_COLOR.stroke_width(2)));
    draw_validation(&mut chart, &val, "validation")?;
    draw_markers(&mut chart, markers, (y0, y1), true)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;

    let train_acc: Vec<(f64, f64)> = run
        .steps
        .iter()
        .map(|s| (s.step as f64, 100.0 * s.train_top1))
        .collect();
    let train_acc = smooth(&train_acc, window);
    let val_acc: Vec<(f64, f64)> = run
        .evals
        .iter()
        .map(|e| (e.step as f64, 100.0 * e.top1))
        .collect();
    let mut chart = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, 0f64..100f64)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .x_label_formatter(&step_label)
        .y_desc("top-1 (%)")
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    chart
        .draw_series(LineSeries::new(train_acc, TRAIN_COLOR.stroke_width(2)))?
        .label("train top-1 (smoothed)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], TRAIN_COLOR.stroke_width(2)));
    draw_validation(&mut chart, &val_acc, "validation top-1")?;
    draw_markers(&mut chart, markers, (0.0, 100.0), false)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Viridis (matplotlib's default colormap), sampled at 8 stops and interpolated; `t` in [0, 1].
fn viridis(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 8] = [
        (68, 1, 84),
        (70, 50, 127),
        (54, 92, 141),
        (39, 127, 143),
        (31, 162, 136),
        (74, 194, 110),
        (160, 219, 57),
        (254, 232, 37),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let lerp = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

/// Left edges of each snapshot's column and the right edge of the last one.
fn snapshot_edges(steps: &[f64]) -> Vec<f64> {
    let mut edges = steps.to_vec();
    let last_width = if steps.len() >= 2 {
        steps[steps.len() - 1] - steps[steps.len() - 2]
    } else {
        1.0
    };
    edges.push(steps.last().copied().unwrap_or(0.0) + last_width.max(1.0));
    edges
}

/// Returns false (and draws nothing) when the run has no AGC statistics.
fn draw_clip_heatmap(path: &Path, layers: &[LayerStats], markers: &[Marker]) -> DrawResult<bool> {
    let snaps: Vec<&LayerStats> = layers.iter().filter(|l| !l.agc.is_empty()).collect();
    let Some(first) = snaps.first() else {
        return Ok(false);
    };
    // Layers AGC applies to, in network order (excluded ones are never clipped).
    let rows: Vec<usize> = (0..first.agc.len())
        .filter(|&i| first.agc[i].clipped_by_agc)
        .collect();
    let rows = if rows.is_empty() {
        (0..first.agc.len()).collect()
    } else {
        rows
    };
    let names: Vec<String> = rows.iter().map(|&i| first.agc[i].name.clone()).collect();
    let n = rows.len();
    let height = (160 + 14 * n as u32).clamp(420, 3000);
    let root = BitMapBackend::new(path, (1300, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "AGC: share of each layer's units clipped, per statistics snapshot",
        (FONT, 24),
    )?;
    let (plot, bar) = root.split_horizontally(1180);
    let steps: Vec<f64> = snaps.iter().map(|s| s.step as f64).collect();
    let edges = snapshot_edges(&steps);
    let (x0, x1) = (edges[0], edges[edges.len() - 1]);
    let max_clip = snaps
        .iter()
        .flat_map(|s| {
            rows.iter()
                .filter_map(|&i| s.agc.get(i).map(|a| a.clipped_fraction))
        })
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-6);
    // Row r spans r - 0.5 .. r + 0.5, so the integer label positions are row centres.
    let mut chart = ChartBuilder::on(&plot)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(170)
        .build_cartesian_2d(x0..x1, (n as f64 - 0.5)..-0.5f64)?;
    let names_for_axis = names.clone();
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("step")
        .x_label_formatter(&step_label)
        .y_labels(n.min(60))
        .y_label_formatter(&move |y| {
            let i = y.round();
            if (y - i).abs() < 1e-9 && i >= 0.0 && (i as usize) < names_for_axis.len() {
                names_for_axis[i as usize].clone()
            } else {
                String::new()
            }
        })
        .y_label_style((FONT, 11))
        .draw()?;
    for (c, snap) in snaps.iter().enumerate() {
        let (a, b) = (edges[c], edges[c + 1]);
        chart.draw_series(rows.iter().enumerate().map(|(r, &i)| {
            let v = snap
                .agc
                .get(i)
                .map(|s| s.clipped_fraction)
                .unwrap_or(f64::NAN);
            let color = if v.is_finite() {
                viridis(v / max_clip)
            } else {
                RGBColor(220, 220, 220)
            };
            Rectangle::new([(a, r as f64 - 0.5), (b, r as f64 + 0.5)], color.filled())
        }))?;
    }
    // White on the dark colormap; the labels say which parameter changed.
    let light: Vec<Marker> = markers
        .iter()
        .map(|m| Marker {
            color: WHITE,
            ..m.clone()
        })
        .collect();
    draw_markers(&mut chart, &light, (n as f64 - 0.5, -0.5), true)?;
    draw_colorbar(&bar, max_clip)?;
    root.present()?;
    Ok(true)
}

fn draw_colorbar<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, max: f64) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(area)
        .margin_top(20)
        .margin_bottom(45)
        .margin_right(10)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..1f64, 0f64..(100.0 * max))?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc("% of units clipped")
        .y_label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()?;
    let steps = 100;
    chart.draw_series((0..steps).map(|i| {
        let (a, b) = (i as f64 / steps as f64, (i + 1) as f64 / steps as f64);
        Rectangle::new(
            [(0.0, 100.0 * max * a), (1.0, 100.0 * max * b)],
            viridis(a).filled(),
        )
    }))?;
    Ok(())
}

/// Returns false when the run has no signal-propagation statistics.
fn draw_spp(path: &Path, layers: &[LayerStats], markers: &[Marker]) -> DrawResult<bool> {
    let snaps: Vec<&LayerStats> = layers.iter().filter(|l| !l.spp.is_empty()).collect();
    let Some(last) = snaps.last() else {
        return Ok(false);
    };
    let blocks = last.spp.len();
    let root = BitMapBackend::new(path, (1400, 650)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled("Signal propagation per residual block", (FONT, 24))?;
    let (left, right) = root.split_horizontally(780);

    // Left: each block's output variance over time, coloured by depth.
    let steps: Vec<f64> = snaps.iter().map(|s| s.step as f64).collect();
    let (x0, x1) = (steps[0], steps[steps.len() - 1].max(steps[0] + 1.0));
    let all = snaps.iter().flat_map(|s| s.spp.iter().map(|b| b.avg_var));
    let (y0, y1) = range_of(all).unwrap_or((0.0, 1.0));
    let (y0, y1) = (y0.min(0.0), y1);
    let mut chart = ChartBuilder::on(&left)
        .caption(
            "avg_var of each block's output over time (dark: shallow, light: deep)",
            (FONT, 16),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("avg_var")
        .draw()?;
    for b in 0..blocks {
        let color = viridis(b as f64 / (blocks.max(2) - 1) as f64);
        let series = snaps
            .iter()
            .filter_map(|s| s.spp.get(b).map(|x| (s.step as f64, x.avg_var)))
            .filter(|p| p.1.is_finite());
        let drawn = chart.draw_series(LineSeries::new(series, color.stroke_width(2)))?;
        if b == 0 || b + 1 == blocks {
            drawn.label(last.spp[b].name.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
    }
    draw_markers(&mut chart, markers, (y0, y1), true)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;

    // Right: the latest snapshot against the prediction, block by block.
    let series: [(&str, RGBColor, Vec<f64>); 3] = [
        (
            "predicted var (alpha/beta bookkeeping)",
            BLACK,
            last.spp.iter().map(|b| b.predicted_var).collect(),
        ),
        (
            "avg_var",
            TRAIN_COLOR,
            last.spp.iter().map(|b| b.avg_var).collect(),
        ),
        (
            "res_avg_var (residual branch)",
            VAL_COLOR,
            last.spp.iter().map(|b| b.res_avg_var).collect(),
        ),
    ];
    let (y0, y1) = range_of(series.iter().flat_map(|s| s.2.iter().copied())).unwrap_or((0.0, 1.0));
    let (y0, y1) = (y0.min(0.0), y1);
    let names: Vec<String> = last.spp.iter().map(|b| b.name.clone()).collect();
    let label_every = blocks.div_ceil(16).max(1);
    let mut chart = ChartBuilder::on(&right)
        .caption(
            format!("at step {} (latest snapshot)", last.step),
            (FONT, 16),
        )
        .margin(10)
        .x_label_area_size(60)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..(blocks as f64 - 0.5), y0..y1)?;
    chart
        .configure_mesh()
        .x_labels(blocks.min(40))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6
                && i >= 0.0
                && (i as usize) < names.len()
                && (i as usize).is_multiple_of(label_every)
            {
                names[i as usize].clone()
            } else {
                String::new()
            }
        })
        .x_label_style((FONT, 11))
        .x_desc("block")
        .y_desc("variance")
        .draw()?;
    for (label, color, values) in series {
        let pts: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as f64, v))
            .filter(|p| p.1.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(true)
}

/// A named, coloured line.
type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

fn draw_hyper(path: &Path, run: &RecordedRun, markers: &[Marker]) -> DrawResult<()> {
    let root = BitMapBackend::new(path, (1200, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled("Hyperparameters over the run", (FONT, 24))?;
    let panels = root.split_evenly((3, 1));
    let (x0, x1) = x_range(run);
    let series: [Series; 3] = [
        (
            "learning rate",
            TRAIN_COLOR,
            run.steps.iter().map(|s| (s.step as f64, s.lr)).collect(),
        ),
        (
            "AGC lambda",
            LAMBDA_COLOR,
            run.steps
                .iter()
                .map(|s| (s.step as f64, s.lambda))
                .collect(),
        ),
        (
            "alpha",
            ALPHA_COLOR,
            run.steps.iter().map(|s| (s.step as f64, s.alpha)).collect(),
        ),
    ];
    for (i, (panel, (name, color, pts))) in panels.iter().zip(series).enumerate() {
        let (y0, y1) = range_of(pts.iter().map(|p| p.1)).unwrap_or((0.0, 1.0));
        let (y0, y1) = (y0.min(0.0), y1.max(y0 + 1e-9));
        let mut chart = ChartBuilder::on(panel)
            .margin(8)
            .x_label_area_size(if i == 2 { 35 } else { 20 })
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        let mut mesh = chart.configure_mesh();
        mesh.y_desc(name)
            .y_labels(4)
            .light_line_style(WHITE.mix(0.0));
        if i == 2 {
            mesh.x_desc("step");
        }
        mesh.draw()?;
        chart.draw_series(LineSeries::new(
            pts.into_iter().filter(|p| p.1.is_finite()),
            color.stroke_width(2),
        ))?;
        draw_markers(&mut chart, markers, (y0, y1), i == 0)?;
    }
    root.present()?;
    Ok(())
}

/// Steps are whole numbers.
fn step_label(x: &f64) -> String {
    format!("{x:.0}")
}

fn run_title(run: &RecordedRun) -> String {
    match run.started() {
        Some(s) => format!("{} on {}", s.model, s.device),
        None => "run".into(),
    }
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.2}%", 100.0 * v)
    } else {
        "-".into()
    }
}

/// The markdown summary: the run at a glance, its live changes and incidents, and the pictures.
pub fn summary_markdown(run_dir: &RunDir, run: &RecordedRun, pictures: &[PathBuf]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "# Run `{}`\n", run_dir.name());
    let started = run.started();
    let mut facts: Vec<(String, String)> = Vec::new();
    if let Some(info) = &started {
        facts.push((
            "model".into(),
            format!("`{}` ({} parameters)", info.model, info.params),
        ));
        facts.push(("device".into(), info.device.clone()));
    }
    let last = run.last_step().unwrap_or(0);
    let planned = started.as_ref().map(|i| i.steps).unwrap_or(0);
    facts.push(("steps recorded".into(), format!("{last} of {planned}")));
    let tail: Vec<f64> = run
        .steps
        .iter()
        .rev()
        .take(50)
        .map(|s| s.loss)
        .filter(|l| l.is_finite())
        .collect();
    if !tail.is_empty() {
        facts.push((
            "final training loss".into(),
            format!(
                "{:.4} (mean of the last {} steps)",
                tail.iter().sum::<f64>() / tail.len() as f64,
                tail.len()
            ),
        ));
    }
    if let Some(e) = run.evals.last() {
        facts.push((
            "final validation".into(),
            format!(
                "top-1 {}, top-5 {}, loss {:.4} at step {}",
                pct(e.top1),
                pct(e.top5),
                e.loss,
                e.step
            ),
        ));
    }
    if let Some(e) = run.best_eval() {
        facts.push((
            "best validation top-1".into(),
            format!("{} at step {}", pct(e.top1), e.step),
        ));
    }
    let ips: Vec<f64> = run
        .steps
        .iter()
        .map(|s| s.images_per_sec)
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    if !ips.is_empty() {
        facts.push((
            "throughput".into(),
            format!(
                "{:.1} images/s (mean over steps)",
                ips.iter().sum::<f64>() / ips.len() as f64
            ),
        ));
    }
    if let (Some(a), Some(b)) = (run.step_times.first(), run.step_times.last()) {
        facts.push(("wall time recorded".into(), format!("{:.1} s", b - a)));
    }
    let clip: Vec<f64> = run
        .steps
        .iter()
        .map(|s| s.clipped_fraction)
        .filter(|v| v.is_finite())
        .collect();
    if !clip.is_empty() {
        facts.push((
            "AGC units clipped".into(),
            format!(
                "{} on average, {} at the end",
                pct(clip.iter().sum::<f64>() / clip.len() as f64),
                pct(clip[clip.len() - 1])
            ),
        ));
    }
    let _ = writeln!(s, "| | |\n| --- | --- |");
    for (k, v) in facts {
        let _ = writeln!(s, "| {k} | {v} |");
    }

    if !run.evals.is_empty() {
        let _ = writeln!(s, "\n## Validation\n");
        let _ = writeln!(
            s,
            "| step | top-1 | top-5 | loss | images | weights |\n| --- | --- | --- | --- | --- | --- |"
        );
        for e in &run.evals {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.4} | {} | {} |",
                e.step,
                pct(e.top1),
                pct(e.top5),
                e.loss,
                e.images,
                if e.ema { "EMA" } else { "live" }
            );
        }
    }

    let applied: Vec<_> = run.events.iter().filter(|e| e.kind == "applied").collect();
    let _ = writeln!(s, "\n## Live changes\n");
    if applied.is_empty() {
        let _ = writeln!(s, "None.");
    } else {
        let _ = writeln!(
            s,
            "| step | parameter | value | from |\n| --- | --- | --- | --- |"
        );
        for e in applied {
            let _ = writeln!(
                s,
                "| {} | `{}` | {} | {} |",
                e.step, e.key, e.value, e.detail
            );
        }
    }
    let count = |kind: &str| run.events.iter().filter(|e| e.kind == kind).count();
    let _ = writeln!(
        s,
        "\n## Incidents\n\n{} rejected edits, {} non-finite steps, {} warnings, {} errors, {} checkpoints, {} resumes.",
        count("rejected"),
        count("nonfinite"),
        count("warning"),
        count("error"),
        count("checkpoint"),
        count("resumed")
    );
    for e in run
        .events
        .iter()
        .filter(|e| matches!(e.kind.as_str(), "rejected" | "warning" | "error"))
        .take(20)
    {
        let what = if e.key.is_empty() {
            String::new()
        } else {
            format!("`{}`: ", e.key)
        };
        let _ = writeln!(
            s,
            "- step {} {}: {what}{}",
            e.step,
            e.kind,
            e.detail.replace('\n', " ")
        );
    }
    let _ = writeln!(s, "\n## Pictures\n");
    for p in pictures {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = writeln!(s, "![{name}]({name})\n");
    }
    s
}
