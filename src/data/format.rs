//! The HDF5 data-set layout: one file per data set, readable with h5py.
//!
//! ```text
//! /train/images  u8  [N, H, W, C]  chunked by a few images, deflate
//! /train/labels  u32 [N]           (any integer dtype is accepted on read)
//! /val/images    u8  [M, H, W, C]
//! /val/labels    u32 [M]
//! attributes of / :
//!   format_version  u32            FORMAT_VERSION
//!   class_names     str [K]        label k is class_names[k]
//!   mean, std       f64 [C]        per-channel pixel mean and std of the train split, pixels / 255
//!   source          str            where the images came from (importer and source path)
//! ```
//!
//! [`DatasetInfo::open`] checks a file against this layout; [`DatasetWriter`] writes one, into a temporary file that
//! is renamed only when the import has finished, so a failed import never leaves a half-written data set behind.

use super::DataError;
use hdf5::types::{TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Dataset, File, Group};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The layout version written by this build; files with a newer version are refused.
pub const FORMAT_VERSION: u32 = 1;

pub const ATTR_FORMAT_VERSION: &str = "format_version";
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
    Train,
    Val,
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

/// What a data-set file holds, read and checked by [`DatasetInfo::open`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub path: PathBuf,
    pub format_version: u32,
    pub num_classes: usize,
    pub class_names: Vec<String>,
    pub train_count: usize,
    pub val_count: usize,
    pub height: usize,
    pub width: usize,
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
        let class_names = read_class_names(&file, path)?;
        let shape = check_image_shapes(&file, path)?;
        let mean = read_channel_attr(&file, path, ATTR_MEAN, shape.channels)?;
        let std = read_channel_attr(&file, path, ATTR_STD, shape.channels)?;
        if let Some(c) = std.iter().position(|s| !s.is_finite() || *s <= 0.0) {
            return Err(DataError::invalid(
                path,
                "attribute std",
                format!("channel {c} has std {} (must be positive)", std[c]),
            ));
        }
        let source = read_string_attr(&file, ATTR_SOURCE).unwrap_or_default();
        let mut counts = [0usize; 2];
        for (i, split) in Split::ALL.into_iter().enumerate() {
            let labels = read_labels(&file, path, split, class_names.len())?;
            counts[i] = labels.len();
        }
        Ok(DatasetInfo {
            path: path.to_path_buf(),
            format_version: version,
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

/// Open an HDF5 file for reading, telling "missing", "not HDF5" and "damaged/truncated" apart.
pub(crate) fn open_file(path: &Path) -> Result<File, DataError> {
    check_signature(path)?;
    File::open(path)
        .map_err(|e| DataError::hdf5(path, "cannot open as HDF5 (damaged or truncated?)", e))
}

/// Look for the HDF5 signature where the format allows it, so that a non-HDF5 file gets a plain message rather
/// than an HDF5 error stack.
fn check_signature(path: &Path) -> Result<(), DataError> {
    let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, "cannot open", e))?;
    let len = file
        .metadata()
        .map_err(|e| DataError::io(path, "cannot read metadata", e))?
        .len();
    if len == 0 {
        return Err(DataError::NotHdf5 {
            path: path.to_path_buf(),
            reason: "the file is empty".into(),
        });
    }
    let mut offset = 0u64;
    while offset + 8 <= len {
        let mut buf = [0u8; 8];
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| DataError::io(path, "cannot read", e))?;
        if buf == HDF5_SIGNATURE {
            return Ok(());
        }
        offset = if offset == 0 { 512 } else { offset * 2 };
    }
    Err(DataError::NotHdf5 {
        path: path.to_path_buf(),
        reason: "no HDF5 signature".into(),
    })
}

fn read_format_version(file: &File, path: &Path) -> Result<u32, DataError> {
    let attr = file.attr(ATTR_FORMAT_VERSION).map_err(|_| {
        DataError::invalid(
            path,
            "attribute format_version",
            "missing (not an nfbench data set?)",
        )
    })?;
    let version: i64 = attr.read_scalar().map_err(|e| {
        DataError::invalid(
            path,
            "attribute format_version",
            format!("not an integer scalar: {e}"),
        )
    })?;
    if version < 1 || version > i64::from(FORMAT_VERSION) {
        return Err(DataError::invalid(
            path,
            "attribute format_version",
            format!("version {version} is not supported (this build reads 1..={FORMAT_VERSION})"),
        ));
    }
    Ok(version as u32)
}

fn read_class_names(file: &File, path: &Path) -> Result<Vec<String>, DataError> {
    let attr = file
        .attr(ATTR_CLASS_NAMES)
        .map_err(|_| DataError::invalid(path, "attribute class_names", "missing"))?;
    let names: Vec<String> = match attr.read_raw::<VarLenUnicode>() {
        Ok(v) => v.iter().map(|s| s.as_str().to_string()).collect(),
        Err(_) => attr
            .read_raw::<VarLenAscii>()
            .map_err(|e| {
                DataError::invalid(
                    path,
                    "attribute class_names",
                    format!("not an array of strings: {e}"),
                )
            })?
            .iter()
            .map(|s| s.as_str().to_string())
            .collect(),
    };
    if names.is_empty() {
        return Err(DataError::invalid(
            path,
            "attribute class_names",
            "no classes",
        ));
    }
    Ok(names)
}

fn read_string_attr(file: &File, name: &str) -> Option<String> {
    let attr = file.attr(name).ok()?;
    attr.read_scalar::<VarLenUnicode>()
        .map(|s| s.as_str().to_string())
        .or_else(|_| {
            attr.read_scalar::<VarLenAscii>()
                .map(|s| s.as_str().to_string())
        })
        .ok()
}

fn read_channel_attr(
    file: &File,
    path: &Path,
    name: &str,
    channels: usize,
) -> Result<Vec<f32>, DataError> {
    let field = format!("attribute {name}");
    let attr = file
        .attr(name)
        .map_err(|_| DataError::invalid(path, &field, "missing"))?;
    let values: Vec<f64> = attr
        .read_raw()
        .map_err(|e| DataError::invalid(path, &field, format!("not an array of numbers: {e}")))?;
    if values.len() != channels {
        return Err(DataError::invalid(
            path,
            &field,
            format!("{} values for {channels} channels", values.len()),
        ));
    }
    Ok(values.into_iter().map(|v| v as f32).collect())
}

/// Open `/<split>/images`, checking dtype (u8) and rank (4).
pub(crate) fn open_images(
    file: &File,
    path: &Path,
    split: Split,
) -> Result<(Dataset, usize, ImageShape), DataError> {
    let name = format!("/{split}/images");
    let ds = file
        .dataset(&name)
        .map_err(|_| DataError::invalid(path, &name, "missing dataset"))?;
    let dtype = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| DataError::invalid(path, &name, format!("unreadable dtype: {e}")))?;
    if dtype != TypeDescriptor::Unsigned(hdf5::types::IntSize::U1) {
        return Err(DataError::invalid(
            path,
            &name,
            format!("dtype is {dtype:?}, expected u8"),
        ));
    }
    let shape = ds.shape();
    if shape.len() != 4 {
        return Err(DataError::invalid(
            path,
            &name,
            format!(
                "rank {} (shape {shape:?}), expected 4: [N, H, W, C]",
                shape.len()
            ),
        ));
    }
    let image = ImageShape {
        height: shape[1],
        width: shape[2],
        channels: shape[3],
    };
    if image.bytes() == 0 {
        return Err(DataError::invalid(
            path,
            &name,
            format!("shape {shape:?} has an empty image size"),
        ));
    }
    if shape[0] == 0 {
        return Err(DataError::invalid(path, &name, "empty split (0 images)"));
    }
    Ok((ds, shape[0], image))
}

fn check_image_shapes(file: &File, path: &Path) -> Result<ImageShape, DataError> {
    let (_, _, train) = open_images(file, path, Split::Train)?;
    let (_, _, val) = open_images(file, path, Split::Val)?;
    if train != val {
        return Err(DataError::invalid(
            path,
            "/val/images",
            format!(
                "image shape {}x{}x{} differs from the train split's {}x{}x{}",
                val.height, val.width, val.channels, train.height, train.width, train.channels
            ),
        ));
    }
    Ok(train)
}

/// Read a split's labels whole (they are small) and check them: integer dtype, rank 1, as many as images, each in
/// `0..num_classes`.
pub(crate) fn read_labels(
    file: &File,
    path: &Path,
    split: Split,
    num_classes: usize,
) -> Result<Vec<u32>, DataError> {
    let (_, count, _) = open_images(file, path, split)?;
    let name = format!("/{split}/labels");
    let ds = file
        .dataset(&name)
        .map_err(|_| DataError::invalid(path, &name, "missing dataset"))?;
    let dtype = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| DataError::invalid(path, &name, format!("unreadable dtype: {e}")))?;
    if !matches!(
        dtype,
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_)
    ) {
        return Err(DataError::invalid(
            path,
            &name,
            format!("dtype is {dtype:?}, expected an integer type"),
        ));
    }
    let shape = ds.shape();
    if shape.len() != 1 {
        return Err(DataError::invalid(
            path,
            &name,
            format!("rank {}, expected 1: [N]", shape.len()),
        ));
    }
    if shape[0] != count {
        return Err(DataError::invalid(
            path,
            &name,
            format!("{} labels for {count} images", shape[0]),
        ));
    }
    let raw: Vec<i64> = ds
        .read_raw()
        .map_err(|e| DataError::hdf5(path, format!("reading {name}"), e))?;
    let mut labels = Vec::with_capacity(raw.len());
    for (i, &l) in raw.iter().enumerate() {
        if l < 0 || l as u64 >= num_classes as u64 {
            return Err(DataError::invalid(
                path,
                &name,
                format!("label {l} at index {i} is out of range 0..{num_classes}"),
            ));
        }
        labels.push(l as u32);
    }
    Ok(labels)
}

/// Read the images at `indices` (any order, repeats allowed) from an `[N, H, W, C]` u8 dataset, into one HWC buffer
/// in the order of `indices`. Sorted rows are grouped into slabs (rows within one chunk, or runs of consecutive rows)
/// and each slab is one HDF5 call, all under one hold of the HDF5 lock; decoding happens outside it.
pub(crate) fn read_rows(
    ds: &Dataset,
    path: &Path,
    indices: &[usize],
    image_bytes: usize,
) -> Result<Vec<u8>, DataError> {
    let mut order: Vec<usize> = (0..indices.len()).collect();
    order.sort_unstable_by_key(|&i| indices[i]);
    let chunk_rows = ds.chunk().map(|c| c[0].max(1));
    let mut out = vec![0u8; indices.len() * image_bytes];
    hdf5::sync::sync(|| -> Result<(), DataError> {
        let mut start = 0;
        while start < order.len() {
            let first = indices[order[start]];
            let mut end = start + 1;
            while end < order.len() {
                let row = indices[order[end]];
                let consecutive = row <= indices[order[end - 1]] + 1;
                let same_chunk = chunk_rows.is_some_and(|rows| row / rows == first / rows);
                let same_group = consecutive || same_chunk;
                if !same_group {
                    break;
                }
                end += 1;
            }
            let last = indices[order[end - 1]];
            let slab: ndarray::Array4<u8> =
                ds.read_slice((first..last + 1, .., .., ..)).map_err(|e| {
                    DataError::hdf5(path, format!("reading images {first}..={last}"), e)
                })?;
            let slab = slab
                .as_slice()
                .ok_or_else(|| DataError::invalid(path, "images", "non-contiguous read"))?;
            for &o in &order[start..end] {
                let row = indices[o] - first;
                out[o * image_bytes..(o + 1) * image_bytes]
                    .copy_from_slice(&slab[row * image_bytes..(row + 1) * image_bytes]);
            }
            start = end;
        }
        Ok(())
    })?;
    Ok(out)
}

/// Running per-channel sums for the mean and std attributes (f64 sums of u8 values stay exact far past ImageNet).
#[derive(Debug, Clone)]
pub struct ChannelStats {
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    count: u64,
}

impl ChannelStats {
    pub fn new(channels: usize) -> Self {
        Self {
            sum: vec![0.0; channels],
            sum_sq: vec![0.0; channels],
            count: 0,
        }
    }

    /// Add HWC u8 pixels (any number of whole pixels).
    pub fn add(&mut self, pixels: &[u8]) {
        let c = self.sum.len();
        // Per-channel histograms keep the inner loop to an increment; the sums come from 256 bins at the end.
        let mut hist = vec![[0u64; 256]; c];
        for px in pixels.chunks_exact(c) {
            for (h, &v) in hist.iter_mut().zip(px) {
                h[v as usize] += 1;
            }
        }
        for (ch, h) in hist.iter().enumerate() {
            for (v, &n) in h.iter().enumerate() {
                let x = v as f64 / 255.0;
                self.sum[ch] += x * n as f64;
                self.sum_sq[ch] += x * x * n as f64;
            }
        }
        self.count += (pixels.len() / c) as u64;
    }

    /// Per-channel mean and (population) std on the 0..1 scale.
    pub fn mean_std(&self) -> (Vec<f64>, Vec<f64>) {
        let n = self.count.max(1) as f64;
        let mean: Vec<f64> = self.sum.iter().map(|s| s / n).collect();
        let std = self
            .sum_sq
            .iter()
            .zip(&mean)
            .map(|(sq, m)| (sq / n - m * m).max(0.0).sqrt())
            .collect();
        (mean, std)
    }
}

/// One split being written: resizable datasets appended to batch by batch.
struct SplitWriter {
    images: Dataset,
    labels: Dataset,
    len: usize,
}

/// Writes a data-set file. Create it, [`append`](Self::append) images split by split, then [`finish`](Self::finish).
/// Until `finish` succeeds the data lives in `<out>.partial`; dropping an unfinished writer deletes that file.
pub struct DatasetWriter {
    out: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
    shape: ImageShape,
    class_names: Vec<String>,
    train: SplitWriter,
    val: SplitWriter,
    stats: ChannelStats,
    finished: bool,
}

impl DatasetWriter {
    pub fn create(
        out: &Path,
        shape: ImageShape,
        class_names: Vec<String>,
    ) -> Result<Self, DataError> {
        if shape.bytes() == 0 {
            return Err(DataError::config(format!(
                "{}: empty image shape {shape:?}",
                out.display()
            )));
        }
        if class_names.is_empty() {
            return Err(DataError::config(format!("{}: no classes", out.display())));
        }
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| DataError::io(dir, "cannot create directory", e))?;
        }
        let mut tmp = out.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        let file = File::create(&tmp).map_err(|e| DataError::hdf5(&tmp, "cannot create", e))?;
        let train = create_split(&file, &tmp, Split::Train, shape)?;
        let val = create_split(&file, &tmp, Split::Val, shape)?;
        Ok(Self {
            out: out.to_path_buf(),
            tmp,
            file: Some(file),
            shape,
            class_names,
            train,
            val,
            stats: ChannelStats::new(shape.channels),
            finished: false,
        })
    }

    pub fn shape(&self) -> ImageShape {
        self.shape
    }

    pub fn len(&self, split: Split) -> usize {
        match split {
            Split::Train => self.train.len,
            Split::Val => self.val.len,
        }
    }

    /// Append images (u8 HWC, back to back) with their labels to a split.
    pub fn append(&mut self, split: Split, images: &[u8], labels: &[u32]) -> Result<(), DataError> {
        let bytes = self.shape.bytes();
        if images.len() != labels.len() * bytes {
            return Err(DataError::config(format!(
                "{}: {} image bytes for {} labels of {bytes} bytes each",
                self.out.display(),
                images.len(),
                labels.len()
            )));
        }
        if let Some(&l) = labels
            .iter()
            .find(|&&l| l as usize >= self.class_names.len())
        {
            return Err(DataError::config(format!(
                "{}: label {l} out of range 0..{}",
                self.out.display(),
                self.class_names.len()
            )));
        }
        if labels.is_empty() {
            return Ok(());
        }
        if split == Split::Train {
            self.stats.add(images);
        }
        let shape = self.shape;
        let tmp = self.tmp.clone();
        let w = match split {
            Split::Train => &mut self.train,
            Split::Val => &mut self.val,
        };
        let n = labels.len();
        let (start, end) = (w.len, w.len + n);
        let grow = |e| DataError::hdf5(&tmp, format!("growing /{split}"), e);
        w.images
            .resize((end, shape.height, shape.width, shape.channels))
            .map_err(grow)?;
        w.labels.resize(end).map_err(grow)?;
        let view =
            ndarray::ArrayView4::from_shape((n, shape.height, shape.width, shape.channels), images)
                .map_err(|e| DataError::config(format!("image buffer shape: {e}")))?;
        w.images
            .write_slice(view, (start..end, .., .., ..))
            .map_err(|e| DataError::hdf5(&tmp, format!("writing /{split}/images"), e))?;
        w.labels
            .write_slice(labels, start..end)
            .map_err(|e| DataError::hdf5(&tmp, format!("writing /{split}/labels"), e))?;
        w.len = end;
        Ok(())
    }

    /// Write the attributes, close the file and move it into place. Both splits must hold images.
    pub fn finish(mut self, source: &str) -> Result<PathBuf, DataError> {
        for split in Split::ALL {
            if self.len(split) == 0 {
                return Err(DataError::config(format!(
                    "{}: the {split} split is empty; nothing to write",
                    self.out.display()
                )));
            }
        }
        let file = self
            .file
            .take()
            .ok_or_else(|| DataError::config("data-set writer already closed"))?;
        let (mean, std) = self.stats.mean_std();
        write_attrs(&file, &self.tmp, &self.class_names, &mean, &std, source)?;
        file.flush()
            .map_err(|e| DataError::hdf5(&self.tmp, "flushing", e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.out)
            .map_err(|e| DataError::io(&self.out, "cannot move into place", e))?;
        self.finished = true;
        Ok(self.out.clone())
    }
}

impl Drop for DatasetWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.file.take();
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn create_split(
    file: &File,
    path: &Path,
    split: Split,
    shape: ImageShape,
) -> Result<SplitWriter, DataError> {
    let ctx = |e| DataError::hdf5(path, format!("creating /{split}"), e);
    // No object timestamps: importing the same source twice gives byte-identical files (a stable sha256).
    let group: Group = file
        .create_group_builder()
        .obj_track_times(false)
        .create(split.group_name())
        .map_err(ctx)?;
    let rows = shape.chunk_rows();
    let images = group
        .new_dataset::<u8>()
        .chunk((rows, shape.height, shape.width, shape.channels))
        .deflate(DEFLATE_LEVEL)
        .obj_track_times(false)
        .shape((0.., shape.height, shape.width, shape.channels))
        .create("images")
        .map_err(ctx)?;
    let labels = group
        .new_dataset::<u32>()
        .chunk(4096)
        .deflate(DEFLATE_LEVEL)
        .obj_track_times(false)
        .shape(0..)
        .create("labels")
        .map_err(ctx)?;
    Ok(SplitWriter {
        images,
        labels,
        len: 0,
    })
}

fn write_attrs(
    file: &File,
    path: &Path,
    class_names: &[String],
    mean: &[f64],
    std: &[f64],
    source: &str,
) -> Result<(), DataError> {
    let ctx = |e| DataError::hdf5(path, "writing attributes", e);
    let to_vlu = |s: &str| {
        VarLenUnicode::from_str(s)
            .map_err(|e| DataError::config(format!("string {s:?} cannot be stored: {e}")))
    };
    file.new_attr::<u32>()
        .create(ATTR_FORMAT_VERSION)
        .and_then(|a| a.write_scalar(&FORMAT_VERSION))
        .map_err(ctx)?;
    let names = class_names
        .iter()
        .map(|s| to_vlu(s))
        .collect::<Result<Vec<_>, _>>()?;
    file.new_attr_builder()
        .with_data(names.as_slice())
        .create(ATTR_CLASS_NAMES)
        .map_err(ctx)?;
    file.new_attr_builder()
        .with_data(mean)
        .create(ATTR_MEAN)
        .map_err(ctx)?;
    file.new_attr_builder()
        .with_data(std)
        .create(ATTR_STD)
        .map_err(ctx)?;
    let source = to_vlu(source)?;
    file.new_attr::<VarLenUnicode>()
        .create(ATTR_SOURCE)
        .and_then(|a| a.write_scalar(&source))
        .map_err(ctx)?;
    Ok(())
}
