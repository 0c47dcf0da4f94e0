//! The chart pieces every picture shares: ranges, smoothing, the validation line, the live-change markers, the
//! legend box, the colormap and the axis labels.

use super::{Marker, FONT, VAL_COLOR};
use crate::record::metrics::RecordedRun;
use plotters::prelude::*;

pub(super) type DrawResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The coordinates of every chart: f64 on both axes.
pub(super) type Chart2d =
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>;

/// Finite min and max of `values`, padded so a flat series still gets a range.
pub(super) fn range_of(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
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
pub(super) fn smooth(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
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

pub(super) fn x_range(run: &RecordedRun) -> (f64, f64) {
    let first = run.steps.first().map(|s| s.step as f64).unwrap_or(0.0);
    let last = run.steps.last().map(|s| s.step as f64).unwrap_or(1.0);
    (first.min(last - 1.0), last.max(first + 1.0))
}

/// The validation points of a loss or accuracy chart: a line through them, a dot on each, a legend entry.
pub(super) fn draw_validation<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Chart2d>,
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

pub(super) fn draw_markers<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Chart2d>,
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

/// The legend box, at `position`.
pub(super) fn draw_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Chart2d>,
    position: SeriesLabelPosition,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Viridis (matplotlib's default colormap), sampled at 8 stops and interpolated; `t` in [0, 1].
pub(super) fn viridis(t: f64) -> RGBColor {
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

/// Steps are whole numbers.
pub(super) fn step_label(x: &f64) -> String {
    format!("{x:.0}")
}

pub(super) fn run_title(run: &RecordedRun) -> String {
    match run.started() {
        Some(s) => format!("{} on {}", s.model, s.device),
        None => "run".into(),
    }
}
