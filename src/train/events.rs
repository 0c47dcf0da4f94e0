//! The two event lanes between the trainer thread and its consumers.
//!
//! Control events (everything that is not telemetry) go through an unbounded channel: they are rare and must never
//! be lost. Telemetry goes through a bounded channel; when it is full the sender pops the oldest queued item itself
//! (it holds a clone of the receiver) and retries, so the trainer never blocks and a slow consumer always finds the
//! newest numbers. Drops are counted.

use super::messages::{Command, Event};
use super::{Result, TrainError, TrainSummary};
use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The trainer's end of the event lanes.
#[derive(Clone)]
pub struct EventSender {
    control: Sender<Event>,
    telemetry: Sender<Event>,
    /// Used only to drop the oldest telemetry when the lane is full.
    telemetry_tail: Receiver<Event>,
    dropped: Arc<AtomicU64>,
}

impl EventSender {
    /// Deliver an event without ever blocking. Returns false when every consumer is gone.
    pub fn send(&self, event: Event) -> bool {
        if !event.is_telemetry() {
            return self.control.send(event).is_ok();
        }
        let mut event = event;
        // A few tries: between our pop and our push the consumer may race us; giving up drops the newest.
        for _ in 0..4 {
            match self.telemetry.try_send(event) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    event = back;
                    if self.telemetry_tail.try_recv().is_ok() {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Telemetry events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The outside's end: commands in, events out, and the thread to join.
pub struct TrainerHandle {
    /// Commands to the trainer (unbounded; read at every step boundary).
    pub commands: Sender<Command>,
    /// The trainer's events: control (never dropped) and telemetry (`Step`, `Layers`, `Throughput`: bounded,
    /// oldest dropped under back-pressure).
    pub lanes: EventReceiver,
    dropped: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<TrainSummary>>>,
}

/// Create the lanes: the producer's sender and the consumer's receiver. The trainer makes one pair; the run's relay
/// (`record::relay`) makes one more per subscriber, so a slow subscriber loses only its own telemetry.
pub fn lanes(capacity: usize) -> (EventSender, EventReceiver) {
    let (control_tx, control_rx) = channel::unbounded();
    let (tele_tx, tele_rx) = channel::bounded(capacity.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    let sender = EventSender {
        control: control_tx,
        telemetry: tele_tx,
        telemetry_tail: tele_rx.clone(),
        dropped,
    };
    let receiver = EventReceiver {
        events: control_rx,
        telemetry: tele_rx,
    };
    (sender, receiver)
}

/// A consumer's end of the two lanes.
#[derive(Clone)]
pub struct EventReceiver {
    /// Control events: never dropped, unbounded; disconnected when the producer has gone.
    pub events: Receiver<Event>,
    /// Telemetry: bounded, oldest dropped under back-pressure.
    pub telemetry: Receiver<Event>,
}

impl EventReceiver {
    /// The next event from either lane without waiting, control first.
    pub fn try_recv(&self) -> Option<Event> {
        if let Ok(e) = self.events.try_recv() {
            return Some(e);
        }
        self.telemetry.try_recv().ok()
    }

    /// Wait for the next event from either lane, control first. `None` once the producer has gone and both lanes
    /// are drained.
    pub fn recv(&self) -> Option<Event> {
        loop {
            match self.recv_timeout(Duration::from_secs(3600)) {
                Ok(e) => return Some(e),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => continue,
            }
        }
    }

    /// Wait up to `timeout` for the next event from either lane, control first.
    pub fn recv_timeout(&self, timeout: Duration) -> std::result::Result<Event, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.events.try_recv() {
                Ok(e) => return Ok(e),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    // The producer is gone: drain what telemetry is left, then report the end.
                    return self
                        .telemetry
                        .try_recv()
                        .map_err(|_| RecvTimeoutError::Disconnected);
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            channel::select! {
                recv(self.events) -> msg => if let Ok(e) = msg { return Ok(e) },
                recv(self.telemetry) -> msg => if let Ok(e) = msg { return Ok(e) },
                default(remaining) => return Err(RecvTimeoutError::Timeout),
            }
        }
    }
}

impl TrainerHandle {
    pub(crate) fn new(
        commands: Sender<Command>,
        lanes: EventReceiver,
        sender: &EventSender,
        thread: JoinHandle<Result<TrainSummary>>,
    ) -> Self {
        Self {
            commands,
            lanes,
            dropped: sender.dropped.clone(),
            thread: Some(thread),
        }
    }

    /// Send a command; false when the trainer has exited.
    pub fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }

    /// The next event from either lane without waiting, control first.
    pub fn try_recv(&self) -> Option<Event> {
        self.lanes.try_recv()
    }

    /// Wait for the next event from either lane, control first. `None` once the trainer has exited and both lanes are
    /// drained.
    pub fn recv(&self) -> Option<Event> {
        self.lanes.recv()
    }

    /// Wait up to `timeout` for the next event from either lane, control first.
    pub fn recv_timeout(&self, timeout: Duration) -> std::result::Result<Event, RecvTimeoutError> {
        self.lanes.recv_timeout(timeout)
    }

    /// Telemetry events dropped under back-pressure so far.
    pub fn dropped_telemetry(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether the trainer thread has exited.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Wait for the trainer thread and return its summary (or the error that ended it).
    pub fn join(mut self) -> Result<TrainSummary> {
        match self.thread.take() {
            Some(t) => match t.join() {
                Ok(r) => r,
                Err(p) => Err(TrainError::Panicked(panic_message(&p))),
            },
            None => Err(TrainError::Panicked("already joined".into())),
        }
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}
