//! `nfbench spp --compare A,B,C --out fig.png`: the paper's signal-propagation picture. Per residual block, the
//! average channel variance (top) and the average squared channel mean (bottom) of the residual stream at init,
//! one line per network, on a log scale (BatchNorm grows linearly, the unnormalised net exponentially, the NF
//! net climbs the alpha^2 staircase and resets at each transition).

use super::charts::DrawResult;
use super::compare::RUN_COLORS;
use super::{plot_err, FONT};
use crate::record::Result;
use plotters::prelude::*;
use std::path::Path;

/// One network's measured blocks: (block name, avg_var, avg_sq_mean).
#[derive(Debug, Clone, PartialEq)]
pub struct SppSeries {
    pub label: String,
    pub blocks: Vec<(String, f64, f64)>,
}

/// Writes the two-panel PNG.
pub fn write_spp_comparison(path: &Path, title: &str, series: &[SppSeries]) -> Result<()> {
    draw(path, title, series).map_err(|e| plot_err(path, e))
}

fn draw(path: &Path, title: &str, series: &[SppSeries]) -> DrawResult<()> {
    let root = BitMapBackend::new(path, (1200, 1300)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, (FONT, 22))?;
    let panels = root.split_evenly((3, 1));
    panel(
        &panels[0],
        series,
        "average channel variance",
        Scale::Log,
        |b| b.1,
    )?;
    // On a log scale the alpha^2 steps are invisible: the nets whose variance stays within 10x of the flattest
    // one's again, on a linear scale (BN's linear growth, NF's staircase and its resets).
    let peak = |s: &SppSeries| s.blocks.iter().map(|b| b.1).fold(0.0f64, f64::max);
    let flattest = series.iter().map(peak).fold(f64::INFINITY, f64::min);
    let tame: Vec<SppSeries> = series
        .iter()
        .filter(|s| peak(s) <= 10.0 * flattest)
        .cloned()
        .collect();
    panel(
        &panels[1],
        &tame,
        "average channel variance",
        Scale::Linear,
        |b| b.1,
    )?;
    panel(
        &panels[2],
        series,
        "average squared channel mean",
        Scale::Log,
        |b| b.2,
    )?;
    root.present()?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scale {
    Linear,
    Log,
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    series: &[SppSeries],
    what: &str,
    scale: Scale,
    value: impl Fn(&(String, f64, f64)) -> f64,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    let n = series
        .iter()
        .map(|s| s.blocks.len())
        .max()
        .unwrap_or(1)
        .max(2);
    // Log scale: log10 of the values on a linear axis, labelled as powers of ten.
    let tf = |v: f64| match scale {
        Scale::Log => v.log10(),
        Scale::Linear => v,
    };
    let ys = || {
        series
            .iter()
            .flat_map(|s| s.blocks.iter().map(&value))
            .filter(|v| v.is_finite() && *v > 0.0)
            .map(tf)
    };
    let lo = ys().fold(f64::INFINITY, f64::min);
    let hi = ys().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = match (lo.is_finite(), scale) {
        (false, _) => (0.0, 1.0),
        (true, Scale::Log) => (lo.floor() - 0.1, hi.ceil() + 0.1),
        (true, Scale::Linear) => (0.0, hi * 1.08),
    };
    let names: Vec<String> = series
        .iter()
        .max_by_key(|s| s.blocks.len())
        .map(|s| s.blocks.iter().map(|b| b.0.clone()).collect())
        .unwrap_or_default();
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5..(n as f64 - 0.5), lo..hi)?;
    chart
        .configure_mesh()
        .y_desc(match scale {
            Scale::Log => format!("{what} (log scale)"),
            Scale::Linear => format!("{what} (linear)"),
        })
        .x_desc("residual block")
        .x_labels(n.min(30))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-9 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].clone()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| match scale {
            Scale::Log if (y - y.round()).abs() < 1e-6 => format!("1e{:.0}", y.round()),
            Scale::Log => String::new(),
            Scale::Linear => format!("{y:.2}"),
        })
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 15))
        .draw()?;
    for (k, s) in series.iter().enumerate() {
        let color = RUN_COLORS[k % RUN_COLORS.len()];
        let points: Vec<(f64, f64)> = s
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| (i as f64, value(b)))
            .filter(|p| p.1.is_finite() && p.1 > 0.0)
            .map(|(x, v)| (x, tf(v)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 15))
        .draw()?;
    Ok(())
}
