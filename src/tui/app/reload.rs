//! Preset file changes folded into the workbench: live values that differ are sent, restart-only ones noted.

use super::{Action, App};
use crate::train::messages::{Command, LiveParam};
use crate::tui::events::Level;
use crate::tui::status::ReloadState;
use std::time::Instant;

/// A preset file change, as the watcher reports it (the caller converts the preset module's reload events).
#[derive(Debug, Clone, PartialEq)]
pub enum PresetNotice {
    /// The file changed and is valid: `live` are the live values it now has, `restart_only` the (key, value) of
    /// restart-only fields it now has.
    Changed {
        live: Vec<LiveParam>,
        restart_only: Vec<(String, String)>,
    },
    /// The file no longer parses or validates; the old values stay in force.
    Invalid(String),
    Deleted,
}

impl App {
    /// Fold a preset file change in; a valid change sends its live values that differ from those in force.
    pub fn on_preset(&mut self, notice: PresetNotice) -> Vec<Action> {
        self.dirty = true;
        match notice {
            PresetNotice::Changed { live, restart_only } => {
                self.on_preset_changed(live, &restart_only)
            }
            PresetNotice::Invalid(error) => {
                self.set_reload(ReloadState::Invalid);
                self.log(
                    Level::Error,
                    format!("preset rejected: {error} (old values kept)"),
                );
                Vec::new()
            }
            PresetNotice::Deleted => {
                self.set_reload(ReloadState::Deleted);
                let path = self.status.preset.display().to_string();
                self.log(
                    Level::Warn,
                    format!("preset {path} deleted (old values kept)"),
                );
                Vec::new()
            }
        }
    }

    /// The reload state in the status bar, stamped now.
    fn set_reload(&mut self, state: ReloadState) {
        self.status.reload = state;
        self.status.reload_at = Some(Instant::now());
    }

    /// A valid reload: say what differs, note the restart-only changes, and send the changed live values.
    fn on_preset_changed(
        &mut self,
        live: Vec<LiveParam>,
        restart_only: &[(String, String)],
    ) -> Vec<Action> {
        self.set_reload(ReloadState::Reloaded);
        let changed = self.changed_live(live);
        let notes = self.note_restart_only(restart_only);
        self.log_reload(&changed, &notes);
        if changed.is_empty() || self.read_only().is_some() {
            return Vec::new();
        }
        for p in &changed {
            self.hyper.mark_pending(*p);
        }
        vec![Action::Send(Command::Set {
            params: changed,
            origin: "preset reload".into(),
        })]
    }

    /// The live values of a reload that differ from those in force (or already pending).
    fn changed_live(&self, live: Vec<LiveParam>) -> Vec<LiveParam> {
        live.into_iter()
            .filter(|p| {
                let row = self.hyper.row(p.key());
                row.is_some_and(|r| r.pending.or(r.live) != Some(*p))
            })
            .collect()
    }

    /// Mark each restart-only value of a reload on its row; returns `key old → new` for those that differ.
    fn note_restart_only(&mut self, restart_only: &[(String, String)]) -> Vec<String> {
        let mut notes = Vec::new();
        for (key, value) in restart_only {
            if let Some(old) = self.hyper.value(key).filter(|v| *v != value.as_str()) {
                notes.push(format!("{key} {old} → {value}"));
            }
            self.hyper.note_restart_only(key, value);
        }
        notes
    }

    /// Log a reload: no change in force, the live changes now pending, and the restart-only ones not applied.
    fn log_reload(&mut self, changed: &[LiveParam], notes: &[String]) {
        let diff: Vec<String> = changed
            .iter()
            .map(|p| {
                let old = self.hyper.value(p.key()).unwrap_or("?");
                format!("{} {old} → {}", p.key(), p.value_string())
            })
            .collect();
        if diff.is_empty() && notes.is_empty() {
            let path = self.status.preset.display().to_string();
            self.log(
                Level::Info,
                format!("preset reloaded: {path} (no change in force)"),
            );
        }
        if !diff.is_empty() {
            self.log(
                Level::Info,
                format!("preset reloaded: {} (pending)", diff.join(", ")),
            );
        }
        if !notes.is_empty() {
            self.log(
                Level::Warn,
                format!("restart-only changes not applied: {}", notes.join(", ")),
            );
        }
    }
}
