//! `nfbench export RUN_DIR --tensorboard DIR --csv DIR`: a recorded run in other tools' formats.
//!
//! - [`tensorboard`]: one TensorBoard event file of scalars (TFRecord framing, `Event` / `Summary` protobufs).
//! - [`csv`]: the step, eval and per-layer AGC tables as CSV files.
//!
//! Both take the same scalars from the record ([`scalars`]), so TensorBoard and the CSV files always agree.

pub mod csv;
pub mod tensorboard;

use super::metrics::RecordedRun;

/// The prefix of the per-layer AGC tags: `agc/max_ratio/<layer>`, `agc/mean_ratio/<layer>`.
pub const AGC_PREFIX: &str = "agc";

/// One scalar series point: (tag, step, wall time, value).
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub tag: String,
    pub step: u64,
    pub wall_time: f64,
    pub value: f64,
}

/// Every scalar a run exports, in record order: per step `train/loss`, `train/lr`, `train/lambda`,
/// `train/clipped_fraction` (when measured); per evaluation `val/top1`, `val/loss`; per statistics snapshot
/// `agc/max_ratio/<layer>` and `agc/mean_ratio/<layer>`. Non-finite values are left out (TensorBoard's scalar
/// charts cannot draw them, and NaN here means "not measured").
pub fn scalars(run: &RecordedRun) -> Vec<Scalar> {
    let mut out = Vec::new();
    let mut push = |tag: String, step: u64, wall_time: f64, value: f64| {
        if value.is_finite() {
            out.push(Scalar {
                tag,
                step,
                wall_time,
                value,
            });
        }
    };
    for (i, s) in run.steps.iter().enumerate() {
        let t = run.step_times.get(i).copied().unwrap_or(0.0);
        push("train/loss".into(), s.step, t, s.loss);
        push("train/lr".into(), s.step, t, s.lr);
        push("train/lambda".into(), s.step, t, s.lambda);
        push(
            "train/clipped_fraction".into(),
            s.step,
            t,
            s.clipped_fraction,
        );
    }
    let time_at = |step: u64| {
        run.steps
            .iter()
            .position(|s| s.step >= step)
            .and_then(|i| run.step_times.get(i).copied())
            .unwrap_or(0.0)
    };
    for e in &run.evals {
        push("val/top1".into(), e.step, time_at(e.step), e.top1);
        push("val/loss".into(), e.step, time_at(e.step), e.loss);
    }
    for snap in &run.layers {
        let t = time_at(snap.step);
        for l in &snap.agc {
            push(
                format!("{AGC_PREFIX}/max_ratio/{}", l.name),
                snap.step,
                t,
                l.max_ratio,
            );
            push(
                format!("{AGC_PREFIX}/mean_ratio/{}", l.name),
                snap.step,
                t,
                l.mean_ratio,
            );
        }
    }
    out
}
