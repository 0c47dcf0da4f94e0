//! The loss pane: train loss (raw and smoothed) and validation top-1 over steps, log scale, last N or whole run.

use super::events::Level;
use super::pane::Ctx;
use super::text::{num, pct};
use crate::train::messages::{EvalMetrics, RescueAction, RescueReport, StepMetrics};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Paragraph};
use ratatui::Frame;

/// Weight of the newest step in the smoothed curve (a debiased exponential moving average).
const SMOOTHING: f64 = 0.05;

/// Which part of the run the chart shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    All,
    /// The last N steps.
    Last(u64),
}

#[derive(Debug, Clone)]
pub struct LossPane {
    /// (step, loss) of every finite step.
    raw: Vec<(f64, f64)>,
    /// (step, smoothed loss).
    smooth: Vec<(f64, f64)>,
    ema: f64,
    ema_weight: f64,
    /// (step, val top-1 as a fraction) of the EMA weights' evaluations.
    val: Vec<(f64, f64)>,
    /// The same for the raw weights (`run.eval_weights` raw or both, or no EMA).
    val_raw: Vec<(f64, f64)>,
    /// Debiased running mean of the training top-1 (counted against the dominant label on mixed batches).
    top1: f64,
    top1_weight: f64,
    /// The recipe's augmentations in words, and whether batches are mixed (from the preset's `[augment]`).
    recipe: Option<(String, bool)>,
    last_eval: Option<EvalMetrics>,
    last_loss: Option<f64>,
    pub log_scale: bool,
    pub window: Window,
    /// Steps whose loss was not finite (not plotted).
    pub non_finite: u64,
    /// Steps a divergence rescue rolled the run back to, drawn as vertical marks.
    rescues: Vec<f64>,
    /// `tui --compare`: a finished run's curves drawn under the live ones, aligned by step.
    reference: Option<Reference>,
}

/// A reference run's curves: its label, (step, smoothed loss) and (step, val top-1).
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub label: String,
    pub loss: Vec<(f64, f64)>,
    pub val: Vec<(f64, f64)>,
}

impl Reference {
    /// The reference curves from a run's steps and evaluations, the loss smoothed as the live curve is.
    pub fn new(label: &str, steps: &[StepMetrics], evals: &[EvalMetrics]) -> Reference {
        let mut pane = LossPane::default();
        for m in steps {
            pane.on_step(m);
        }
        for e in evals {
            pane.on_eval(e);
        }
        Reference {
            label: label.to_string(),
            loss: pane.smooth,
            val: pane.val,
        }
    }
}

impl Default for LossPane {
    fn default() -> Self {
        Self {
            raw: Vec::new(),
            smooth: Vec::new(),
            ema: 0.0,
            ema_weight: 0.0,
            val: Vec::new(),
            val_raw: Vec::new(),
            top1: 0.0,
            top1_weight: 0.0,
            recipe: None,
            last_eval: None,
            last_loss: None,
            log_scale: false,
            window: Window::All,
            non_finite: 0,
            rescues: Vec::new(),
            reference: None,
        }
    }
}

impl LossPane {
    /// Steps kept in view in last-N mode.
    pub const LAST_N: u64 = 500;

    pub fn on_step(&mut self, m: &StepMetrics) {
        if !m.loss.is_finite() {
            self.non_finite += 1;
            return;
        }
        // A resumed or replayed run may go back in steps: drop what lies ahead of it.
        let x = m.step as f64;
        if self.raw.last().is_some_and(|(s, _)| *s >= x) {
            self.raw.retain(|(s, _)| *s < x);
            self.smooth.retain(|(s, _)| *s < x);
        }
        self.ema = (1.0 - SMOOTHING) * self.ema + SMOOTHING * m.loss;
        self.ema_weight = (1.0 - SMOOTHING) * self.ema_weight + SMOOTHING;
        if m.train_top1.is_finite() {
            self.top1 = (1.0 - SMOOTHING) * self.top1 + SMOOTHING * m.train_top1;
            self.top1_weight = (1.0 - SMOOTHING) * self.top1_weight + SMOOTHING;
        }
        self.raw.push((x, m.loss));
        self.smooth.push((x, self.smoothed().unwrap_or(m.loss)));
        self.last_loss = Some(m.loss);
    }

    pub fn on_eval(&mut self, e: &EvalMetrics) {
        if e.top1.is_finite() {
            let x = e.step as f64;
            let series = if e.ema {
                &mut self.val
            } else {
                &mut self.val_raw
            };
            series.retain(|(s, _)| *s < x);
            series.push((x, e.top1));
        }
        self.last_eval = Some(e.clone());
    }

    /// Show the training recipe (issue 18): `summary` in the title, and whether batches are mixed (then training
    /// top-1 is counted against each image's dominant label, and the title says so).
    pub fn set_recipe(&mut self, summary: String, mixed: bool) {
        self.recipe = Some((summary, mixed));
    }

    /// The smoothed training top-1.
    pub fn train_top1(&self) -> Option<f64> {
        (self.top1_weight > 0.0).then(|| self.top1 / self.top1_weight)
    }

    /// The latest validation top-1 of the EMA and of the raw weights, where evaluated.
    pub fn last_val(&self) -> (Option<f64>, Option<f64>) {
        (
            self.val.last().map(|p| p.1),
            self.val_raw.last().map(|p| p.1),
        )
    }

    /// A divergence rescue: a rollback is marked at the step the run went back to (the curve after it is
    /// replaced by the steps trained again, see [`LossPane::on_step`]).
    pub fn on_rescued(&mut self, r: &RescueReport) {
        if let RescueAction::RolledBack { to_step, .. } = r.action {
            self.rescues.push(to_step as f64);
        }
    }

    /// Draws `reference` under the live curves (`tui --compare`).
    pub fn set_reference(&mut self, reference: Reference) {
        self.reference = Some(reference);
    }

    pub fn reference(&self) -> Option<&Reference> {
        self.reference.as_ref()
    }

    /// Steps the run was rolled back to, in order.
    pub fn rescue_marks(&self) -> &[f64] {
        &self.rescues
    }

    /// The debiased moving average of the loss.
    pub fn smoothed(&self) -> Option<f64> {
        (self.ema_weight > 0.0).then(|| self.ema / self.ema_weight)
    }

    pub fn last_loss(&self) -> Option<f64> {
        self.last_loss
    }

    pub fn points(&self) -> usize {
        self.raw.len()
    }

    pub fn toggle_log(&mut self) {
        self.log_scale = !self.log_scale;
    }

    pub fn toggle_window(&mut self) {
        self.window = match self.window {
            Window::All => Window::Last(Self::LAST_N),
            Window::Last(_) => Window::All,
        };
    }

    fn title(&self) -> Line<'static> {
        let mut spans = vec![Span::raw(" Loss ")];
        if let Some(l) = self.last_loss {
            spans.push(Span::raw(format!("{} ", num(l))));
        }
        if let Some(s) = self.smoothed() {
            spans.push(Span::raw(format!("(avg {}) ", num(s))));
        }
        match self.last_val() {
            (Some(ema), Some(raw)) => spans.push(Span::raw(format!(
                "val top-1 EMA {:.1}% raw {:.1}% ",
                ema * 100.0,
                raw * 100.0
            ))),
            _ => {
                if let Some(e) = &self.last_eval {
                    let which = if e.ema { " (EMA)" } else { "" };
                    spans.push(Span::raw(format!(
                        "val top-1{which} {:.1}% ",
                        e.top1 * 100.0
                    )));
                }
            }
        }

        if !self.rescues.is_empty() {
            spans.push(Span::raw(format!("rescues {} ", self.rescues.len())));
        }
        Line::from(spans)
    }

    /// The bottom border: smoothed training top-1 (against the dominant label on mixed batches) and the recipe.
    fn footer(&self) -> Option<Line<'static>> {
        let mut parts = Vec::new();
        if let Some(t) = self.train_top1() {
            let against = match self.recipe {
                Some((_, true)) => " (vs dominant label)",
                _ => "",
            };
            parts.push(format!("train top-1{against} {:.1}%", t * 100.0));
        }
        if let Some((summary, _)) = &self.recipe {
            parts.push(summary.clone());
        }
        (!parts.is_empty()).then(|| Line::from(format!(" {} ", parts.join(" · "))))
    }

    fn hints(&self) -> Line<'static> {
        let scale = if self.log_scale { "log" } else { "lin" };
        let window = match self.window {
            Window::All => "all".to_string(),
            Window::Last(n) => format!("last {n}"),
        };
        Line::from(format!(" [l] {scale} [a] {window} "))
    }

    pub fn render(&self, frame: &mut Frame, area: Rect, ctx: Ctx) {
        let mut block = ctx.block(self.title(), Some(self.hints()), area.width);
        if let Some(footer) = self.footer() {
            block = block.title_bottom(footer);
        }
        let inner = block.inner(area);
        frame.render_widget(block, area);
        if inner.width < 4 || inner.height < 1 {
            return;
        }
        if self.raw.is_empty() {
            frame.render_widget(
                Paragraph::new("waiting for the first step…").style(ctx.theme.dim()),
                inner,
            );
            return;
        }
        let (x0, x1) = self.x_range();
        // Validation gets its own strip when there is room; otherwise its last value is in the title.
        let any_val = !(self.val.is_empty() && self.val_raw.is_empty())
            || self.reference.as_ref().is_some_and(|r| !r.val.is_empty());
        if inner.height >= 12 && any_val {
            let [top, bottom] =
                Layout::vertical([Constraint::Percentage(65), Constraint::Percentage(35)])
                    .areas(inner);
            self.render_loss(frame, top, ctx, x0, x1);
            self.render_val(frame, bottom, ctx, x0, x1);
        } else {
            self.render_loss(frame, inner, ctx, x0, x1);
        }
    }

    fn x_range(&self) -> (f64, f64) {
        let mut last = self.raw.last().map_or(0.0, |p| p.0);
        let first = self.raw.first().map_or(0.0, |p| p.0);
        // The whole run includes the reference's, so the live curve is seen against all of it.
        if let (Window::All, Some(r)) = (self.window, &self.reference) {
            last = last.max(r.loss.last().map_or(0.0, |p| p.0));
        }
        let x0 = match self.window {
            Window::All => first,
            Window::Last(n) => (last - n as f64).max(first),
        };
        (x0, last.max(x0 + 1.0))
    }

    fn render_loss(&self, frame: &mut Frame, area: Rect, ctx: Ctx, x0: f64, x1: f64) {
        let buckets = (area.width as usize).saturating_mul(2).max(2);
        let tf = |v: f64| if self.log_scale { v.log10() } else { v };
        let keep = |p: &(f64, f64)| p.0 >= x0 && (!self.log_scale || p.1 > 0.0);
        let raw: Vec<(f64, f64)> = envelope(self.raw.iter().filter(|p| keep(p)), x0, x1, buckets)
            .into_iter()
            .map(|(x, y)| (x, tf(y)))
            .collect();
        let smooth: Vec<(f64, f64)> =
            mean_buckets(self.smooth.iter().filter(|p| keep(p)), x0, x1, buckets)
                .into_iter()
                .map(|(x, y)| (x, tf(y)))
                .collect();
        let reference: Vec<(f64, f64)> = self.reference.as_ref().map_or_else(Vec::new, |r| {
            mean_buckets(r.loss.iter().filter(|p| keep(p)), x0, x1, buckets)
                .into_iter()
                .map(|(x, y)| (x, tf(y)))
                .collect()
        });
        let (y0, y1) = bounds(raw.iter().chain(&smooth).chain(&reference).map(|p| p.1));
        let label = |y: f64| {
            if self.log_scale {
                num(10f64.powf(y))
            } else {
                num(y)
            }
        };
        let marks = rescue_marks(&self.rescues, x0, x1, y0, y1);
        let ref_name = self
            .reference
            .as_ref()
            .map_or(String::new(), |r| format!("ref {}", legend_label(&r.label)));
        let mut datasets = vec![
            Dataset::default()
                .name("rescue")
                .marker(Marker::Braille)
                .graph_type(GraphType::Scatter)
                .style(ctx.theme.warn())
                .data(&marks),
            Dataset::default()
                .name("train")
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(ctx.theme.series(0))
                .data(&raw),
            Dataset::default()
                .name("smoothed")
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(ctx.theme.series(1))
                .data(&smooth),
        ];
        if self.reference.is_some() {
            datasets.insert(
                1,
                Dataset::default()
                    .name(ref_name.clone())
                    .marker(Marker::Braille)
                    .graph_type(GraphType::Line)
                    .style(ctx.theme.series(3))
                    .data(&reference),
            );
        }
        // With a reference the legend (shown when it fits these shares of the chart) says whose curve is whose.
        let (legend_w, legend_h) = if self.reference.is_some() {
            (60, 80)
        } else {
            (50, 50)
        };
        let chart = Chart::new(datasets)
            .x_axis(
                Axis::default()
                    .bounds([x0, x1])
                    .labels(vec![
                        Span::raw(format!("{x0:.0}")),
                        Span::raw(format!("{x1:.0}")),
                    ])
                    .style(ctx.theme.dim()),
            )
            .y_axis(
                Axis::default()
                    .bounds([y0, y1])
                    .labels(vec![Span::raw(label(y0)), Span::raw(label(y1))])
                    .style(ctx.theme.dim()),
            )
            .hidden_legend_constraints((
                Constraint::Percentage(legend_w),
                Constraint::Percentage(legend_h),
            ));
        frame.render_widget(chart, area);
    }

    fn render_val(&self, frame: &mut Frame, area: Rect, ctx: Ctx, x0: f64, x1: f64) {
        let visible = |v: &[(f64, f64)]| -> Vec<(f64, f64)> {
            v.iter().copied().filter(|p| p.0 >= x0).collect()
        };
        let (val, raw) = (visible(&self.val), visible(&self.val_raw));
        let ref_val = self
            .reference
            .as_ref()
            .map_or_else(Vec::new, |r| visible(&r.val));
        let (y0, y1) = bounds(val.iter().chain(&raw).chain(&ref_val).map(|p| p.1));
        let (y0, y1) = (y0.max(0.0), y1.min(1.0).max(y0.max(0.0) + 1e-6));
        let ref_name = self.reference.as_ref().map_or(String::new(), |r| {
            format!("ref {} val", legend_label(&r.label))
        });
        // Both curves when both were evaluated: the EMA (what the paper reports) and the raw weights.
        let both = !val.is_empty() && !raw.is_empty();
        let mut datasets = Vec::new();
        for (name, data, series) in [("val top-1 EMA", &val, 2), ("val top-1 raw", &raw, 1)] {
            if !data.is_empty() {
                let name = if both { name } else { "val top-1" };
                datasets.push(
                    Dataset::default()
                        .name(name)
                        .marker(Marker::Braille)
                        .graph_type(GraphType::Line)
                        .style(ctx.theme.series(series))
                        .data(data),
                );
            }
        }
        if self.reference.is_some() {
            datasets.push(
                Dataset::default()
                    .name(ref_name)
                    .marker(Marker::Braille)
                    .graph_type(GraphType::Line)
                    .style(ctx.theme.series(3))
                    .data(&ref_val),
            );
        }
        let chart = Chart::new(datasets)
            .x_axis(Axis::default().bounds([x0, x1]).style(ctx.theme.dim()))
            .y_axis(
                Axis::default()
                    .bounds([y0, y1])
                    .labels(vec![Span::raw(pct(y0)), Span::raw(pct(y1))])
                    .style(ctx.theme.dim()),
            )
            .hidden_legend_constraints((Constraint::Percentage(70), Constraint::Percentage(90)));
        frame.render_widget(chart, area);
    }
}

/// A run label short enough for a chart legend: its last characters (sweep and run names differ at the end).
fn legend_label(label: &str) -> String {
    const MAX: usize = 22;
    let n = label.chars().count();
    if n <= MAX {
        label.to_string()
    } else {
        let tail: String = label.chars().skip(n - (MAX - 1)).collect();
        format!("…{tail}")
    }
}

/// Points of a vertical line at each rescue step inside [x0, x1], spanning [y0, y1].
fn rescue_marks(steps: &[f64], x0: f64, x1: f64, y0: f64, y1: f64) -> Vec<(f64, f64)> {
    const POINTS: usize = 24;
    steps
        .iter()
        .filter(|x| (x0..=x1).contains(*x))
        .flat_map(|&x| (0..=POINTS).map(move |i| (x, y0 + (y1 - y0) * i as f64 / POINTS as f64)))
        .collect()
}

/// The events-pane level of a rescue: a rollback is a warning, giving up an error.
pub fn rescue_level(r: &RescueReport) -> Level {
    match r.action {
        RescueAction::RolledBack { .. } => Level::Warn,
        RescueAction::GaveUp | RescueAction::NoCheckpoint { .. } => Level::Error,
    }
}

/// Padded [min, max] of finite values, never empty.
pub(crate) fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else {
        lo.abs().max(1.0) * 0.1
    };
    (lo - pad, hi + pad)
}

fn bucket_of(x: f64, x0: f64, x1: f64, buckets: usize) -> usize {
    let t = ((x - x0) / (x1 - x0).max(f64::MIN_POSITIVE)).clamp(0.0, 1.0);
    ((t * buckets as f64) as usize).min(buckets - 1)
}

/// The minimum and maximum of each bucket of steps, so that a long run drawn in a narrow pane keeps its noise band.
fn envelope<'a>(
    pts: impl Iterator<Item = &'a (f64, f64)>,
    x0: f64,
    x1: f64,
    buckets: usize,
) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    type Point = (f64, f64);
    let mut cur: Option<(usize, Point, Point)> = None;
    for &(x, y) in pts {
        let b = bucket_of(x, x0, x1, buckets);
        match &mut cur {
            Some((cb, lo, hi)) if *cb == b => {
                if y < lo.1 {
                    *lo = (x, y);
                }
                if y > hi.1 {
                    *hi = (x, y);
                }
            }
            _ => {
                if let Some((_, lo, hi)) = cur.take() {
                    push_pair(&mut out, lo, hi);
                }
                cur = Some((b, (x, y), (x, y)));
            }
        }
    }
    if let Some((_, lo, hi)) = cur {
        push_pair(&mut out, lo, hi);
    }
    out
}

fn push_pair(out: &mut Vec<(f64, f64)>, a: (f64, f64), b: (f64, f64)) {
    if a == b {
        out.push(a);
    } else if a.0 <= b.0 {
        out.extend([a, b]);
    } else {
        out.extend([b, a]);
    }
}

/// The mean of each bucket of steps.
fn mean_buckets<'a>(
    pts: impl Iterator<Item = &'a (f64, f64)>,
    x0: f64,
    x1: f64,
    buckets: usize,
) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, f64, f64, f64)> = None; // bucket, sum x, sum y, n
    for &(x, y) in pts {
        let b = bucket_of(x, x0, x1, buckets);
        match &mut cur {
            Some((cb, sx, sy, n)) if *cb == b => {
                *sx += x;
                *sy += y;
                *n += 1.0;
            }
            _ => {
                if let Some((_, sx, sy, n)) = cur.take() {
                    out.push((sx / n, sy / n));
                }
                cur = Some((b, x, y, 1.0));
            }
        }
    }
    if let Some((_, sx, sy, n)) = cur {
        out.push((sx / n, sy / n));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: u64, loss: f64) -> StepMetrics {
        StepMetrics {
            step,
            epoch: 0.0,
            loss,
            train_top1: 0.0,
            lr: 0.1,
            lambda: 0.01,
            alpha: 0.2,
            grad_norm: f64::NAN,
            clipped_fraction: f64::NAN,
            images_per_sec: 0.0,
            step_ms: 0.0,
        }
    }

    #[test]
    fn smoothing_is_debiased_and_skips_non_finite() {
        let mut p = LossPane::default();
        p.on_step(&step(1, 2.0));
        assert!((p.smoothed().unwrap() - 2.0).abs() < 1e-12);
        p.on_step(&step(2, f64::NAN));
        assert_eq!(p.non_finite, 1);
        p.on_step(&step(3, 1.0));
        let w = SMOOTHING;
        let expect = ((1.0 - w) * w * 2.0 + w * 1.0) / ((1.0 - w) * w + w);
        assert!((p.smoothed().unwrap() - expect).abs() < 1e-12);
        assert_eq!(p.points(), 2);
    }

    #[test]
    fn downsampling_keeps_extremes_and_bounds_the_count() {
        let pts: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, (i % 7) as f64)).collect();
        let env = envelope(pts.iter(), 0.0, 9999.0, 50);
        assert!(env.len() <= 100);
        assert!(env.iter().any(|p| p.1 == 6.0) && env.iter().any(|p| p.1 == 0.0));
        let mean = mean_buckets(pts.iter(), 0.0, 9999.0, 50);
        assert_eq!(mean.len(), 50);
    }

    fn rescued(action: RescueAction) -> RescueReport {
        RescueReport {
            step: 40,
            trigger: crate::train::messages::RescueTrigger::NonFinite { consecutive: 3 },
            action,
            rescues: 1,
            max_rescues: 3,
        }
    }

    #[test]
    fn a_rollback_is_marked_at_its_step_and_the_curve_restarts_there() {
        let mut p = LossPane::default();
        for s in 1..=40 {
            p.on_step(&step(s, 2.0));
        }
        p.on_rescued(&rescued(RescueAction::RolledBack {
            to_step: 30,
            checkpoint: "ck".into(),
            params: Vec::new(),
            skipped_batches: 10,
        }));
        p.on_rescued(&rescued(RescueAction::GaveUp));
        assert_eq!(p.rescue_marks(), &[30.0]);
        p.on_step(&step(31, 1.0));
        assert_eq!(p.points(), 31);
        let marks = rescue_marks(p.rescue_marks(), 0.0, 40.0, 1.0, 3.0);
        assert_eq!(marks.len(), 25);
        assert!(marks.iter().all(|&(x, _)| x == 30.0));
        assert_eq!((marks[0].1, marks[24].1), (1.0, 3.0));
        assert!(rescue_marks(p.rescue_marks(), 31.0, 40.0, 1.0, 3.0).is_empty());
        assert!(p.title().to_string().contains("rescues 1"));
    }

    #[test]
    fn bounds_of_nothing_or_one_value_are_not_empty() {
        assert_eq!(bounds(std::iter::empty()), (0.0, 1.0));
        let (a, b) = bounds([2.0].into_iter());
        assert!(a < 2.0 && b > 2.0);
    }
}
