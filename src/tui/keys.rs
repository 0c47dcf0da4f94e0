//! Keys and mouse: what each does to the state, and which commands it sends. The help overlay lists the same keys
//! (`help::KEYS`).

use super::app::{Action, App, Mode, Overlay};
use super::events::Level;
use super::pane::PaneId;
use crate::train::messages::{Command, LiveParam, RunState};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};

/// Rows moved by PgUp / PgDn.
const PAGE: isize = 10;

impl App {
    /// Handle one key; returns what the loop must do.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Action> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        self.mark_dirty();
        let ctrl_c =
            key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl_c {
            return self.interrupt();
        }
        match self.overlay() {
            Overlay::Help => {
                self.set_overlay(Overlay::None);
                return Vec::new();
            }
            Overlay::ConfirmQuit => return self.confirm_key(key.code),
            Overlay::Runs => return self.picker_key(key.code),
            Overlay::None => {}
        }
        if self.hyper().editing.is_some() {
            return self.edit_key(key.code);
        }
        self.hyper_mut().message = None;
        match key.code {
            KeyCode::Char('?') | KeyCode::F(1) => self.set_overlay(Overlay::Help),
            // Nothing to stop in a replay, a viewer or after the run ended: leave at once.
            KeyCode::Char('q') if self.read_only().is_some() || self.trainer_done() => {
                return vec![Action::Exit]
            }
            // An attached workbench leaves the run training.
            KeyCode::Char('d') if matches!(self.mode(), Mode::Attached { .. }) => {
                return vec![Action::Exit]
            }
            KeyCode::Char('q') if !self.is_quitting() => self.set_overlay(Overlay::ConfirmQuit),
            KeyCode::Esc => self.set_zoom(false),
            KeyCode::Tab => self.set_focus(self.focus().next()),
            KeyCode::BackTab => self.set_focus(self.focus().prev()),
            KeyCode::Up => self.select(-1),
            KeyCode::Down => self.select(1),
            KeyCode::PageUp => self.select(-PAGE),
            KeyCode::PageDown => self.select(PAGE),
            KeyCode::Home => self.select(-isize::MAX / 2),
            KeyCode::End => self.select(isize::MAX / 2),
            KeyCode::Left if self.is_replay() => return vec![Action::Seek(-1)],
            KeyCode::Right if self.is_replay() => return vec![Action::Seek(1)],
            KeyCode::Char('l') => self.loss_mut().toggle_log(),
            KeyCode::Char('a') => self.loss_mut().toggle_window(),
            KeyCode::Char('s') => self.agc_mut().cycle_sort(),
            KeyCode::Char('z') => self.set_zoom(!self.zoomed()),
            KeyCode::Char(' ') => return self.pause_resume(),
            KeyCode::Char('n') => return self.step_once(),
            KeyCode::Char('c') => {
                return self.command(Command::CheckpointNow, "checkpoint requested")
            }
            KeyCode::Char('v') => {
                return self.command(Command::EvaluateNow, "evaluation requested")
            }
            KeyCode::Char('+') | KeyCode::Char('=') => return self.step_selected(true),
            KeyCode::Char('-') | KeyCode::Char('_') => return self.step_selected(false),
            KeyCode::Char('e') => return self.begin_edit(),
            KeyCode::Enter if self.focus() == PaneId::Hyper => return self.begin_edit(),
            KeyCode::Char('w') => return self.write_back(),
            KeyCode::Char('r') if !self.is_replay() => return self.open_picker(),
            _ => self.mark_clean(),
        }
        Vec::new()
    }

    /// Handle a mouse event: a click focuses the pane under it, the wheel scrolls it.
    pub fn on_mouse(&mut self, m: MouseEvent) -> Vec<Action> {
        let Some(pane) = self.last_screen().and_then(|s| s.pane_at(m.column, m.row)) else {
            return Vec::new();
        };
        match m.kind {
            MouseEventKind::Down(_) => self.set_focus(pane),
            MouseEventKind::ScrollUp => {
                self.set_focus(pane);
                self.select(-1);
            }
            MouseEventKind::ScrollDown => {
                self.set_focus(pane);
                self.select(1);
            }
            _ => return Vec::new(),
        }
        Vec::new()
    }

    /// SIGINT, SIGTERM or ctrl-c: stop cleanly after a final checkpoint; a second one leaves at once.
    pub fn interrupt(&mut self) -> Vec<Action> {
        self.mark_dirty();
        if self.read_only().is_some() || self.is_quitting() || self.trainer_done() {
            return vec![Action::Exit];
        }
        self.set_overlay(Overlay::None);
        self.start_quit()
    }

    fn start_quit(&mut self) -> Vec<Action> {
        self.begin_quitting();
        self.log(Level::Info, "stopping: final checkpoint, then quit");
        vec![Action::Send(Command::Stop { checkpoint: true })]
    }

    fn confirm_key(&mut self, code: KeyCode) -> Vec<Action> {
        match code {
            KeyCode::Char('y') | KeyCode::Char('Y') => {
                self.set_overlay(Overlay::None);
                if self.trainer_done() {
                    return vec![Action::Exit];
                }
                self.start_quit()
            }
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc | KeyCode::Char('q') => {
                self.set_overlay(Overlay::None);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// A command for the trainer, unless this is a replay or the trainer is gone.
    fn command(&mut self, c: Command, what: &str) -> Vec<Action> {
        if let Some(why) = self.read_only() {
            self.log(Level::Warn, why);
            return Vec::new();
        }
        if self.trainer_done() || self.is_quitting() {
            self.log(Level::Warn, format!("{what}: the trainer has stopped"));
            return Vec::new();
        }
        self.log(Level::Info, what);
        vec![Action::Send(c)]
    }

    fn pause_resume(&mut self) -> Vec<Action> {
        match self.status().state {
            RunState::Paused | RunState::Diverged => {
                self.command(Command::Resume, "resume requested")
            }
            _ => self.command(Command::Pause, "pause requested"),
        }
    }

    fn step_once(&mut self) -> Vec<Action> {
        if !matches!(self.status().state, RunState::Paused | RunState::Diverged) {
            self.hyper_mut().message = Some("n runs one step while paused (space pauses)".into());
            return Vec::new();
        }
        self.command(Command::StepOnce, "one step requested")
    }

    /// Send a new live value, and show it as pending until the trainer acknowledges it.
    fn set_live(&mut self, p: LiveParam) -> Vec<Action> {
        if let Some(why) = self.read_only() {
            self.log(Level::Warn, why);
            return Vec::new();
        }
        if self.trainer_done() || self.is_quitting() {
            self.log(Level::Warn, format!("{}: the trainer has stopped", p.key()));
            return Vec::new();
        }
        self.hyper_mut().mark_pending(p);
        let old = self.hyper().value(p.key()).unwrap_or("?").to_string();
        self.log(
            Level::Info,
            format!(
                "{} {old} → {} requested (pending)",
                p.key(),
                p.value_string()
            ),
        );
        vec![Action::Send(Command::Set {
            params: vec![p],
            origin: "keys".into(),
        })]
    }

    fn step_selected(&mut self, up: bool) -> Vec<Action> {
        self.set_focus(PaneId::Hyper);
        match self.hyper().stepped(up) {
            Ok(p) => self.set_live(p),
            Err(e) => {
                self.hyper_mut().message = Some(e);
                Vec::new()
            }
        }
    }

    fn begin_edit(&mut self) -> Vec<Action> {
        self.set_focus(PaneId::Hyper);
        if let Some(why) = self.read_only() {
            self.log(Level::Warn, why);
            return Vec::new();
        }
        let hyper = self.hyper_mut();
        match hyper.selected_row() {
            Some(r) if r.live.is_some() => {
                let start = r
                    .pending
                    .or(r.live)
                    .map(|p| p.value_string())
                    .unwrap_or_default();
                hyper.editing = Some(start);
            }
            Some(r) => {
                hyper.message = Some(format!("{} is restart-only", r.key));
            }
            None => {}
        }
        Vec::new()
    }

    fn edit_key(&mut self, code: KeyCode) -> Vec<Action> {
        let hyper = self.hyper_mut();
        let Some(text) = hyper.editing.as_mut() else {
            return Vec::new();
        };
        match code {
            KeyCode::Esc => hyper.editing = None,
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) if text.len() < 32 && !c.is_control() => text.push(c),
            // Step the typed value without applying it (the AGC what-if previews it).
            KeyCode::Up | KeyCode::Down => {
                hyper.message = hyper.step_typed(code == KeyCode::Up).err();
            }
            KeyCode::Enter => {
                let typed = text.clone();
                match hyper.parse_selected(&typed) {
                    Ok(p) => {
                        hyper.editing = None;
                        hyper.message = None;
                        return self.set_live(p);
                    }
                    // Stay in the editor so the user can fix the value.
                    Err(e) => hyper.message = Some(e),
                }
            }
            _ => {}
        }
        Vec::new()
    }

    fn write_back(&mut self) -> Vec<Action> {
        if let Some(why) = self.read_only() {
            self.log(Level::Warn, why);
            return Vec::new();
        }
        vec![Action::WriteBack(Box::new(self.preset().clone()))]
    }
}
