//! The run picker's part of the App: `r` asks the loop for the listing, the picker's keys, and the reference the
//! loop loads with the loader the CLI gave.

use super::{Action, App, Overlay};
use crate::preset::Preset;
use crate::record::runs::RunSummary;
use crate::tui::events::Level;
use crate::tui::loss::Reference;
use crate::tui::runs::RunPicker;
use crossterm::event::KeyCode;
use std::path::{Path, PathBuf};

/// Loads a run directory as the comparison reference (the CLI's `tui --compare` loading); the error is the reason,
/// for the log.
pub type ReferenceLoader = Box<dyn Fn(&Path) -> Result<(Reference, Preset), String>>;

impl App {
    /// The directory the picker lists: the one holding this run, else `runs`.
    pub fn runs_dir(&self) -> PathBuf {
        self.status
            .run_dir
            .as_deref()
            .and_then(Path::parent)
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("runs"), Path::to_path_buf)
    }

    /// `r`: ask the loop to list the runs (it answers with [`App::show_runs`]).
    pub(crate) fn open_picker(&mut self) -> Vec<Action> {
        vec![Action::ListRuns(self.runs_dir())]
    }

    /// The listing of `dir` (as `list_runs` returns it) arrived: open the picker over it.
    pub fn show_runs(&mut self, dir: &Path, listed: Result<Vec<RunSummary>, String>) {
        let current = self.status.run_dir.clone();
        self.picker = RunPicker::new(dir, listed, current.as_deref());
        self.overlay = Overlay::Runs;
        self.dirty = true;
    }

    pub fn picker(&self) -> &RunPicker {
        &self.picker
    }

    pub(crate) fn picker_key(&mut self, code: KeyCode) -> Vec<Action> {
        match code {
            KeyCode::Esc | KeyCode::Char('q') | KeyCode::Char('r') => self.overlay = Overlay::None,
            KeyCode::Up => self.picker.select(-1),
            KeyCode::Down => self.picker.select(1),
            KeyCode::Enter => {
                if let Some(dir) = self.picker.chosen() {
                    let dir = dir.to_path_buf();
                    self.overlay = Overlay::None;
                    return vec![Action::LoadReference(dir)];
                }
            }
            _ => {}
        }
        Vec::new()
    }

    /// How the loop turns [`Action::LoadReference`] into a reference (set by the CLI; none in tests and replays).
    pub fn set_reference_loader(&mut self, loader: ReferenceLoader) {
        self.reference_loader = Some(loader);
    }

    /// Load `dir` as the reference with the loader, logging what happened.
    pub fn load_reference(&mut self, dir: &Path) {
        let loaded = match &self.reference_loader {
            Some(load) => load(dir),
            None => Err("this workbench cannot load references".into()),
        };
        match loaded {
            Ok((reference, preset)) => {
                self.log(Level::Good, format!("comparing with {}", dir.display()));
                self.set_reference(reference, &preset);
            }
            Err(e) => self.log(Level::Error, format!("{}: {e}", dir.display())),
        }
    }
}
