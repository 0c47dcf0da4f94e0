//! What can go wrong with weights, naming the file and the tensor.

use crate::model::ModelError;
use std::path::{Path, PathBuf};

/// at fault.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a readable {what}: {source}", path.display())]
    Format {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error("{}: tensor `{name}`: {reason}", file.display())]
    Tensor {
        file: PathBuf,
        name: String,
        reason: String,
    },
    #[error("{}: {} tensor(s) do not fit `{model}`:\n  {}", file.display(), problems.len(), problems.join("\n  "))]
    Mismatch {
        file: PathBuf,
        model: String,
        problems: Vec<String>,
    },
    #[error("{}: {source}", file.display())]
    Model {
        file: PathBuf,
        #[source]
        source: ModelError,
    },
    #[error("{}: {source}", file.display())]
    Candle {
        file: PathBuf,
        #[source]
        source: candle_core::Error,
    },
}

impl WeightsError {
    pub(super) fn io(path: &Path, source: std::io::Error) -> Self {
        WeightsError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(super) fn format(
        path: &Path,
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        WeightsError::Format {
            path: path.to_path_buf(),
            what,
            source: Box::new(source),
        }
    }

    pub(super) fn file(path: &Path, reason: impl Into<String>) -> Self {
        WeightsError::File {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    pub(super) fn tensor(path: &Path, name: &str, reason: impl Into<String>) -> Self {
        WeightsError::Tensor {
            file: path.to_path_buf(),
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}
