//! `loss.png`: training and validation loss above, top-1 below, with the live-change markers.

use super::charts::{
    draw_legend, draw_markers, draw_validation, range_of, run_title, smooth, step_label, x_range,
    DrawResult,
};
use super::{Marker, FONT, TRAIN_COLOR};
use crate::record::metrics::RecordedRun;
use plotters::prelude::*;
use std::path::Path;

pub(super) fn draw_loss(path: &Path, run: &RecordedRun, markers: &[Marker]) -> DrawResult<()> {
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
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;

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
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present()?;
    Ok(())
}
