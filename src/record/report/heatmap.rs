//! `clip_heatmap.png`: the share of each layer's AGC units clipped, layers x statistics snapshots, and its colour bar.

use super::charts::{draw_markers, step_label, viridis, DrawResult};
use super::{Marker, FONT};
use crate::train::messages::LayerStats;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

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
pub(super) fn draw_clip_heatmap(
    path: &Path,
    layers: &[LayerStats],
    markers: &[Marker],
) -> DrawResult<bool> {
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
