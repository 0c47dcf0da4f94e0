//! Opening a data set on disk, whatever holds its images: a format-1 file (decoded pixels, read by the pixel
//! loader), a format-2 file (JPEG bytes, [`JpegSplit`]) or a folder of JPEG files ([`FolderSplit`]). The one place
//! that tells them apart, so the trainer and `nfbench eval` never disagree about what a path means.

use super::format::{JpegSplit, Storage};
use super::{DataError, DatasetInfo, EncodedSplit, FolderSplit, Split};
use std::path::Path;
use std::sync::Arc;

/// A data set, opened and checked.
pub enum OpenedData {
    /// Decoded pixels of one size: [`Loader::train`](super::Loader::train) / [`Loader::eval`](super::Loader::eval)
    /// read the file by path.
    Pixels(DatasetInfo),
    /// JPEG bytes per image, decoded and cropped on the loader's threads
    /// ([`Loader::train_encoded`](super::Loader::train_encoded) / [`Loader::eval_encoded`](super::Loader::eval_encoded)).
    Encoded {
        info: DatasetInfo,
        train: Arc<dyn EncodedSplit>,
        val: Arc<dyn EncodedSplit>,
    },
}

impl OpenedData {
    pub fn info(&self) -> &DatasetInfo {
        match self {
            OpenedData::Pixels(info) | OpenedData::Encoded { info, .. } => info,
        }
    }
}

/// Open `path`: a directory is a folder of JPEG files (`train/<class>/*.jpg`, `val/<class>/*.jpg`), a file is an
/// nfbench data set of either format.
pub fn open_dataset(path: &Path) -> Result<OpenedData, DataError> {
    if path.is_dir() {
        let (info, train, val) = FolderSplit::open_root(path)?;
        return Ok(OpenedData::Encoded {
            info,
            train: Arc::new(train),
            val: Arc::new(val),
        });
    }
    let info = DatasetInfo::open(path)?;
    match info.storage {
        Storage::Pixels => Ok(OpenedData::Pixels(info)),
        Storage::Jpeg => Ok(OpenedData::Encoded {
            train: JpegSplit::open_shared(path, Split::Train)?,
            val: JpegSplit::open_shared(path, Split::Val)?,
            info,
        }),
    }
}
