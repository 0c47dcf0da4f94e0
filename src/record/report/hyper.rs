//! `hyperparameters.png`: learning rate, lambda and alpha over the run.

use super::charts::{draw_markers, range_of, x_range, DrawResult};
use super::{Marker, ALPHA_COLOR, FONT, LAMBDA_COLOR, TRAIN_COLOR};
use crate::record::metrics::RecordedRun;
use plotters::prelude::*;
use std::path::Path;

/// A named, coloured line.
type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

pub(super) fn draw_hyper(path: &Path, run: &RecordedRun, markers: &[Marker]) -> DrawResult<()> {
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
