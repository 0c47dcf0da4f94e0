//! The run's relay: one thread that takes every trainer event, writes it to the run record and hands it on to
//! whoever is watching.
//!
//! The record must not depend on a UI: a stalled or vanished terminal used to stop `metrics.h5` from growing while
//! training went on, because the recorder was fed by the UI loop. Here the relay owns the [`Recorder`] and drains
//! the trainer's lanes on its own thread; the workbench, an attached viewer or the headless progress printer are
//! subscribers, each with lanes of its own ([`crate::train::events::lanes`]): a slow subscriber loses only its own
//! telemetry, and the relay never blocks on one. The relay also keeps a history of the run's events, so a viewer
//! that subscribes late (`nfbench attach`) starts from the whole run, not from the moment it arrived.

use super::metrics::Recorder;
use super::RecordError;
use crate::train::events::{lanes, EventReceiver, EventSender};
use crate::train::messages::Event;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Telemetry a subscriber may have queued before its oldest is dropped.
const SUBSCRIBER_CAPACITY: usize = 4096;

/// Statistics snapshots kept in the history (the newest): they are large (one row per layer) and a late viewer
/// needs only the recent ones for its heatmaps.
const HISTORY_LAYERS: usize = 256;

/// How often the relay wakes up without events, to flush on time.
const IDLE_WAKE: Duration = Duration::from_millis(500);

/// What the relay did, once the trainer has gone and everything it sent is written.
#[derive(Debug)]
pub struct RelayReport {
    /// Events written to the record.
    pub recorded: u64,
    /// The last recording failure that was not followed by a successful write (`None`: the record is complete).
    pub record_error: Option<RecordError>,
}

/// The events of the run so far, for late subscribers.
#[derive(Default)]
struct History {
    events: Vec<Event>,
    layers: std::collections::VecDeque<Event>,
    /// The last training step seen.
    last_step: u64,
}

impl History {
    fn push(&mut self, ev: &Event) {
        if let Event::Step(m) = ev {
            if m.step <= self.last_step {
                self.rewind(m.step);
            }
            self.last_step = m.step;
        }
        match ev {
            Event::Layers(_) => {
                if self.layers.len() == HISTORY_LAYERS {
                    self.layers.pop_front();
                }
                self.layers.push_back(ev.clone());
            }
            // Split timings and memory are momentary: the newest arrives with the next statistics step.
            Event::Throughput(_) | Event::Memory { .. } => {}
            _ => self.events.push(ev.clone()),
        }
    }

    /// A divergence rescue rolled the run back and step `from` runs again: the telemetry of the abandoned steps
    /// goes (as the record drops their rows), so a late viewer sees the run as it stands; control events stay.
    fn rewind(&mut self, from: u64) {
        let abandoned = |e: &Event| {
            matches!(e, Event::Step(_) | Event::Eval(_) | Event::Layers(_)) && event_step(e) >= from
        };
        self.events.retain(|e| !abandoned(e));
        self.layers.retain(|e| !abandoned(e));
    }

    /// Every kept event in step order (statistics snapshots after the scalars of their step).
    fn replay(&self) -> Vec<Event> {
        let mut out = self.events.clone();
        out.extend(self.layers.iter().cloned());
        out.sort_by_key(event_step);
        out
    }
}

/// The step an event belongs to, for ordering a history (a stable sort keeps the arrival order within a step).
fn event_step(ev: &Event) -> u64 {
    match ev {
        Event::Started(s) => s.start_step,
        Event::State { step, .. }
        | Event::Applied { step, .. }
        | Event::Rejected { step, .. }
        | Event::Checkpoint { step, .. }
        | Event::CheckpointFailed { step, .. }
        | Event::NonFinite { step, .. }
        | Event::Memory { step, .. }
        | Event::Finished { step } => *step,
        Event::Rescued(r) => r.step,
        Event::Step(m) => m.step,
        Event::Eval(e) => e.step,
        Event::Layers(l) => l.step,
        Event::Throughput(t) => t.step,
        // Carry no step: keep them where they arrived relative to their neighbours.
        Event::Warning(_) | Event::Error(_) => u64::MAX,
    }
}

/// Shared between the relay thread and [`Relay::subscribe`].
#[derive(Default)]
struct Fanout {
    history: History,
    subscribers: Vec<EventSender>,
    /// The trainer has gone: new subscribers get the history and a closed lane.
    closed: bool,
    /// Rows for the events table from the process rather than the trainer (`detached`, `attached`), with a
    /// warning-level message for the subscribers.
    notes: Vec<(&'static str, String)>,
}

/// The relay thread's handle.
pub struct Relay {
    fanout: Arc<Mutex<Fanout>>,
    thread: Option<JoinHandle<RelayReport>>,
}

impl Relay {
    /// Start relaying the trainer's events (`trainer`: the lanes of its handle) into `recorder`.
    pub fn spawn(recorder: Recorder, trainer: EventReceiver) -> std::io::Result<Relay> {
        let fanout = Arc::new(Mutex::new(Fanout::default()));
        let shared = Arc::clone(&fanout);
        let thread = std::thread::Builder::new()
            .name("nfbench-relay".into())
            .spawn(move || relay_loop(recorder, trainer, &shared))?;
        Ok(Relay {
            fanout,
            thread: Some(thread),
        })
    }

    /// A new subscriber's lanes; they see events from now on and disconnect when the trainer has gone.
    pub fn subscribe(&self) -> EventReceiver {
        self.subscribers().subscribe_with_history().1
    }

    /// A handle that can add subscribers from another thread (the attach server).
    pub fn subscribers(&self) -> Subscribers {
        Subscribers(Arc::clone(&self.fanout))
    }

    /// Record a note about the process in the run's events table (`kind`: e.g. `detached`) and show it to the
    /// subscribers; written by the relay thread within a second.
    pub fn note(&self, kind: &'static str, detail: impl Into<String>) {
        self.subscribers().note(kind, detail);
    }

    /// Whether the trainer has gone and every event it sent has been recorded and handed on.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Wait until the trainer has gone and everything is written; the record is synced to disk.
    pub fn finish(mut self) -> RelayReport {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(report)) => report,
            // The relay thread only panics on a bug; its recorder is lost with it.
            Some(Err(p)) => std::panic::resume_unwind(p),
            None => unreachable!("finish consumes the relay"),
        }
    }
}

/// Adds subscribers to a [`Relay`]; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Subscribers(Arc<Mutex<Fanout>>);

impl Subscribers {
    /// The run's events so far and a subscriber's lanes for every event after them: nothing is lost or repeated
    /// between the two (both are taken under the lock the relay thread holds while it fans an event out).
    pub fn subscribe_with_history(&self) -> (Vec<Event>, EventReceiver) {
        let mut fan = lock(&self.0);
        let (sender, receiver) = lanes(SUBSCRIBER_CAPACITY);
        let history = fan.history.replay();
        if !fan.closed {
            fan.subscribers.push(sender);
        }
        (history, receiver)
    }

    /// As [`Relay::note`].
    pub fn note(&self, kind: &'static str, detail: impl Into<String>) {
        lock(&self.0).notes.push((kind, detail.into()));
    }
}

fn lock(m: &Mutex<Fanout>) -> MutexGuard<'_, Fanout> {
    // A subscriber cannot panic while holding the lock (it only pushes a sender), so a poisoned lock still holds
    // consistent data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Record and fan out until the trainer's lanes are closed and drained.
fn relay_loop(
    mut recorder: Recorder,
    trainer: EventReceiver,
    fanout: &Mutex<Fanout>,
) -> RelayReport {
    let mut recorded = 0;
    let mut record_error: Option<RecordError> = None;
    let mut step = 0;
    loop {
        write_notes(&mut recorder, step, fanout);
        let ev = match trainer.recv_timeout(IDLE_WAKE) {
            Ok(ev) => ev,
            Err(crossbeam::channel::RecvTimeoutError::Timeout) => {
                // Nothing arrived: still write what is buffered on time (a paused run's last rows).
                let done = recorder.flush_if_due();
                note_outcome(done, &mut record_error, fanout);
                continue;
            }
            Err(crossbeam::channel::RecvTimeoutError::Disconnected) => break,
        };
        if let Event::Step(m) = &ev {
            step = m.step;
        }
        let done = recorder.record(&ev);
        if done.is_ok() {
            recorded += 1;
        }
        note_outcome(done, &mut record_error, fanout);
        let mut fan = lock(fanout);
        fan.history.push(&ev);
        fan.subscribers.retain(|s| s.send(ev.clone()));
    }
    write_notes(&mut recorder, step, fanout);
    let done = recorder.sync();
    note_outcome(done, &mut record_error, fanout);
    let mut fan = lock(fanout);
    fan.closed = true;
    // Dropping the senders disconnects the subscribers: they see the trainer's end.
    fan.subscribers.clear();
    RelayReport {
        recorded,
        record_error,
    }
}

/// Move the process's notes into the events table and on to the subscribers (as info-level warnings).
fn write_notes(recorder: &mut Recorder, step: u64, fanout: &Mutex<Fanout>) {
    let mut fan = lock(fanout);
    for (kind, detail) in std::mem::take(&mut fan.notes) {
        recorder.note(step, kind, "", "", &detail);
        let ev = Event::Warning(format!("{kind}: {detail}"));
        fan.history.push(&ev);
        fan.subscribers.retain(|s| s.send(ev.clone()));
    }
}

/// Tell the subscribers when recording starts failing and when it works again (once each, not per event).
fn note_outcome(
    done: Result<(), RecordError>,
    failing: &mut Option<RecordError>,
    fanout: &Mutex<Fanout>,
) {
    let message = match (done, failing.is_some()) {
        (Ok(()), false) => return,
        (Ok(()), true) => {
            *failing = None;
            "run record: writing again; nothing was lost".to_string()
        }
        (Err(e), already) => {
            let first = !already;
            let text = format!(
                "run record: {} (the rows are kept and written when it works again; training goes on)",
                crate::train::error_chain(&e)
            );
            *failing = Some(e);
            if !first {
                return;
            }
            text
        }
    };
    let warning = Event::Warning(message);
    let mut fan = lock(fanout);
    fan.history.push(&warning);
    fan.subscribers.retain(|s| s.send(warning.clone()));
}
