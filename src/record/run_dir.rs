//! The run directory: `runs/<preset-stem>-<YYYYmmdd-HHMMSS>/` (or `--run-dir`) holding the preset as used,
//! `metrics.h5` and `checkpoints/`.

use super::{RecordError, Result};
use crate::preset::Preset;
use std::path::{Path, PathBuf};

/// The preset as the run used it (after `extends` and `--set`), as TOML.
pub const PRESET_FILE: &str = "preset.toml";
/// The HDF5 metrics log (see the README's "Run records" section).
pub const METRICS_FILE: &str = "metrics.h5";
/// The safetensors checkpoints.
pub const CHECKPOINT_DIR: &str = "checkpoints";
/// Where run directories go when no `--run-dir` is given.
pub const DEFAULT_RUNS_DIR: &str = "runs";
/// The lock file a process training into the run holds (an advisory `flock`) and writes its pid into.
pub const LOCK_FILE: &str = "nfbench.lock";

/// A run's directory on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Creates the directory of a new run and writes the preset into it.
    ///
    /// `explicit` is `--run-dir`: it may exist, but must not already hold a run. Without it the directory is
    /// `runs/<preset-stem>-<YYYYmmdd-HHMMSS>` (with `-2`, `-3`, ... when two runs start in the same second).
    pub fn create(explicit: Option<&Path>, preset_path: &Path, preset: &Preset) -> Result<RunDir> {
        let root = match explicit {
            Some(dir) => {
                if dir.join(METRICS_FILE).exists() || dir.join(CHECKPOINT_DIR).exists() {
                    return Err(RecordError::invalid(
                        dir,
                        "already holds a run (use `nfbench resume` to continue it, or pick another --run-dir)",
                    ));
                }
                dir.to_path_buf()
            }
            None => unused_name(&default_path(
                Path::new(DEFAULT_RUNS_DIR),
                preset_path,
                chrono::Local::now(),
            )),
        };
        std::fs::create_dir_all(root.join(CHECKPOINT_DIR))
            .map_err(|e| RecordError::io(&root, e))?;
        let run = RunDir { root };
        run.write_preset(preset)?;
        Ok(run)
    }

    /// Opens the directory of an existing run (it must hold `preset.toml`).
    pub fn open(path: &Path) -> Result<RunDir> {
        if !path.is_dir() {
            return Err(RecordError::invalid(path, "no such run directory"));
        }
        if !path.join(PRESET_FILE).is_file() && !path.join(METRICS_FILE).is_file() {
            return Err(RecordError::invalid(
                path,
                format!("not a run directory (neither {PRESET_FILE} nor {METRICS_FILE} inside)"),
            ));
        }
        Ok(RunDir {
            root: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The directory's last component, e.g. `default-20261126-115812`.
    pub fn name(&self) -> String {
        self.root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.root.display().to_string())
    }

    pub fn metrics_path(&self) -> PathBuf {
        self.root.join(METRICS_FILE)
    }

    pub fn checkpoints_dir(&self) -> PathBuf {
        self.root.join(CHECKPOINT_DIR)
    }

    pub fn preset_path(&self) -> PathBuf {
        self.root.join(PRESET_FILE)
    }

    /// Writes the preset as used (atomically: a half-written preset would make the run unresumable).
    pub fn write_preset(&self, preset: &Preset) -> Result<()> {
        let path = self.preset_path();
        let text = toml::to_string(preset).map_err(|e| {
            RecordError::invalid(&path, format!("cannot write the preset as TOML: {e}"))
        })?;
        let header = "# The preset as this run used it (after `extends` and `--set`); live changes are in metrics.h5.\n";
        write_atomic(&path, format!("{header}{text}").as_bytes())
    }

    /// Takes the run's lock for as long as the returned [`RunLock`] lives: a second process that asks while this
    /// one holds it is refused with an error naming this process's pid. The lock is an advisory `flock`, so it
    /// ends with its holder however that ends (a SIGKILLed run leaves a lock file that no longer locks anything).
    pub fn lock(&self) -> Result<RunLock> {
        RunLock::acquire(&self.root.join(LOCK_FILE))
    }

    /// Reads the preset the run used.
    pub fn load_preset(&self) -> Result<Preset> {
        let path = self.preset_path();
        let text = std::fs::read_to_string(&path).map_err(|e| RecordError::io(&path, e))?;
        toml::from_str(&text).map_err(|e| RecordError::invalid(&path, e.to_string()))
    }
}

/// A held run-directory lock (see [`RunDir::lock`]); dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    // Held open only for its flock: closing the file releases the lock.
    _file: std::fs::File,
}

impl RunLock {
    fn acquire(path: &Path) -> Result<RunLock> {
        use std::io::{Seek, Write};
        // Not truncated on open: until the lock is ours, the pid inside belongs to the holder.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| RecordError::io(path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(RecordError::invalid(path, held_by_message(path)));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(RecordError::io(path, e)),
        }
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.flush());
        written.map_err(|e| RecordError::io(path, e))?;
        Ok(RunLock {
            path: path.to_path_buf(),
            _file: file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why a lock is refused, with the holder's pid when its lock file says it.
fn held_by_message(path: &Path) -> String {
    let pid = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok());
    let holder = match pid {
        Some(pid) => format!("process {pid}"),
        None => "another process".to_string(),
    };
    format!(
        "the run is in use by {holder} (it holds this lock file); wait for it to end, or stop it, before \
         starting another process on this run directory"
    )
}

/// `base/<preset-stem>-<YYYYmmdd-HHMMSS>`.
pub fn default_path<Tz: chrono::TimeZone>(
    base: &Path,
    preset_path: &Path,
    now: chrono::DateTime<Tz>,
) -> PathBuf
where
    Tz::Offset: std::fmt::Display,
{
    let stem = preset_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "run".into());
    base.join(format!("{stem}-{}", now.format("%Y%m%d-%H%M%S")))
}

/// `path`, or `path-2`, `path-3`, ... whichever does not exist yet.
fn unused_name(path: &Path) -> PathBuf {
    if !path.exists() {
        return path.to_path_buf();
    }
    let base = path.as_os_str().to_string_lossy().into_owned();
    (2u32..)
        .map(|i| PathBuf::from(format!("{base}-{i}")))
        .find(|p| !p.exists())
        .unwrap_or_else(|| path.to_path_buf())
}

/// Writes `bytes` to `path` through a temporary file in the same directory: write, fsync, rename, fsync the
/// directory. A crash leaves either the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(RecordError::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| RecordError::io(path, e))?;
    sync_parent(path)
}

/// The temporary sibling a file is written to before it is renamed into place.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// fsync the directory holding `path`, so a rename into it survives a power cut.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = std::fs::File::open(parent).map_err(|e| RecordError::io(parent, e))?;
    dir.sync_all().map_err(|e| RecordError::io(parent, e))
}
