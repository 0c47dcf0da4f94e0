//! Trainer events as table rows and back.

use super::*;

pub(super) fn step_row(m: &StepMetrics, time: f64) -> Vec<Cell> {
    use Cell::{F, U};
    vec![
        U(m.step),
        F(time),
        F(m.epoch),
        F(m.loss),
        F(m.train_top1),
        F(m.lr),
        F(m.lambda),
        F(m.alpha),
        F(m.grad_norm),
        F(m.clipped_fraction),
        F(m.images_per_sec),
        F(m.step_ms),
    ]
}

pub(super) fn step_from(t: &ReadTable, i: usize) -> StepMetrics {
    StepMetrics {
        step: t.u("step", i),
        epoch: t.f("epoch", i),
        loss: t.f("loss", i),
        train_top1: t.f("train_top1", i),
        lr: t.f("lr", i),
        lambda: t.f("lambda", i),
        alpha: t.f("alpha", i),
        grad_norm: t.f("grad_norm", i),
        clipped_fraction: t.f("clipped_fraction", i),
        images_per_sec: t.f("images_per_sec", i),
        step_ms: t.f("step_ms", i),
    }
}

pub(super) fn eval_row(e: &EvalMetrics, time: f64) -> Vec<Cell> {
    use Cell::{B, F, U};
    vec![
        U(e.step),
        F(time),
        F(e.loss),
        F(e.top1),
        F(e.top5),
        U(e.images as u64),
        B(e.ema),
    ]
}

pub(super) fn eval_from(t: &ReadTable, i: usize) -> EvalMetrics {
    EvalMetrics {
        step: t.u("step", i),
        loss: t.f("loss", i),
        top1: t.f("top1", i),
        top5: t.f("top5", i),
        images: t.u("images", i) as usize,
        ema: t.b("ema", i),
    }
}

pub(super) fn throughput_row(t: &Throughput) -> Vec<Cell> {
    use Cell::{F, U};
    vec![
        U(t.step),
        F(t.images_per_sec),
        F(t.step_ms),
        F(t.data_ms),
        F(t.forward_ms),
        F(t.backward_ms),
        F(t.agc_ms),
        F(t.optimizer_ms),
        F(t.stats_ms),
    ]
}

pub(super) fn throughput_from(t: &ReadTable, i: usize) -> Throughput {
    Throughput {
        step: t.u("step", i),
        images_per_sec: t.f("images_per_sec", i),
        step_ms: t.f("step_ms", i),
        data_ms: t.f("data_ms", i),
        forward_ms: t.f("forward_ms", i),
        backward_ms: t.f("backward_ms", i),
        agc_ms: t.f("agc_ms", i),
        optimizer_ms: t.f("optimizer_ms", i),
        stats_ms: t.f("stats_ms", i),
    }
}

pub(super) fn event_row(e: &EventRow) -> Vec<Cell> {
    use Cell::{F, S, U};
    vec![
        U(e.step),
        F(e.time),
        S(e.kind.clone()),
        S(e.key.clone()),
        S(e.value.clone()),
        S(e.detail.clone()),
    ]
}

pub(super) fn event_from(t: &ReadTable, i: usize) -> EventRow {
    EventRow {
        step: t.u("step", i),
        time: t.f("time", i),
        kind: t.s("kind", i),
        key: t.s("key", i),
        value: t.s("value", i),
        detail: t.s("detail", i),
    }
}

/// The events-table rows of a non-telemetry event (an `Applied` with several parameters gives one row each).
pub fn event_rows(event: &Event, last_step: u64) -> Vec<EventRow> {
    // One time for all rows of one event, so replay can tell they belong together.
    let time = now_seconds();
    let one = |step, kind, key: &str, value: &str, detail: &str| {
        vec![EventRow::new(step, time, kind, key, value, detail)]
    };
    match event {
        Event::Started(info) => {
            let json = serde_json::to_string(info).unwrap_or_default();
            one(info.start_step, "started", &info.model, &info.device, &json)
        }
        Event::State { state, step } => one(*step, "state", &format!("{state:?}"), "", ""),
        Event::Applied {
            params,
            origin,
            step,
        } => params
            .iter()
            .map(|p| EventRow::new(*step, time, "applied", p.key(), &p.value_string(), origin))
            .collect(),
        Event::Rejected { what, reason, step } => one(*step, "rejected", what, "", reason),
        Event::Checkpoint { path, step } => {
            one(*step, "checkpoint", "", &path.display().to_string(), "")
        }
        Event::CheckpointFailed {
            step,
            reason,
            last_saved,
        } => {
            let saved = last_saved.map(|s| s.to_string()).unwrap_or_default();
            one(*step, "checkpoint_failed", "", &saved, reason)
        }
        Event::NonFinite {
            step,
            what,
            consecutive,
        } => one(*step, "nonfinite", what, &consecutive.to_string(), ""),
        Event::Rescued(r) => {
            let json = serde_json::to_string(r).unwrap_or_default();
            one(r.step, "rescued", &r.describe(), rescue_value(r), &json)
        }
        Event::Warning(msg) => one(last_step, "warning", "", "", msg),
        Event::Error(msg) => one(last_step, "error", "", "", msg),
        Event::Finished { step } => one(*step, "finished", "", "", ""),
        Event::Step(_)
        | Event::Eval(_)
        | Event::Layers(_)
        | Event::Throughput(_)
        | Event::Memory { .. } => Vec::new(),
    }
}

/// The `value` of a `rescued` row: what was done, in one word.
fn rescue_value(r: &RescueReport) -> &'static str {
    match r.action {
        RescueAction::RolledBack { .. } => "rolled_back",
        RescueAction::GaveUp => "gave_up",
        RescueAction::NoCheckpoint { .. } => "no_checkpoint",
    }
}

/// Parses an `applied` row back into the live parameter it recorded.
pub fn live_param_from(key: &str, value: &str) -> Option<LiveParam> {
    LiveParam::parse(key, value)
}
