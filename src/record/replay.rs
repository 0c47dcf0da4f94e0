//! Replay: the trainer's event stream rebuilt from `metrics.h5`, in the order the trainer sent it, so the
//! workbench can be driven over a recorded run (read-only, with a step cursor).
//!
//! Ordering follows the trainer's step numbering: `Applied`/`Rejected` carry the first step that runs with them and
//! come before that step; `Step`, `Layers` and `Throughput` carry the step that ran; `Eval`, `Checkpoint`, `State`,
//! `Started` and `Finished` carry the number of steps done and come after that step. Events recorded during steps
//! that a resume later retrained (after the checkpoint, before the crash) are left out, as the rows are.

use super::metrics::{live_param_from, EventRow, RecordedRun, StartedInfo};
use crate::train::messages::{Event, RunState};
use std::path::PathBuf;

/// Where in a step an event belongs (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Before = 1,
    NonFinite = 2,
    Step = 3,
    Layers = 4,
    Throughput = 5,
    Eval = 6,
    Checkpoint = 7,
    After = 8,
    Finished = 9,
}

/// Every event of the run in order.
pub fn recorded_events(run: &RecordedRun) -> Vec<Event> {
    let mut keyed: Vec<(u64, Slot, Event)> = Vec::new();
    keyed.extend(
        run.steps
            .iter()
            .map(|s| (s.step, Slot::Step, Event::Step(s.clone()))),
    );
    keyed.extend(
        run.layers
            .iter()
            .map(|l| (l.step, Slot::Layers, Event::Layers(Box::new(l.clone())))),
    );
    keyed.extend(
        run.throughput
            .iter()
            .map(|t| (t.step, Slot::Throughput, Event::Throughput(t.clone()))),
    );
    keyed.extend(
        run.evals
            .iter()
            .map(|e| (e.step, Slot::Eval, Event::Eval(e.clone()))),
    );
    keyed.extend(event_table(&live_rows(&run.events)));
    // Stable: rows of one table keep their recorded order within a slot.
    keyed.sort_by_key(|(step, slot, _)| (*step, *slot));
    keyed.into_iter().map(|(_, _, e)| e).collect()
}

/// The events rows minus those recorded during steps a later resume trained again.
fn live_rows(rows: &[EventRow]) -> Vec<&EventRow> {
    let resumes: Vec<(u64, f64)> = rows
        .iter()
        .filter(|r| r.kind == "resumed")
        .map(|r| (r.step, r.time))
        .collect();
    rows.iter()
        .filter(|r| {
            !resumes
                .iter()
                .any(|&(step, time)| r.step > step && r.time < time && r.kind != "resumed")
        })
        .collect()
}

/// Events-table rows back into events; the rows of one `Applied` (same step, origin and time) are merged.
fn event_table(rows: &[&EventRow]) -> Vec<(u64, Slot, Event)> {
    let mut out: Vec<(u64, Slot, Event)> = Vec::new();
    let mut last_applied: Option<(u64, String, f64)> = None;
    for r in rows {
        if r.kind == "applied" {
            let Some(p) = live_param_from(&r.key, &r.value) else {
                continue;
            };
            let key = (r.step, r.detail.clone(), r.time);
            if last_applied.as_ref() == Some(&key) {
                if let Some((_, _, Event::Applied { params, .. })) = out.last_mut() {
                    params.push(p);
                    continue;
                }
            }
            last_applied = Some(key);
            out.push((
                r.step,
                Slot::Before,
                Event::Applied {
                    params: vec![p],
                    origin: r.detail.clone(),
                    step: r.step,
                },
            ));
            continue;
        }
        last_applied = None;
        if let Some(e) = row_event(r) {
            out.push(e);
        }
    }
    out
}

fn row_event(r: &EventRow) -> Option<(u64, Slot, Event)> {
    let step = r.step;
    Some(match r.kind.as_str() {
        "started" => {
            let info: StartedInfo = serde_json::from_str(&r.detail).ok()?;
            (step, Slot::After, Event::Started(info))
        }
        "state" => (
            step,
            Slot::After,
            Event::State {
                state: parse_state(&r.key)?,
                step,
            },
        ),
        "rejected" => (
            step,
            Slot::Before,
            Event::Rejected {
                what: r.key.clone(),
                reason: r.detail.clone(),
                step,
            },
        ),
        "checkpoint" => (
            step,
            Slot::Checkpoint,
            Event::Checkpoint {
                path: PathBuf::from(&r.value),
                step,
            },
        ),
        "checkpoint_failed" => (
            step,
            Slot::Checkpoint,
            Event::CheckpointFailed {
                step,
                reason: r.detail.clone(),
                last_saved: r.value.parse().ok(),
            },
        ),
        "nonfinite" => (
            step,
            Slot::NonFinite,
            Event::NonFinite {
                step,
                what: r.key.clone(),
                consecutive: r.value.parse().unwrap_or(1),
            },
        ),
        "rescued" => (
            step,
            Slot::After,
            Event::Rescued(serde_json::from_str(&r.detail).ok()?),
        ),
        "warning" => (step, Slot::After, Event::Warning(r.detail.clone())),
        "error" => (step, Slot::After, Event::Error(r.detail.clone())),
        "finished" => (step, Slot::Finished, Event::Finished { step }),
        "resumed" => (
            step,
            Slot::After,
            Event::Warning(format!("resumed from the checkpoint at step {step}")),
        ),
        _ => return None,
    })
}

fn parse_state(s: &str) -> Option<RunState> {
    Some(match s {
        "Starting" => RunState::Starting,
        "Running" => RunState::Running,
        "Paused" => RunState::Paused,
        "Diverged" => RunState::Diverged,
        "Finished" => RunState::Finished,
        "Stopped" => RunState::Stopped,
        "Failed" => RunState::Failed,
        _ => return None,
    })
}

/// Indices into `events` just after each statistics snapshot, and the end: the positions of the replay cursor.
pub fn cursor_stops(events: &[Event]) -> Vec<usize> {
    let mut stops: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Layers(_)))
        .map(|(i, _)| i + 1)
        .collect();
    stops.push(events.len());
    stops.dedup();
    stops
}
