//! The HDF5 data-set layout: one file per data set, readable with h5py.
//!
//! ```text
//! /train/images  u8  [N, H, W, C]  chunked by a few images, deflate
//! /train/labels  u32 [N]           (any integer dtype is accepted on read)
//! /val/images    u8  [M, H, W, C]
//! /val/labels    u32 [M]
//! attributes of / :
//!   format_version  u32            1 (FORMAT_VERSION_PIXELS)
//!   class_names     str [K]        label k is class_names[k]
//!   mean, std       f64 [C]        per-channel pixel mean and std of the train split, pixels / 255
//!   source          str            where the images came from (importer and source path)
//! ```
//!
//! Version 2 keeps the images as JPEG bytes instead (sizes vary per image); its layout is in [`jpeg`].
//!
//! [`DatasetInfo::open`] checks a file against this layout; [`DatasetWriter`] writes one, into a temporary file that
//! is renamed only when the import has finished, so a failed import never leaves a half-written data set behind.

//!
//! This file holds the layout itself (names, [`Split`], [`ImageShape`], [`DatasetInfo`]); `reader.rs` opens and checks
//! files and reads rows, `writer.rs` writes them.

pub mod jpeg;
mod reader;
mod writer;

pub use jpeg::{write_jpeg_dataset, JpegAttrs, JpegSplit, SplitSource, FORMAT_VERSION_JPEG};
pub(crate) use reader::{open_file, open_images, read_labels, read_rows};

/// Open a split's v1 pixel dataset `/<split>/images` (checked: u8, rank 4, non-empty): returns the image count.
/// A version 2 file is refused with a message naming its storage.
pub fn open_pixel_images(file: &hdf5::File, path: &Path, split: Split) -> Result<usize, DataError> {
    open_images(file, path, split).map(|(_, n, _)| n)
}
pub use writer::{ChannelStats, DatasetWriter};

use super::DataError;
use reader::{
    check_image_shapes, read_channel_attr, read_class_names, read_format_version, read_string_attr,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The newest layout version this build reads; files with a newer version are refused.
pub const FORMAT_VERSION: u32 = FORMAT_VERSION_JPEG;
/// The version of files holding decoded pixels, written by [`DatasetWriter`].
pub const FORMAT_VERSION_PIXELS: u32 = 1;

pub const ATTR_FORMAT_VERSION: &str = "format_version";
/// The per-split byte dataset of version 2 (here, so that the v1 reader can name it without using `jpeg`).
const JPEG_BYTES_DATASET: &str = "jpeg";
pub const ATTR_CLASS_NAMES: &str = "class_names";
pub const ATTR_MEAN: &str = "mean";
pub const ATTR_STD: &str = "std";
pub const ATTR_SOURCE: &str = "source";

/// Target size of one compressed chunk of images: small enough that a randomly indexed image costs little to
/// decompress, large enough that deflate has something to work with.
const CHUNK_TARGET_BYTES: usize = 64 * 1024;
const MAX_CHUNK_ROWS: usize = 64;
const DEFLATE_LEVEL: u8 = 4;

/// The bytes every HDF5 file starts with (at offset 0, or 512, 1024, ... when the file has a user block).
const HDF5_SIGNATURE: [u8; 8] = [0x89, b'H', b'D', b'F', b'\r', b'\n', 0x1a, b'\n'];

/// A split of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    // Explicit: `split as usize` indexes per-split arrays, train first.
    Train = 0,
    Val = 1,
}

impl Split {
    pub const ALL: [Split; 2] = [Split::Train, Split::Val];

    /// The HDF5 group holding this split.
    pub fn group_name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.group_name())
    }
}

/// Height, width and channels of every image in a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageShape {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

impl ImageShape {
    /// Bytes of one image, u8 HWC.
    pub fn bytes(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// Images per HDF5 chunk for this image size.
    pub fn chunk_rows(&self) -> usize {
        (CHUNK_TARGET_BYTES / self.bytes().max(1)).clamp(1, MAX_CHUNK_ROWS)
    }
}

/// How a file stores its images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// Format version 1: decoded u8 pixels `[N, H, W, C]`, every image the same size.
    Pixels,
    /// Format version 2: JPEG bytes per image, sizes vary (read with [`JpegSplit`]).
    Jpeg,
}

impl std::fmt::Display for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Storage::Pixels => "pixels (u8 HWC)",
            Storage::Jpeg => "jpeg",
        })
    }
}

/// What a data-set file holds, read and checked by [`DatasetInfo::open`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub path: PathBuf,
    pub format_version: u32,
    pub storage: Storage,
    pub num_classes: usize,
    pub class_names: Vec<String>,
    pub train_count: usize,
    pub val_count: usize,
    /// Pixels: every image's height and width. Jpeg: the largest stored height and width (over both splits; each
    /// image has its own size, see [`JpegSplit`]).
    pub height: usize,
    pub width: usize,
    /// Pixels: the stored channels. Jpeg: 3 (images decode to RGB).
    pub channels: usize,
    /// Per-channel mean of the train split, on the 0..1 pixel scale.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of the train split, on the 0..1 pixel scale.
    pub std: Vec<f32>,
    pub source: String,
}

impl DatasetInfo {
    /// Open a data-set file and check it against the layout: groups, dtypes, ranks, shapes, attributes, label range,
    /// non-empty splits. The images themselves are not read.
    pub fn open(path: impl AsRef<Path>) -> Result<DatasetInfo, DataError> {
        let path = path.as_ref();
        let file = open_file(path)?;
        let version = read_format_version(&file, path)?;
        if version == FORMAT_VERSION_JPEG {
            return Self::open_jpeg(&file, path);
        }
        let class_names = read_class_names(&file, path)?;
        let shape = check_image_shapes(&file, path)?;
        let mean = read_channel_attr(&file, path, ATTR_MEAN, shape.channels)?;
        let std = read_channel_attr(&file, path, ATTR_STD, shape.channels)?;
        check_std(path, &std)?;
        let source = read_string_attr(&file, ATTR_SOURCE).unwrap_or_default();
        let mut counts = [0usize; 2];
        for (i, split) in Split::ALL.into_iter().enumerate() {
            let labels = read_labels(&file, path, split, class_names.len())?;
            counts[i] = labels.len();
        }
        Ok(DatasetInfo {
            path: path.to_path_buf(),
            format_version: version,
            storage: Storage::Pixels,
            num_classes: class_names.len(),
            class_names,
            train_count: counts[0],
            val_count: counts[1],
            height: shape.height,
            width: shape.width,
            channels: shape.channels,
            mean,
            std,
            source,
        })
    }

    /// The version 2 checks: the storage attribute, each split's index, RGB mean/std.
    fn open_jpeg(file: &hdf5::File, path: &Path) -> Result<DatasetInfo, DataError> {
        let class_names = read_class_names(file, path)?;
        let layout = jpeg::JpegLayout::open(file, path, class_names.len())?;
        let channels = 3;
        let mean = read_channel_attr(file, path, ATTR_MEAN, channels)?;
        let std = read_channel_attr(file, path, ATTR_STD, channels)?;
        check_std(path, &std)?;
        let (height, width) = layout.max_size();
        let [train, val] = &layout.splits;
        Ok(DatasetInfo {
            path: path.to_path_buf(),
            format_version: FORMAT_VERSION_JPEG,
            storage: Storage::Jpeg,
            num_classes: class_names.len(),
            class_names,
            train_count: crate::data::EncodedSplit::len(train),
            val_count: crate::data::EncodedSplit::len(val),
            height,
            width,
            channels,
            mean,
            std,
            source: read_string_attr(file, ATTR_SOURCE).unwrap_or_default(),
        })
    }

    pub fn shape(&self) -> ImageShape {
        ImageShape {
            height: self.height,
            width: self.width,
            channels: self.channels,
        }
    }

    pub fn count(&self, split: Split) -> usize {
        match split {
            Split::Train => self.train_count,
            Split::Val => self.val_count,
        }
    }
}

fn check_std(path: &Path, std: &[f32]) -> Result<(), DataError> {
    if let Some(c) = std.iter().position(|s| !s.is_finite() || *s <= 0.0) {
        return Err(DataError::invalid(
            path,
            "attribute std",
            format!("channel {c} has std {} (must be positive)", std[c]),
        ));
    }
    Ok(())
}
