//! The workbench: a ratatui TUI over the background trainer, one file per pane.
//!
//! - [`app::App`] is the whole UI as a pure state machine: [`App::on_event`] folds trainer events in,
//!   [`App::on_preset`] folds preset reloads in, [`App::on_key`] / [`App::on_mouse`] turn input into [`Action`]s
//!   (commands for the trainer, a write-back, a seek), and [`App::render`] draws a frame. Render and key tests drive
//!   it with ratatui's `TestBackend` and no trainer.
//! - Panes, each its state and its render: [`loss`], [`agc`], [`spp`], [`hyper`], [`status`], [`events`]; [`layout`]
//!   places them for the terminal size, [`help`] draws the overlays, [`keys`] maps input, [`theme`] picks colours
//!   (honouring `NO_COLOR`), [`terminal`] owns raw mode, the panic hook and the quit signals.
//! - [`run_loop`] is the event loop: it drains the trainer's events without ever blocking the trainer, redraws at
//!   most [`FPS`] times a second and only when something changed, and forwards actions.
//!
//! **Replay** (read-only, with a step cursor): build the app with [`App::replay`], feed it the recorded events up to
//! the cursor with [`App::on_event`] (events are plain data; a `LayerStats` per statistics step), and draw it with
//! [`App::render`]. Keys that would command a trainer only log "read-only"; `←` / `→` come back from
//! [`App::on_key`] as [`Action::Seek`]`(-1 / +1)`, `q` as [`Action::Exit`]. To move the cursor back, rebuild the app
//! from the events before the new cursor (the app only folds forward); [`run_replay`] does exactly this.

pub mod agc;
pub mod app;
pub mod events;
pub mod help;
pub mod hyper;
pub mod keys;
pub mod layout;
pub mod loss;
pub mod pane;
pub mod runs;
pub mod spp;
pub mod status;
pub mod terminal;
pub mod text;
pub mod theme;
pub mod whatif;

pub use app::{Action, App, Mode, Overlay, PresetNotice};
pub use pane::PaneId;
pub use theme::Theme;

use crate::train::messages::{Command, Event, RunState};
use crossbeam::channel::{Receiver, Sender, TryRecvError};
use crossterm::event::Event as Input;
use events::Level;
use ratatui::backend::Backend;
use ratatui::Terminal;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// Frames per second at most for telemetry; the screen is redrawn only when something changed (or once a second
/// for the clocks), and at once after a key so that typing feels immediate.
pub const FPS: u32 = 10;

/// Events folded per frame at most, so that a flood of telemetry never starves the keys.
const MAX_EVENTS_PER_FRAME: usize = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// Where keys and resizes come from: the real terminal, or a script in tests.
pub trait InputSource {
    /// The next input, waiting at most `timeout`; `None` when nothing came.
    fn next(&mut self, timeout: Duration) -> std::io::Result<Option<Input>>;
}

pub use terminal::CrosstermInput;

/// A callback that sees every trainer event before the app (the run recorder); a message it returns is shown in
/// the events pane as a warning.
pub type Tap<'a> = Box<dyn FnMut(&Event) -> Option<String> + 'a>;

/// Polled once per frame for preset reloads (the watcher's events, converted with [`notice_from`]).
pub type Reloads<'a> = Box<dyn FnMut() -> Vec<PresetNotice> + 'a>;

/// The trainer's side of the loop.
pub struct Link<'a> {
    pub commands: Sender<Command>,
    /// Events that must be delivered (acknowledgements, state, errors); disconnected when the trainer has exited.
    pub events: Receiver<Event>,
    /// Telemetry (`Step`, `Layers`, `Throughput`), when the trainer sends it on a lane of its own.
    pub telemetry: Option<Receiver<Event>>,
    /// Preset reloads (none when the file is not watched).
    pub reloads: Option<Reloads<'a>>,
    /// The preset file, for `w`.
    pub preset_path: PathBuf,
    /// Sees every event before the app does (the run recorder).
    pub tap: Option<Tap<'a>>,
    /// Raised by SIGINT / SIGTERM: stop cleanly (a second one: leave at once).
    pub quit_flag: Option<&'a AtomicBool>,
    /// Raised by SIGHUP: the terminal is gone.
    pub hangup_flag: Option<&'a AtomicBool>,
}

/// Why the loop ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// The user quit and the trainer has stopped (or had already).
    Quit,
    /// The user left without waiting for the trainer (second ctrl-c / signal).
    Abandoned,
    /// The terminal is gone (SIGHUP, EOF or an I/O error on it): nothing more can be drawn or read; the trainer
    /// still runs, and the caller decides what happens to it (`run.on_hangup`).
    TerminalLost(String),
}

/// How the loop ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The trainer's last state.
    pub state: RunState,
    pub step: u64,
    pub end: End,
}

/// Run the workbench until the user quits and the trainer has stopped, or the terminal is gone. An error on the
/// terminal (drawing or reading) ends the loop as [`End::TerminalLost`]: a terminal that fails once will not come
/// back, and the run must not go down with it.
pub fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    link: &mut Link<'_>,
    input: &mut dyn InputSource,
) -> Result<Outcome, TuiError>
where
    B::Error: std::fmt::Display,
{
    let frame = Duration::from_secs(1) / FPS;
    let mut last_draw: Option<Instant> = None;
    let mut trainer_gone = false;
    let mut typed = false;
    loop {
        trainer_gone |= drain_events(app, link);
        let notices = link.reloads.as_mut().map(|poll| poll()).unwrap_or_default();
        {
            for n in notices {
                let actions = app.on_preset(n);
                if perform(app, link, actions) {
                    return Ok(outcome(app, End::Abandoned));
                }
            }
        }
        if link
            .hangup_flag
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst))
        {
            return Ok(outcome(app, End::TerminalLost("SIGHUP".into())));
        }
        if link.quit_flag.is_some_and(terminal::take) {
            let actions = app.interrupt();
            if perform(app, link, actions) {
                return Ok(outcome(app, End::Abandoned));
            }
        }
        if trainer_gone && !app.trainer_done() {
            app.on_trainer_gone();
        }
        if app.is_quitting() && (app.trainer_done() || trainer_gone) {
            if let Err(lost) = draw(terminal, app) {
                return Ok(lost_terminal(app, lost));
            }
            return Ok(outcome(app, End::Quit));
        }
        let now = Instant::now();
        let due = last_draw.is_none_or(|t| now.duration_since(t) >= frame);
        let stale = last_draw.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        if (app.is_dirty() && (due || typed)) || stale {
            if let Err(lost) = draw(terminal, app) {
                return Ok(lost_terminal(app, lost));
            }
            last_draw = Some(Instant::now());
        }
        typed = false;
        let wait = last_draw.map_or(Duration::ZERO, |t| frame.saturating_sub(t.elapsed()));
        // Wait for input at most until the next frame is due; all pending input is handled before drawing.
        let mut timeout = wait.max(Duration::from_millis(1));
        loop {
            let ev = match input.next(timeout) {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => return Ok(lost_terminal(app, TuiError::Terminal(e))),
            };
            let actions = match ev {
                Input::Key(k) => app.on_key(k),
                Input::Mouse(m) => app.on_mouse(m),
                Input::Resize(_, _) => {
                    app.mark_dirty();
                    let _ = terminal.autoresize();
                    Vec::new()
                }
                _ => Vec::new(),
            };
            if perform(app, link, actions) {
                return Ok(outcome(app, End::Abandoned));
            }
            typed = true;
            timeout = Duration::ZERO;
        }
    }
}

fn draw<B: Backend>(terminal: &mut Terminal<B>, app: &mut App) -> Result<(), TuiError>
where
    B::Error: std::fmt::Display,
{
    terminal
        .draw(|f| app.render(f))
        .map_err(|e| TuiError::Terminal(std::io::Error::other(e.to_string())))?;
    Ok(())
}

/// Fold every waiting trainer event in (control events first, then telemetry); true when the trainer has exited
/// and everything it sent has been read.
fn drain_events(app: &mut App, link: &mut Link<'_>) -> bool {
    let mut gone = false;
    let mut budget = MAX_EVENTS_PER_FRAME;
    loop {
        let ev = match link.events.try_recv() {
            Ok(ev) => ev,
            Err(e) => {
                gone |= e == TryRecvError::Disconnected;
                match link.telemetry.as_ref().map(|t| t.try_recv()) {
                    Some(Ok(ev)) => ev,
                    _ => return gone,
                }
            }
        };
        if let Some(warning) = link.tap.as_mut().and_then(|tap| tap(&ev)) {
            app.log(Level::Warn, warning);
        }
        app.on_event(ev);
        budget -= 1;
        if budget == 0 {
            return false;
        }
    }
}

/// Carry out actions; true when the loop must end now.
fn perform(app: &mut App, link: &Link<'_>, actions: Vec<Action>) -> bool {
    for a in actions {
        match a {
            Action::Send(c) => {
                if link.commands.send(c).is_err() {
                    app.log(Level::Error, "the trainer is gone; command not delivered");
                }
            }
            Action::WriteBack(preset) => {
                match crate::preset::write_back_fields(&link.preset_path, &preset) {
                    Ok(fields) if fields.is_empty() => {
                        let path = link.preset_path.display();
                        app.log(
                            Level::Info,
                            format!("{path} already has the live values in force"),
                        );
                    }
                    Ok(fields) => {
                        let path = link.preset_path.display();
                        app.log(
                            Level::Good,
                            format!("wrote {} to {path}", fields.join(", ")),
                        );
                    }
                    Err(e) => app.log(Level::Error, format!("write back failed: {e}")),
                }
            }
            Action::Exit => return true,
            Action::Seek(_) => {}
            Action::ListRuns(dir) => {
                let listed = crate::record::runs::list_runs(&dir).map_err(|e| e.to_string());
                app.show_runs(&dir, listed);
            }
            Action::LoadReference(dir) => app.load_reference(&dir),
        }
    }
    false
}

/// The workbench's view of a watcher report.
pub fn notice_from(ev: crate::preset::watch::ReloadEvent) -> PresetNotice {
    use crate::preset::watch::ReloadEvent;
    match ev {
        ReloadEvent::Changed { diff, .. } => PresetNotice::Changed {
            live: diff.live,
            restart_only: diff
                .restart_only
                .into_iter()
                .map(|c| (c.field.to_string(), c.new))
                .collect(),
        },
        ReloadEvent::Invalid { error } => PresetNotice::Invalid(error.to_string()),
        ReloadEvent::Deleted { .. } => PresetNotice::Deleted,
    }
}

fn lost_terminal(app: &App, TuiError::Terminal(e): TuiError) -> Outcome {
    outcome(app, End::TerminalLost(e.to_string()))
}

fn outcome(app: &App, end: End) -> Outcome {
    Outcome {
        state: app.status().state,
        step: app.status().step,
        end,
    }
}

/// Drive a read-only [`App`] over recorded events with a step cursor on a real terminal: the cursor moves one
/// statistics step (`LayerStats` event) per ← / →. `make_app` builds a fresh app (the preset of the run).
pub fn run_replay(make_app: &dyn Fn() -> App, recorded: &[Event]) -> Result<(), TuiError> {
    // Cursor positions: the index just after each statistics event, and the end.
    let mut stops: Vec<usize> = recorded
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Layers(_)))
        .map(|(i, _)| i + 1)
        .collect();
    stops.push(recorded.len());
    stops.dedup();
    let mut cursor = stops.len() - 1;
    let build = |upto: usize| {
        let mut app = make_app();
        for e in &recorded[..upto] {
            app.on_event(e.clone());
        }
        app
    };
    let mut app = build(stops[cursor]);
    let mut guard = terminal::TerminalGuard::enter()?;
    let mut input = CrosstermInput::start()?;
    loop {
        if app.is_dirty() {
            guard.terminal.draw(|f| app.render(f))?;
        }
        let Some(ev) = input.next(Duration::from_millis(250))? else {
            continue;
        };
        let actions = match ev {
            Input::Key(k) => app.on_key(k),
            Input::Mouse(m) => app.on_mouse(m),
            _ => {
                app.mark_dirty();
                Vec::new()
            }
        };
        for a in actions {
            match a {
                Action::Exit => return Ok(()),
                Action::Seek(d) => {
                    let next = (cursor as i64 + d).clamp(0, stops.len() as i64 - 1) as usize;
                    if next != cursor {
                        cursor = next;
                        let (focus, zoom) = (app.focus(), app.zoomed());
                        app = build(stops[cursor]);
                        app.set_focus(focus);
                        app.set_zoom(zoom);
                    }
                }
                _ => {}
            }
        }
    }
}
