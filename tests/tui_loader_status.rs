//! The status bar's data time: the trainer's wait for its batch per step, and a warning when the loader does not
//! keep up (the wait is more than 10% of the step).

mod tui_common;

use nfbench::train::messages::{Event, Throughput};
use nfbench::tui::Theme;
use tui_common::*;

fn throughput(step: u64, step_ms: f64, data_ms: f64) -> Event {
    Event::Throughput(Throughput {
        step,
        images_per_sec: 64.0 * 1e3 / step_ms,
        step_ms,
        data_ms,
        forward_ms: (step_ms - data_ms) / 2.0,
        backward_ms: (step_ms - data_ms) / 2.0,
        agc_ms: 0.0,
        optimizer_ms: 0.0,
        stats_ms: 0.0,
    })
}

#[test]
fn a_starved_trainer_is_said_on_the_status_bar() {
    let mut app = busy_app(Theme::colored());
    app.on_event(throughput(300, 250.0, 100.0));
    let t = text(&render(&mut app, 200, 42));
    assert!(t.contains("data 100 ms/step (40%): LOADER BEHIND"), "{t}");
    // Still there at a narrow width: it is among the first segments.
    let narrow = text(&render(&mut app, 100, 42));
    assert!(narrow.contains("LOADER BEHIND"), "{narrow}");
}

#[test]
fn a_loader_that_keeps_up_shows_only_its_time() {
    let mut app = busy_app(Theme::colored());
    app.on_event(throughput(300, 250.0, 20.0)); // 8%: under the 10% line
    let t = text(&render(&mut app, 200, 42));
    assert!(t.contains("data 20 ms/step"), "{t}");
    assert!(!t.contains("BEHIND"), "{t}");
}
