//! The relay: the run record does not depend on a UI. A subscriber that never reads (a stalled or vanished
//! workbench) loses nothing from the record; a late subscriber gets the history and then every live event, with
//! nothing lost or repeated between the two.

use nfbench::record::metrics::read_run;
use nfbench::record::{Recorder, Relay};
use nfbench::train::events::lanes;
use nfbench::train::messages::{Event, RunState, StepMetrics};

fn step(step: u64) -> Event {
    Event::Step(StepMetrics {
        step,
        epoch: 0.0,
        loss: 2.0 - step as f64 * 1e-3,
        train_top1: 0.1,
        lr: 0.1,
        lambda: 0.01,
        alpha: 0.2,
        grad_norm: f64::NAN,
        clipped_fraction: f64::NAN,
        images_per_sec: 100.0,
        step_ms: 1.0,
    })
}

fn steps_of(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Step(m) => Some(m.step),
            _ => None,
        })
        .collect()
}

#[test]
fn a_subscriber_that_never_reads_does_not_hold_the_record_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.h5");
    let recorder = Recorder::create_at(&path, "").unwrap();
    let (trainer, lanes_out) = lanes(100_000);
    let relay = Relay::spawn(recorder, lanes_out).unwrap();
    // The stalled UI: subscribed, never reads (its own lanes drop telemetry; the record must not).
    let stalled = relay.subscribe();
    trainer.send(Event::State {
        state: RunState::Running,
        step: 0,
    });
    for s in 1..=5000 {
        trainer.send(step(s));
    }
    trainer.send(Event::Finished { step: 5000 });
    drop(trainer);
    let report = relay.finish();
    assert!(report.record_error.is_none(), "{:?}", report.record_error);
    assert_eq!(report.recorded, 5002);
    let run = read_run(&path).unwrap();
    let recorded: Vec<u64> = run.steps.iter().map(|m| m.step).collect();
    assert_eq!(recorded, (1..=5000).collect::<Vec<_>>());
    // The stalled subscriber kept only the newest telemetry its lane holds, and every control event.
    let got: Vec<Event> = std::iter::from_fn(|| stalled.try_recv()).collect();
    assert!(got.iter().any(|e| matches!(e, Event::Finished { .. })));
    assert!(steps_of(&got).len() < 5000);
}

#[test]
fn a_late_subscriber_gets_the_history_then_every_live_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::create_at(&dir.path().join("metrics.h5"), "").unwrap();
    let (trainer, lanes_out) = lanes(100_000);
    let relay = Relay::spawn(recorder, lanes_out).unwrap();
    let subscribers = relay.subscribers();
    let producer = std::thread::spawn(move || {
        for s in 1..=3000 {
            trainer.send(step(s));
        }
    });
    // Subscribe while the producer runs: wherever the cut falls, history + live = every step once.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let (history, live) = subscribers.subscribe_with_history();
    producer.join().unwrap();
    let mut seen = steps_of(&history);
    let tail: Vec<Event> = std::iter::from_fn(|| live.recv()).collect();
    seen.extend(steps_of(&tail));
    assert_eq!(seen, (1..=3000).collect::<Vec<_>>());
    relay.finish();
}

#[test]
fn a_process_note_reaches_the_events_table_and_the_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.h5");
    let recorder = Recorder::create_at(&path, "").unwrap();
    let (trainer, lanes_out) = lanes(16);
    let relay = Relay::spawn(recorder, lanes_out).unwrap();
    let sub = relay.subscribe();
    trainer.send(step(1));
    // Once a subscriber has step 1, the relay has recorded it: the note belongs to step 1.
    assert!(matches!(sub.recv(), Some(Event::Step(m)) if m.step == 1));
    relay.note("detached", "the terminal is gone (SIGHUP)");
    // The note is written by the relay thread on its next wake-up (at most half a second).
    let warning = loop {
        match sub.recv() {
            Some(Event::Warning(w)) => break w,
            Some(_) => continue,
            None => panic!("no note came"),
        }
    };
    assert_eq!(warning, "detached: the terminal is gone (SIGHUP)");
    drop(trainer);
    relay.finish();
    let run = read_run(&path).unwrap();
    let note = run.events.iter().find(|e| e.kind == "detached").unwrap();
    assert_eq!(note.detail, "the terminal is gone (SIGHUP)");
    assert_eq!(note.step, 1);
}
