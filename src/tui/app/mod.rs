//! The workbench as a pure state machine: trainer events and preset reloads are folded in with [`App::on_event`]
//! and [`App::on_preset`], keys come in through [`App::on_key`] (see `keys.rs`) and go out as [`Action`]s, and
//! [`App::render`] draws the whole screen from the state. No terminal, channel or tensor is touched here, so every
//! behaviour is testable with ratatui's `TestBackend`.

use super::agc::AgcPane;
use super::events::{EventsPane, Level};
use super::help;
use super::hyper::HyperPane;
use super::layout::{self, Screen};
use super::loss::LossPane;
use super::pane::{Ctx, PaneId};
use super::spp::SppPane;
use super::status::{ReloadState, StatusBar};
use super::theme::Theme;
use crate::preset::Preset;
use crate::train::messages::{
    Command, EvalMetrics, Event, LiveParam, RunStart, RunState, StepMetrics,
};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;
use std::path::PathBuf;

mod picker;
mod reload;

pub use picker::ReferenceLoader;
pub use reload::PresetNotice;

/// What the UI loop must do after a key or a reload.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this command to the trainer.
    Send(Command),
    /// Write the live values of this preset (the values in force) into the preset file.
    WriteBack(Box<Preset>),
    /// Leave now, without waiting for the trainer (a second ctrl-c, or quitting a replay).
    Exit,
    /// Replay only: move the step cursor by this many statistics steps (negative: back).
    Seek(i64),
    /// List the runs in this directory (`nfbench runs`' listing) and hand them to [`App::show_runs`].
    ListRuns(PathBuf),
    /// Load this run directory as the comparison reference ([`App::load_reference`]).
    LoadReference(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    ConfirmQuit,
    /// The run picker (`r`).
    Runs,
}

/// Live training, a run attached over its socket (`nfbench attach`), or a read-only replay of a recorded run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    /// Another process trains the run; `controls`: this workbench may command it (else it is a viewer).
    Attached {
        controls: bool,
    },
    Replay,
}

pub struct App {
    /// The preset in force: the one started with, plus every acknowledged live change.
    preset: Preset,
    status: StatusBar,
    loss: LossPane,
    agc: AgcPane,
    spp: SppPane,
    hyper: HyperPane,
    events: EventsPane,
    focus: PaneId,
    overlay: Overlay,
    zoom: bool,
    theme: Theme,
    mode: Mode,
    /// The user asked to quit: a stop was sent and the loop waits for the trainer to finish.
    quitting: bool,
    /// Something changed since the last frame.
    dirty: bool,
    /// The layout of the last frame, for mouse hits.
    screen: Option<Screen>,
    /// Replay: labels log lines with steps instead of the wall clock.
    step_clock: bool,
    /// The step from which step metrics carry the last acknowledged lambda.
    lambda_since: u64,
    picker: super::runs::RunPicker,
    reference_loader: Option<ReferenceLoader>,
}

impl App {
    /// A workbench for a live run of `preset` (read from `preset_path`).
    pub fn new(preset: &Preset, preset_path: PathBuf, theme: Theme) -> Self {
        Self {
            preset: preset.clone(),
            status: StatusBar::new(preset_path, preset.run.steps),
            loss: recipe_loss_pane(preset),
            agc: AgcPane::new(preset.agc.lambda, preset.agc.eps, preset.agc.enabled),
            spp: SppPane::new(preset.run.stats_every),
            hyper: HyperPane::new(preset),
            events: EventsPane::default(),
            focus: PaneId::Loss,
            overlay: Overlay::None,
            zoom: false,
            theme,
            mode: Mode::Live,
            quitting: false,
            dirty: true,
            screen: None,
            step_clock: false,
            lambda_since: 0,
            picker: Default::default(),
            reference_loader: None,
        }
    }

    /// A read-only workbench over a recorded run: feed it the recorded events up to the cursor with
    /// [`App::on_event`]; keys that would command a trainer only say so, and ← → come back as [`Action::Seek`].
    pub fn replay(preset: &Preset, label: PathBuf, theme: Theme) -> Self {
        let mut app = Self::new(preset, label, theme);
        app.mode = Mode::Replay;
        app.status.replay = true;
        app.status.reload = ReloadState::NotWatched;
        app.step_clock = true;
        app
    }

    /// `tui --compare`: overlay a reference run's curves on the loss pane and mark in the hyperparameter pane
    /// where its preset differs.
    pub fn set_reference(&mut self, reference: super::loss::Reference, preset: &Preset) {
        self.hyper.set_reference(&reference.label, preset);
        self.loss.set_reference(reference);
        self.dirty = true;
    }

    /// The preset in force.
    pub fn preset(&self) -> &Preset {
        &self.preset
    }

    pub fn status(&self) -> &StatusBar {
        &self.status
    }

    pub fn loss(&self) -> &LossPane {
        &self.loss
    }

    pub fn agc(&self) -> &AgcPane {
        &self.agc
    }

    pub fn spp(&self) -> &SppPane {
        &self.spp
    }

    pub fn hyper(&self) -> &HyperPane {
        &self.hyper
    }

    /// Mutable access to the hyperparameter pane (selecting a row).
    pub fn hyper_mut(&mut self) -> &mut HyperPane {
        &mut self.hyper
    }

    /// The loss pane, for the keys that change its view.
    pub(super) fn loss_mut(&mut self) -> &mut LossPane {
        &mut self.loss
    }

    /// The AGC pane, for the keys that sort and scroll it.
    pub(super) fn agc_mut(&mut self) -> &mut AgcPane {
        &mut self.agc
    }

    pub fn events(&self) -> &EventsPane {
        &self.events
    }

    pub fn focus(&self) -> PaneId {
        self.focus
    }

    /// Focus a pane.
    pub fn set_focus(&mut self, pane: PaneId) {
        self.focus = pane;
        self.dirty = true;
    }

    pub fn overlay(&self) -> Overlay {
        self.overlay
    }

    /// Open or close an overlay (help, the quit confirmation).
    pub(super) fn set_overlay(&mut self, overlay: Overlay) {
        self.overlay = overlay;
        self.dirty = true;
    }

    pub fn zoomed(&self) -> bool {
        self.zoom
    }

    /// Show the focused pane alone (true) or every pane.
    pub fn set_zoom(&mut self, zoom: bool) {
        self.zoom = zoom;
        self.dirty = true;
    }

    /// The user asked to quit: a stop was sent and the loop waits for the trainer to finish.
    pub fn is_quitting(&self) -> bool {
        self.quitting
    }

    /// Something changed since the last frame.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Draw the next frame even though no state changed (a resize, a redraw request).
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Nothing to redraw after all (a key that does nothing).
    pub(super) fn mark_clean(&mut self) {
        self.dirty = false;
    }

    /// The user asked to quit: from now on the loop waits for the trainer, and the status bar says so.
    pub(super) fn begin_quitting(&mut self) {
        self.quitting = true;
        self.status.stopping = true;
        self.dirty = true;
    }

    /// Move the selection of the focused pane by `delta` rows (the loss pane has none).
    pub(super) fn select(&mut self, delta: isize) {
        match self.focus {
            PaneId::Agc => self.agc.select(delta),
            PaneId::Spp => self.spp.select(delta),
            PaneId::Hyper => self.hyper.select(delta),
            PaneId::Events => self.events.select(delta),
            PaneId::Loss => {}
        }
        self.dirty = true;
    }

    /// The trainer thread ended without saying so: stopped if the user was quitting, failed otherwise.
    pub fn on_trainer_gone(&mut self) {
        self.status.state = if self.quitting {
            RunState::Stopped
        } else {
            RunState::Failed
        };
        self.log(Level::Error, "the trainer thread ended");
    }

    /// The preset file cannot be watched: say so in the status bar and the log.
    pub fn on_not_watched(&mut self, reason: impl std::fmt::Display) {
        self.status.reload = ReloadState::NotWatched;
        self.log(Level::Warn, format!("not watching the preset: {reason}"));
    }

    /// A workbench attached to a run another process trains; a viewer (`controls` false) commands nothing, and
    /// `q` leaves it at once.
    pub fn attached(preset: &Preset, preset_path: PathBuf, theme: Theme, controls: bool) -> Self {
        let mut app = Self::new(preset, preset_path, theme);
        app.mode = Mode::Attached { controls };
        app
    }

    pub fn is_replay(&self) -> bool {
        self.mode == Mode::Replay
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Why keys may not command the trainer here, when they may not.
    pub fn read_only(&self) -> Option<&'static str> {
        match self.mode {
            Mode::Replay => Some("replay is read-only"),
            Mode::Attached { controls: false } => {
                Some("read-only: another workbench holds the controls")
            }
            Mode::Live | Mode::Attached { controls: true } => None,
        }
    }

    /// Whether the trainer is done (the loop exits once this holds after a quit, or the run ends).
    pub fn trainer_done(&self) -> bool {
        matches!(
            self.status.state,
            RunState::Finished | RunState::Stopped | RunState::Failed
        )
    }

    fn now_label(&self) -> String {
        if self.step_clock {
            format!("step {:>6}", self.status.step)
        } else {
            chrono::Local::now().format("%H:%M:%S").to_string()
        }
    }

    /// Add a line to the events pane.
    pub fn log(&mut self, level: Level, text: impl Into<String>) {
        let t = self.now_label();
        self.events.push(t, level, text);
        self.dirty = true;
    }

    /// Fold one trainer event into the state.
    pub fn on_event(&mut self, ev: Event) {
        self.dirty = true;
        match ev {
            Event::Started(started) => self.on_started(started),
            Event::State { state, step } => self.on_state(state, step),
            Event::Step(m) => self.on_step(&m),
            Event::Eval(e) => self.on_eval(&e),
            Event::Layers(s) => {
                self.agc.on_layers(&s);
                self.spp.on_layers(&s);
            }
            Event::Throughput(t) => self.status.on_throughput(&t),
            Event::Memory { memory, .. } => self.status.memory = Some(memory),
            Event::Applied {
                params,
                origin,
                step,
            } => self.on_applied(params, &origin, step),
            Event::Rejected { what, reason, step } => {
                self.hyper.on_rejected(&what, &reason);
                self.log(
                    Level::Error,
                    format!("rejected at step {step}: {what}: {reason}"),
                );
            }
            Event::Checkpoint { path, step } => {
                self.log(
                    Level::Good,
                    format!("checkpoint at step {step}: {}", path.display()),
                );
            }
            Event::CheckpointFailed {
                step,
                reason,
                last_saved,
            } => {
                let resume = last_saved.map_or("no checkpoint on disk yet".to_string(), |s| {
                    format!("a resume starts from step {s}")
                });
                self.log(
                    Level::Error,
                    format!("checkpoint at step {step} failed: {reason} ({resume})"),
                );
            }
            Event::NonFinite {
                step,
                what,
                consecutive,
            } => {
                self.log(
                    Level::Error,
                    format!(
                        "non-finite {what} at step {step}, step skipped ({consecutive} in a row)"
                    ),
                );
            }
            Event::Rescued(r) => {
                self.loss.on_rescued(&r);
                self.log(super::loss::rescue_level(&r), r.describe());
            }
            Event::Warning(w) => self.log(Level::Warn, w),
            Event::Error(e) => self.log(Level::Error, e),
            Event::Finished { step } => self.on_finished(step),
        }
    }

    /// The trainer started: log what runs where, and fill the status bar.
    fn on_started(&mut self, started: RunStart) {
        let RunStart {
            model,
            device,
            precision,
            params,
            steps,
            start_step,
            run_dir,
        } = started;
        let resumed = if start_step > 0 {
            format!(", resuming at step {start_step}")
        } else {
            String::new()
        };
        self.log(
            Level::Info,
            format!("started {model} on {device} ({precision}): {params} parameters, {steps} steps{resumed}"),
        );
        if let Some(d) = &run_dir {
            self.log(Level::Info, format!("run directory {}", d.display()));
        }
        self.status.model = model;
        self.status.device = device;
        self.status.precision = precision;
        self.status.total_steps = steps;
        self.status.step = start_step;
        self.status.run_dir = run_dir;
    }

    /// A run-state change: logged, except the start of running.
    fn on_state(&mut self, state: RunState, step: u64) {
        let before = self.status.state;
        self.status.state = state;
        self.status.step = self.status.step.max(step);
        if before == state || (before == RunState::Starting && state == RunState::Running) {
            return;
        }
        let (level, what) = match state {
            RunState::Diverged => (
                Level::Error,
                "diverged: paused after repeated non-finite steps",
            ),
            RunState::Failed => (Level::Error, "trainer failed"),
            RunState::Paused => (Level::Info, "paused"),
            RunState::Running => (Level::Info, "running"),
            RunState::Stopped => (Level::Info, "stopped"),
            RunState::Finished => (Level::Good, "finished"),
            RunState::Starting => (Level::Info, "starting"),
        };
        self.log(level, format!("{what} at step {step}"));
    }

    /// A step's metrics: the status bar, the loss pane, and lambda unless the step is stale.
    fn on_step(&mut self, m: &StepMetrics) {
        if self.status.state == RunState::Starting {
            self.status.state = RunState::Running;
        }
        self.status.on_step(m);
        self.loss.on_step(m);
        // Control events overtake telemetry: a step from before the last acknowledged change is stale.
        if m.lambda.is_finite() && m.step >= self.lambda_since {
            self.agc.lambda = m.lambda;
        }
    }

    /// An evaluation: logged and drawn on the loss pane.
    fn on_eval(&mut self, e: &EvalMetrics) {
        let which = if e.ema { " (EMA)" } else { "" };
        self.log(
            Level::Info,
            format!(
                "eval at step {}{which}: top-1 {:.2}%, top-5 {:.2}%, loss {:.4} on {} images",
                e.step,
                e.top1 * 100.0,
                e.top5 * 100.0,
                e.loss,
                e.images
            ),
        );
        self.loss.on_eval(e);
    }

    /// Live changes the trainer applied: into the preset, the hyperparameter pane and the panes that show them.
    fn on_applied(&mut self, params: Vec<LiveParam>, origin: &str, step: u64) {
        for p in params {
            if matches!(p, LiveParam::AgcLambda(_)) {
                self.lambda_since = step;
            }
            let old = self.hyper.on_applied(p, step, origin);
            self.apply_to_panes(p);
            let from = old.map(|o| format!("{o} → ")).unwrap_or_default();
            self.log(
                Level::Good,
                format!(
                    "{} {from}{} applied at step {step} ({origin})",
                    p.key(),
                    p.value_string()
                ),
            );
        }
    }

    /// The trainer finished: stopped when the user quit, finished otherwise (a stop or failure stands).
    fn on_finished(&mut self, step: u64) {
        self.status.step = self.status.step.max(step);
        if !matches!(self.status.state, RunState::Stopped | RunState::Failed) {
            self.status.state = if self.quitting {
                RunState::Stopped
            } else {
                RunState::Finished
            };
        }
        self.log(Level::Good, format!("trainer finished at step {step}"));
    }

    /// Mirror an applied live value in the panes that show it.
    fn apply_to_panes(&mut self, p: LiveParam) {
        crate::preset::set_live(&mut self.preset, p);
        match p {
            LiveParam::AgcLambda(v) => self.agc.lambda = v,
            LiveParam::AgcEnabled(b) => self.agc.enabled = b,
            LiveParam::StatsEvery(n) => self.spp.every = n,
            _ => {}
        }
    }

    /// The key hints for the current mode.
    pub fn hints(&self) -> Line<'static> {
        let text = if self.hyper.editing.is_some() {
            " type a value · ↑/↓ step it · enter apply · esc cancel "
        } else if self.is_replay() {
            " ← → step cursor · tab focus · z zoom · ? help · q quit "
        } else if self.mode == (Mode::Attached { controls: false }) {
            " viewer (read-only) · tab focus · z zoom · ? help · q leave "
        } else if self.quitting {
            " stopping after a final checkpoint… (ctrl-c again: leave now) "
        } else {
            " space pause · n step · tab focus · +/- e edit · c checkpoint · ? help · q quit "
        };
        let text = if self.mode == (Mode::Attached { controls: true })
            && self.hyper.editing.is_none()
            && !self.quitting
        {
            " space pause · n step · +/- e edit · c checkpoint · ? help · d leave · q stop the run "
        } else {
            text
        };
        Line::from(Span::styled(text, self.theme.dim()))
    }

    /// The lambda being edited and not yet applied: typed in the editor (when it parses), else sent and pending.
    pub fn lambda_preview(&self) -> Option<f64> {
        let key = LiveParam::AgcLambda(0.0).key();
        let row = self.hyper.row(key)?;
        let typing = self
            .hyper
            .editing
            .as_deref()
            .filter(|_| self.hyper.selected_row().is_some_and(|r| r.key == key));
        let value = match typing {
            Some(text) => self.hyper.parse_selected(text).ok(),
            None => row.pending,
        };
        match value? {
            LiveParam::AgcLambda(v) => Some(v),
            _ => None,
        }
    }

    /// Draw the whole screen.
    pub fn render(&mut self, frame: &mut Frame) {
        self.agc.set_preview(self.lambda_preview());
        self.hyper.whatif = self.agc.whatif().map(|w| w.text());
        let area = frame.area();
        let screen = layout::screen(area, self.focus, self.zoom);
        self.status.render(frame, screen.status, self.theme);
        for (pane, rect) in &screen.panes {
            self.render_pane(frame, *pane, *rect, screen.footer.is_none());
        }
        if let Some(f) = screen.footer {
            let mut spans = self.hints().spans;
            if screen.panes.len() == 1 {
                let i = PaneId::ALL
                    .iter()
                    .position(|p| *p == self.focus)
                    .unwrap_or(0)
                    + 1;
                spans.insert(
                    0,
                    Span::styled(format!(" {i}/{} ", PaneId::ALL.len()), self.theme.header()),
                );
            }
            frame.render_widget(Paragraph::new(Line::from(spans)), f);
        }
        match self.overlay {
            Overlay::Help => help::render_help(frame, area, self.theme, self.is_replay()),
            Overlay::ConfirmQuit => help::render_quit(frame, area, self.theme),
            Overlay::Runs => self.picker.render(frame, area, self.theme),
            Overlay::None => {}
        }
        self.screen = Some(screen);
        self.dirty = false;
    }

    fn render_pane(&mut self, frame: &mut Frame, pane: PaneId, rect: Rect, hints_in_events: bool) {
        let ctx = Ctx {
            theme: self.theme,
            focused: self.focus == pane,
        };
        match pane {
            PaneId::Loss => self.loss.render(frame, rect, ctx),
            PaneId::Agc => self.agc.render(frame, rect, ctx),
            PaneId::Spp => self.spp.render(frame, rect, ctx),
            PaneId::Hyper => self.hyper.render(frame, rect, ctx),
            PaneId::Events => {
                let footer = hints_in_events.then(|| self.hints());
                self.events.render(frame, rect, ctx, footer)
            }
        }
    }

    /// The layout of the last frame (None before the first).
    pub fn last_screen(&self) -> Option<&Screen> {
        self.screen.as_ref()
    }
}

/// The loss pane told the preset's training recipe (issue 18: which augmentations, whether batches are mixed).
fn recipe_loss_pane(preset: &Preset) -> LossPane {
    let mut pane = LossPane::default();
    let a = &preset.augment;
    pane.set_recipe(a.summary(), a.mixing != crate::data::Mixing::None);
    pane
}
