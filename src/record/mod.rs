//! Run records: run directories, the HDF5 metrics log, safetensors checkpoints, replay and reports.
//!
//! - [`run_dir`]: `runs/<preset-stem>-<YYYYmmdd-HHMMSS>/` with `preset.toml`, `metrics.h5` and `checkpoints/`.
//! - [`metrics`]: the [`Recorder`] that turns trainer [`Event`](crate::train::messages::Event)s into `metrics.h5`,
//!   and the reader that turns the file back into plain data ([`RecordedRun`]).
//! - [`checkpoint`]: atomic safetensors checkpoints (keep the last K and the best), and loading the latest.
//! - [`replay`]: rebuilding the event stream of a recorded run up to a step cursor.
//! - [`report`]: PNG pictures (plotters) and a markdown summary.
//! - [`runs`]: the runs in a directory with their final metrics.

pub mod checkpoint;
pub mod export;
pub mod live;
pub mod metrics;
pub mod relay;
pub mod replay;
pub mod report;
pub mod run_dir;
pub mod runs;
pub mod session;
pub mod trainer_checkpoint;

pub use checkpoint::{
    load_latest, save_checkpoint, CheckpointMeta, CheckpointState, LoadedCheckpoint,
};
pub use live::{LiveFile, LiveMode};
pub use metrics::{RecordedRun, Recorder};
pub use relay::{Relay, RelayReport, Subscribers};
pub use run_dir::RunDir;
pub use trainer_checkpoint::RecordCheckpointWriter;

use std::path::{Path, PathBuf};

/// Everything that can go wrong with a run record; each variant names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The operating system refused a read or write; its message is the `source` (printed once, by the chain).
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: HDF5: {message}", path.display())]
    Hdf5 { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{}: checkpoint: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    #[error("{}: drawing: {message}", path.display())]
    Plot { path: PathBuf, message: String },
}

impl RecordError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        RecordError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn hdf5(path: &Path, err: impl std::fmt::Display) -> Self {
        RecordError::Hdf5 {
            path: path.to_path_buf(),
            message: err.to_string(),
        }
    }

    pub(crate) fn invalid(path: &Path, message: impl Into<String>) -> Self {
        RecordError::Invalid {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn checkpoint(path: &Path, message: impl Into<String>) -> Self {
        RecordError::Checkpoint {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = RecordError> = std::result::Result<T, E>;
