//! `agc_whatif.png`: at the last statistics snapshot that has the AGC what-if counts, the share of units AGC would
//! clip as a function of lambda (log axis, one point per edge of the ratio histogram, exact there): for the whole
//! net and for the layer that clips most at the lambda in force, with that lambda marked.

use super::charts::DrawResult;
use super::{FONT, LAMBDA_COLOR, TRAIN_COLOR, VAL_COLOR};
use crate::optim::agc::RATIO_EDGES;
use crate::train::messages::LayerStats;
use plotters::prelude::*;
use std::path::Path;

/// The clipped-share-vs-lambda curves of one snapshot: `(lambda, share)` at every edge.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipCurves {
    pub step: u64,
    pub net: Vec<(f64, f64)>,
    /// The layer AGC applies to that clips the largest share at the lambda in force, and its curve.
    pub layer: Option<(String, Vec<(f64, f64)>)>,
}

/// The curves of the last snapshot in `layers` with counts; None when no snapshot has them (older records).
pub fn clip_curves(layers: &[LayerStats]) -> Option<ClipCurves> {
    let snap = layers
        .iter()
        .rev()
        .find(|s| s.net_ratio_counts().is_some())?;
    let (counts, units) = snap.net_ratio_counts()?;
    let curve = |counts: &[f64], units: f64| -> Vec<(f64, f64)> {
        RATIO_EDGES
            .iter()
            .zip(counts)
            .map(|(&e, &c)| (e, c / units))
            .collect()
    };
    let layer = snap
        .agc
        .iter()
        .filter(|a| a.clipped_by_agc && a.ratio_counts.len() == RATIO_EDGES.len() && a.units > 0)
        .max_by(|a, b| a.clipped_fraction.total_cmp(&b.clipped_fraction))
        .map(|a| (a.name.clone(), curve(&a.ratio_counts, a.units as f64)));
    Some(ClipCurves {
        step: snap.step,
        net: curve(&counts, units),
        layer,
    })
}

/// Returns false (and draws nothing) when the run has no what-if counts.
pub(super) fn draw_whatif(path: &Path, layers: &[LayerStats], lambda: f64) -> DrawResult<bool> {
    let Some(curves) = clip_curves(layers) else {
        return Ok(false);
    };
    let root = BitMapBackend::new(path, (1100, 650)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "AGC what-if at step {}: share of units clipped vs lambda",
        curves.step
    );
    let root = root.titled(&title, (FONT, 24))?;
    let (x0, x1) = (RATIO_EDGES[0], RATIO_EDGES[RATIO_EDGES.len() - 1]);
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x0..x1).log_scale(), 0.0..100.0)?;
    chart
        .configure_mesh()
        .x_desc("lambda (clipped where ||G_u|| > lambda * max(||W_u||, eps))")
        .y_desc("units clipped (%)")
        .x_label_formatter(&|x| format!("{x:.0e}"))
        .draw()?;
    let pct = |pts: &[(f64, f64)]| -> Vec<(f64, f64)> {
        pts.iter().map(|&(l, s)| (l, 100.0 * s)).collect()
    };
    chart
        .draw_series(LineSeries::new(
            pct(&curves.net),
            TRAIN_COLOR.stroke_width(3),
        ))?
        .label("whole net")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], TRAIN_COLOR.stroke_width(3)));
    if let Some((name, pts)) = &curves.layer {
        chart
            .draw_series(LineSeries::new(pct(pts), VAL_COLOR.stroke_width(2)))?
            .label(format!("{name} (clips most)"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], VAL_COLOR.stroke_width(2)));
    }
    if lambda.is_finite() && (x0..=x1).contains(&lambda) {
        chart
            .draw_series(LineSeries::new(
                [(lambda, 0.0), (lambda, 100.0)],
                LAMBDA_COLOR.stroke_width(2),
            ))?
            .label(format!("lambda in force = {lambda}"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], LAMBDA_COLOR.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 16))
        .draw()?;
    root.present()?;
    Ok(true)
}
