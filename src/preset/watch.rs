//! Hot reload: a notify watcher on a preset file and its `extends` chain, debounced, on its own thread.
//!
//! Editors save in different ways: in place (truncate + write), by writing a temporary file and renaming it over
//! the original (vim, VS Code), or by deleting and re-creating. Watching the *file* would lose the watch at the
//! first rename, so the watcher watches the *directories* holding the chain's files and filters their events by
//! name. Every burst of events is debounced into one reload; the reload is diffed against the last valid content.

use super::diff::{diff, PresetDiff};
use super::error::{ErrorKind, PresetError};
use super::load::load_chain;
use super::schema::Preset;
use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender};
use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Quiet time after the last relevant event before reloading: one save is often several events.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// A burst of events never postpones a reload longer than this.
const MAX_DELAY: Duration = Duration::from_secs(2);
/// An empty file is most likely mid-write (truncated, not yet written): wait this much longer for the rest.
const EMPTY_GRACE: Duration = Duration::from_millis(1000);

/// What the watcher reports after a save.
#[derive(Debug, Clone, PartialEq)]
// One event per save: the size of the variants does not matter, and `preset` stays a plain value for callers.
#[allow(clippy::large_enum_variant)]
pub enum ReloadEvent {
    /// The file (or a file it extends) changed and is valid. `diff` is against the previous valid content; it
    /// can be empty when the file comes back after being deleted or fixed after being invalid.
    Changed { preset: Preset, diff: PresetDiff },
    /// The file changed and is invalid: keep the old values and show the error (it names file, line:column, field).
    Invalid { error: PresetError },
    /// The preset file is gone (deleted, or moved away); a re-created file is reported as `Changed`.
    Deleted { path: PathBuf },
}

impl ReloadEvent {
    /// One line for the events pane and the run record, e.g. `preset reloaded: agc.lambda 0.02 → 0.01`,
    /// `preset rejected: presets/default.toml:14:9: ... (old values kept)`.
    pub fn describe(&self) -> String {
        match self {
            ReloadEvent::Changed { diff, .. } if diff.is_empty() => {
                "preset reloaded: no changes".into()
            }
            ReloadEvent::Changed { diff, .. } => format!("preset reloaded: {}", diff.summary()),
            ReloadEvent::Invalid { error } => format!("preset rejected: {error} (old values kept)"),
            ReloadEvent::Deleted { path } => {
                format!(
                    "preset deleted: {} (old values kept; watching for it to come back)",
                    path.display()
                )
            }
        }
    }
}

enum Control {
    SetBaseline(Box<Preset>),
}

/// A running watcher; dropping it stops the thread and the OS watches.
pub struct PresetWatcher {
    /// Reload events, in order.
    pub events: Receiver<ReloadEvent>,
    path: PathBuf,
    control: Option<Sender<Control>>,
    thread: Option<JoinHandle<()>>,
}

impl PresetWatcher {
    /// Load the preset at `path` as the baseline and watch it and its `extends` chain.
    pub fn spawn(path: impl AsRef<Path>) -> Result<PresetWatcher, PresetError> {
        let path = path.as_ref().to_path_buf();
        let notify_error = |e: notify::Error| {
            PresetError::in_file(
                ErrorKind::Io,
                &path,
                format!("cannot watch the preset for changes: {e}"),
            )
        };
        let (raw_tx, raw_rx) = channel::unbounded();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let _ = raw_tx.send(res);
        })
        .map_err(notify_error)?;
        // Watch before loading, so a save in between is seen rather than lost.
        let mut dirs = WatchedDirs::default();
        dirs.update(&mut watcher, std::slice::from_ref(&path))
            .map_err(notify_error)?;
        let loaded = load_chain(&path)?;
        dirs.update(&mut watcher, &loaded.files)
            .map_err(notify_error)?;

        let (events_tx, events_rx) = channel::unbounded();
        let (control_tx, control_rx) = channel::unbounded();
        let worker = Worker {
            path: path.clone(),
            watcher,
            dirs,
            raw: raw_rx,
            control: control_rx,
            events: events_tx,
            baseline: loaded.preset,
            state: State::Valid,
        };
        let thread = std::thread::Builder::new()
            .name("preset-watch".into())
            .spawn(move || worker.run())
            .map_err(|e| {
                PresetError::in_file(
                    ErrorKind::Io,
                    &path,
                    format!("cannot start the watcher: {e}"),
                )
            })?;
        Ok(PresetWatcher {
            events: events_rx,
            path: path.clone(),
            control: Some(control_tx),
            thread: Some(thread),
        })
    }

    /// The watched preset file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Make `preset` the content later reloads are diffed against (e.g. after [`super::write_back`], so the values
    /// just written are not reported back as a change).
    pub fn set_baseline(&self, preset: Preset) {
        if let Some(control) = &self.control {
            let _ = control.send(Control::SetBaseline(Box::new(preset)));
        }
    }
}

impl Drop for PresetWatcher {
    fn drop(&mut self) {
        // Closing the control channel tells the thread to stop; it drops the notify watcher on its way out.
        self.control.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The last thing reported, so repeats are not reported twice.
#[derive(PartialEq)]
enum State {
    Valid,
    Invalid(PresetError),
    Deleted,
}

/// The set of watched directories and the file paths inside them that matter.
#[derive(Default)]
struct WatchedDirs {
    dirs: Vec<PathBuf>,
    targets: Vec<PathBuf>,
}

impl WatchedDirs {
    /// Watch the directories of `files` (and of their symlink targets), unwatching ones no longer needed.
    fn update(&mut self, watcher: &mut impl Watcher, files: &[PathBuf]) -> notify::Result<()> {
        let mut targets = Vec::new();
        for file in files {
            targets.extend(absolute_in_dir(file));
            if let Ok(resolved) = std::fs::canonicalize(file) {
                targets.extend(absolute_in_dir(&resolved));
            }
        }
        let mut dirs: Vec<PathBuf> = targets
            .iter()
            .filter_map(|t| t.parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        for dir in dirs.iter().filter(|d| !self.dirs.contains(d)) {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
        }
        for dir in self.dirs.iter().filter(|d| !dirs.contains(d)) {
            let _ = watcher.unwatch(dir);
        }
        self.dirs = dirs;
        self.targets = targets;
        Ok(())
    }

    fn concerns(&self, event: &notify::Event) -> bool {
        let kind_matters = match event.kind {
            // Our own reads open and close the file: only a close after writing is a change.
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            _ => true,
        };
        kind_matters && event.paths.iter().any(|p| self.targets.contains(p))
    }
}

/// `file` as canonical-directory/name, the form inotify reports for a watched canonical directory.
fn absolute_in_dir(file: &Path) -> Option<PathBuf> {
    let name = file.file_name()?;
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(dir).ok()?.join(name))
}

struct Worker<W: Watcher> {
    path: PathBuf,
    watcher: W,
    dirs: WatchedDirs,
    raw: Receiver<notify::Result<notify::Event>>,
    control: Receiver<Control>,
    events: Sender<ReloadEvent>,
    baseline: Preset,
    state: State,
}

impl<W: Watcher> Worker<W> {
    fn run(mut self) {
        loop {
            channel::select! {
                recv(self.control) -> msg => match msg {
                    Ok(Control::SetBaseline(p)) => self.baseline = *p,
                    Err(_) => return,
                },
                recv(self.raw) -> ev => match ev {
                    Ok(Ok(event)) if self.dirs.concerns(&event) => {
                        if !self.settle() {
                            return;
                        }
                        if !self.reload() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
            }
        }
    }

    /// Wait until the relevant events stop (debounce); false when the watcher is shutting down.
    fn settle(&mut self) -> bool {
        let start = Instant::now();
        let mut deadline = start + DEBOUNCE;
        let mut grace_used = false;
        loop {
            let timeout = deadline.saturating_duration_since(Instant::now());
            match self.raw.recv_timeout(timeout) {
                Ok(Ok(event)) if self.dirs.concerns(&event) => {
                    deadline = (Instant::now() + DEBOUNCE).min(start + MAX_DELAY);
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    let empty = std::fs::metadata(&self.path).is_ok_and(|m| m.len() == 0);
                    if empty && !grace_used {
                        grace_used = true;
                        deadline = Instant::now() + EMPTY_GRACE;
                        continue;
                    }
                    return true;
                }
                Err(RecvTimeoutError::Disconnected) => return false,
            }
            if self.control.is_empty() {
                continue;
            }
            // A stop request (closed channel) or a new baseline arrived mid-burst.
            match self.control.try_recv() {
                Ok(Control::SetBaseline(p)) => self.baseline = *p,
                Err(channel::TryRecvError::Disconnected) => return false,
                Err(channel::TryRecvError::Empty) => {}
            }
        }
    }

    /// Reload and report; false when nobody listens any more.
    fn reload(&mut self) -> bool {
        if !self.path.exists() {
            if self.state == State::Deleted {
                return true;
            }
            self.state = State::Deleted;
            let path = self.path.clone();
            return self.events.send(ReloadEvent::Deleted { path }).is_ok();
        }
        match load_chain(&self.path) {
            Ok(loaded) => {
                let d = diff(&self.baseline, &loaded.preset);
                let recovered = self.state != State::Valid;
                self.state = State::Valid;
                // A chain edited to extend other files needs their directories watched too.
                let _ = self.dirs.update(&mut self.watcher, &loaded.files);
                self.baseline = loaded.preset.clone();
                if d.is_empty() && !recovered {
                    return true;
                }
                let preset = loaded.preset;
                self.events
                    .send(ReloadEvent::Changed { preset, diff: d })
                    .is_ok()
            }
            Err(error) => {
                if self.state == State::Invalid(error.clone()) {
                    return true;
                }
                self.state = State::Invalid(error.clone());
                self.events.send(ReloadEvent::Invalid { error }).is_ok()
            }
        }
    }
}
