//! The one error type of the data module. Every variant names the file it is about, so a message read out of context
//! still says which file to look at and why.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused a read or write; its message is the `source` (printed once, by the chain).
    #[error("{}: {action}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not an HDF5 file at all.
    #[error("{}: not an HDF5 file ({reason})", path.display())]
    NotHdf5 { path: PathBuf, reason: String },
    /// The HDF5 library failed (a truncated or damaged file, a missing object, a failed write).
    #[error("{}: {context}: {message}", path.display())]
    Hdf5 {
        path: PathBuf,
        context: String,
        message: String,
    },
    /// The file is readable but its content breaks the data-set layout (dtype, rank, labels, attributes).
    #[error("{}: {field}: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        field: String,
        reason: String,
    },
    /// A source file for an importer is malformed (bad header, truncated records, undecodable image).
    #[error("{}: {reason}", path.display())]
    BadSource { path: PathBuf, reason: String },
    /// A request that cannot be served with this data set or these settings.
    #[error("{what}")]
    Config { what: String },
    /// A JPEG of a data set could not be decoded (`image` names the data set and the image).
    #[error("{image}: cannot decode")]
    Decode {
        image: String,
        #[source]
        source: crate::data::decode::DecodeError,
    },
    /// The loader's worker threads are gone (they stopped after an earlier error or could not start).
    #[error("data loader stopped: {0}")]
    LoaderStopped(String),
}

impl DataError {
    pub(crate) fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }

    pub(crate) fn hdf5(path: &Path, context: impl Into<String>, err: hdf5::Error) -> Self {
        Self::Hdf5 {
            path: path.to_path_buf(),
            context: context.into(),
            message: hdf5_message(&err),
        }
    }

    pub(crate) fn invalid(
        path: &Path,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            path: path.to_path_buf(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_source(path: &Path, reason: impl Into<String>) -> Self {
        Self::BadSource {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    pub(crate) fn config(what: impl Into<String>) -> Self {
        Self::Config { what: what.into() }
    }
}

/// HDF5 error stacks repeat themselves; keep the first line, which names the failing call and its reason.
fn hdf5_message(err: &hdf5::Error) -> String {
    let text = err.to_string();
    text.lines()
        .next()
        .unwrap_or("unknown HDF5 error")
        .trim()
        .to_string()
}
