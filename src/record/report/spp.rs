//! `signal_propagation.png`: each block's output variance over time, and the latest snapshot against the variance
//! the alpha/beta bookkeeping predicts.

use super::charts::{draw_legend, draw_markers, range_of, viridis, DrawResult};
use super::{Marker, FONT, TRAIN_COLOR, VAL_COLOR};
use crate::train::messages::LayerStats;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Returns false when the run has no signal-propagation statistics.
pub(super) fn draw_spp(path: &Path, layers: &[LayerStats], markers: &[Marker]) -> DrawResult<bool> {
    let snaps: Vec<&LayerStats> = layers.iter().filter(|l| !l.spp.is_empty()).collect();
    let Some(last) = snaps.last() else {
        return Ok(false);
    };
    let root = BitMapBackend::new(path, (1400, 650)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled("Signal propagation per residual block", (FONT, 24))?;
    let (left, right) = root.split_horizontally(780);
    draw_over_time(&left, &snaps, last, markers)?;
    draw_latest(&right, last)?;
    root.present()?;
    Ok(true)
}

/// Left: each block's output variance over time, coloured by depth.
fn draw_over_time(
    area: &Area<'_>,
    snaps: &[&LayerStats],
    last: &LayerStats,
    markers: &[Marker],
) -> DrawResult<()> {
    let blocks = last.spp.len();
    let steps: Vec<f64> = snaps.iter().map(|s| s.step as f64).collect();
    let (x0, x1) = (steps[0], steps[steps.len() - 1].max(steps[0] + 1.0));
    let all = snaps.iter().flat_map(|s| s.spp.iter().map(|b| b.avg_var));
    let (y0, y1) = range_of(all).unwrap_or((0.0, 1.0));
    let (y0, y1) = (y0.min(0.0), y1);
    let mut chart = ChartBuilder::on(area)
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
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// Right: the latest snapshot against the prediction, block by block.
fn draw_latest(area: &Area<'_>, last: &LayerStats) -> DrawResult<()> {
    let blocks = last.spp.len();
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
    let mut chart = ChartBuilder::on(area)
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
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
}
