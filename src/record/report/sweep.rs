//! `heatmap.png` of a sweep: final validation top-1 over two grid axes, diverged cells crossed out in red.

use super::charts::{viridis, DrawResult};
use super::{plot_err, FONT};
use crate::record::Result;
use plotters::prelude::*;
use std::path::Path;

/// One grid cell: the run's final validation top-1 (fraction) and whether it diverged.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HeatmapCell {
    pub top1: Option<f64>,
    pub diverged: bool,
}

/// The two axes of a sweep and its cells, `cells[row][column]` (rows follow `y_values`, columns `x_values`).
#[derive(Debug, Clone, PartialEq)]
pub struct SweepHeatmap {
    pub title: String,
    pub x_key: String,
    pub x_values: Vec<String>,
    pub y_key: String,
    pub y_values: Vec<String>,
    pub cells: Vec<Vec<HeatmapCell>>,
}

/// Writes the heatmap PNG.
pub fn write_sweep_heatmap(path: &Path, map: &SweepHeatmap) -> Result<()> {
    draw(path, map).map_err(|e| plot_err(path, e))
}

fn draw(path: &Path, map: &SweepHeatmap) -> DrawResult<()> {
    let (nx, ny) = (map.x_values.len().max(1), map.y_values.len().max(1));
    let width = (260 + 130 * nx as u32).clamp(640, 2400);
    let height = (200 + 90 * ny as u32).clamp(420, 2000);
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&map.title, (FONT, 22))?;
    // Colours span the finite values of the grid, so small differences stay visible.
    let values: Vec<f64> = map
        .cells
        .iter()
        .flatten()
        .filter(|c| !c.diverged)
        .filter_map(|c| c.top1)
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let xs = map.x_values.clone();
    let ys = map.y_values.clone();
    let mut chart = ChartBuilder::on(&root)
        .margin(15)
        .x_label_area_size(55)
        .y_label_area_size(110)
        .build_cartesian_2d(-0.5..(nx as f64 - 0.5), (ny as f64 - 0.5)..-0.5f64)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(map.x_key.as_str())
        .y_desc(map.y_key.as_str())
        .x_labels(nx)
        .y_labels(ny)
        .x_label_formatter(&move |x| label_at(&xs, *x))
        .y_label_formatter(&move |y| label_at(&ys, *y))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .draw()?;
    for (r, row) in map.cells.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            draw_cell(&mut chart, (c as f64, r as f64), cell, (lo, span))?;
        }
    }
    root.present()?;
    Ok(())
}

fn draw_cell<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, super::charts::Chart2d>,
    (x, y): (f64, f64),
    cell: &HeatmapCell,
    (lo, span): (f64, f64),
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    let corners = [(x - 0.48, y - 0.48), (x + 0.48, y + 0.48)];
    let (fill, text) = match (cell.diverged, cell.top1) {
        (true, _) => (RGBColor(255, 225, 225), "diverged".to_string()),
        (false, Some(t)) => (viridis((t - lo) / span), format!("{:.1}%", 100.0 * t)),
        (false, None) => (RGBColor(225, 225, 225), "-".to_string()),
    };
    chart.draw_series(std::iter::once(Rectangle::new(corners, fill.filled())))?;
    if cell.diverged {
        let red = RGBColor(200, 0, 0).stroke_width(3);
        let (a, b) = (corners[0], corners[1]);
        chart.draw_series(std::iter::once(PathElement::new(vec![a, b], red)))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(a.0, b.1), (b.0, a.1)],
            red,
        )))?;
    }
    // Dark text on the light end of the colormap, white on the dark end.
    let light = cell.diverged || cell.top1.is_none_or(|t| (t - lo) / span > 0.6);
    let color = if light { BLACK } else { WHITE };
    let style = TextStyle::from((FONT, 18).into_font()).color(&color).pos(
        plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ),
    );
    chart.draw_series(std::iter::once(Text::new(text, (x, y), style)))?;
    Ok(())
}

/// The axis label at a cell centre; nothing between centres.
fn label_at(labels: &[String], v: f64) -> String {
    let i = v.round();
    if (v - i).abs() < 1e-9 && i >= 0.0 && (i as usize) < labels.len() {
        labels[i as usize].clone()
    } else {
        String::new()
    }
}
