//! `live.json` in a run directory: the process that is training the run right now, how it runs and where to attach.
//!
//! Written when a run starts (by `nfbench` / `nfbench tui` and `nfbench train --headless`), rewritten when the
//! workbench detaches, removed when the process ends. A file left behind by a killed process names a pid that is no
//! longer alive, which [`LiveFile::read_alive`] checks, so a stale file never makes a dead run look live.

use super::{RecordError, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file's name inside the run directory.
pub const LIVE_FILE: &str = "live.json";

/// How the training process is running the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveMode {
    /// The workbench is open on a terminal.
    Workbench,
    /// The workbench's terminal went away; training goes on without one.
    Detached,
    /// `nfbench train --headless`.
    Headless,
}

impl LiveMode {
    pub fn label(self) -> &'static str {
        match self {
            LiveMode::Workbench => "workbench",
            LiveMode::Detached => "detached",
            LiveMode::Headless => "headless",
        }
    }
}

/// The content of `live.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveFile {
    pub pid: u32,
    pub mode: LiveMode,
    /// The attach socket (absolute), when the process serves one.
    pub socket: Option<PathBuf>,
}

impl LiveFile {
    /// Write `live.json` into `run_dir` atomically (a reader never sees half a file).
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        let path = run_dir.join(LIVE_FILE);
        let tmp = run_dir.join(format!(".{LIVE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| RecordError::invalid(&path, e.to_string()))?;
        std::fs::write(&tmp, text).map_err(|e| RecordError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| RecordError::io(&path, e))
    }

    /// The run's live file, when there is one and its process is alive.
    pub fn read_alive(run_dir: &Path) -> Option<LiveFile> {
        let text = std::fs::read_to_string(run_dir.join(LIVE_FILE)).ok()?;
        let live: LiveFile = serde_json::from_str(&text).ok()?;
        pid_alive(live.pid).then_some(live)
    }

    /// Remove `live.json` (at the end of the process); a missing file is fine.
    pub fn remove(run_dir: &Path) {
        let _ = std::fs::remove_file(run_dir.join(LIVE_FILE));
    }
}

/// Whether a process with this pid exists (signal 0 checks without sending anything).
fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
