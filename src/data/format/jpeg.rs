//! Format version 2: each split's images kept as JPEG bytes, concatenated into one contiguous, unfiltered u8 dataset.
//!
//! ```text
//! /<split>/jpeg     u8  [B]      contiguous (no chunks, no filters): image i is jpeg[offsets[i]..offsets[i+1]]
//! /<split>/offsets  u64 [N+1]    offsets[0] = 0, non-decreasing, offsets[N] = B
//! /<split>/labels   u32 [N]
//! /<split>/heights  u32 [N]      the stored (encoded) image's size in pixels
//! /<split>/widths   u32 [N]
//! attributes of / : as version 1 (format_version = 2, class_names, mean, std, source) plus
//!   storage         str          "jpeg"
//!   class_folders   str [K]      (optional) the source folder (e.g. WordNet id) of each class
//! ```
//!
//! Because `jpeg` is contiguous and unfiltered, its bytes sit in the file verbatim from one address on. A reader asks
//! HDF5 for that address once (`H5Dget_offset`) and then serves every image with a positioned read on its own file
//! handle: no HDF5 call (hence no HDF5 global lock) per image, so decode threads scale.

use super::reader::{open_dataset_any, read_u32_vec};
use super::{Split, ATTR_FORMAT_VERSION, ATTR_SOURCE};
use super::{ATTR_CLASS_NAMES, ATTR_MEAN, ATTR_STD};
use crate::data::{DataError, EncodedMeta, EncodedSplit};
use hdf5::dataset::{AllocTime, FillTime, Layout};
use hdf5::types::VarLenUnicode;
use hdf5::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// The format version of JPEG-byte files.
pub const FORMAT_VERSION_JPEG: u32 = 2;
pub const ATTR_STORAGE: &str = "storage";
pub const ATTR_CLASS_FOLDERS: &str = "class_folders";
/// The value of the `storage` attribute in a version 2 file.
pub const STORAGE_JPEG: &str = "jpeg";

pub const DS_JPEG: &str = super::JPEG_BYTES_DATASET;
pub const DS_OFFSETS: &str = "offsets";
pub const DS_LABELS: &str = "labels";
pub const DS_HEIGHTS: &str = "heights";
pub const DS_WIDTHS: &str = "widths";

/// Bytes copied into the HDF5 byte dataset per write call while building a file (bounds the writer's memory).
const COPY_BLOCK_BYTES: usize = 16 << 20;

/// The attributes of a JPEG-byte file.
#[derive(Debug, Clone, PartialEq)]
pub struct JpegAttrs {
    pub class_names: Vec<String>,
    /// The source folder of each class (e.g. its WordNet id), when it differs from the class name.
    pub class_folders: Option<Vec<String>>,
    /// Per-channel (RGB) mean and std of the decoded train pixels (or a sample of them), on the 0..1 scale.
    pub mean: [f64; 3],
    pub std: [f64; 3],
    pub source: String,
}

/// One split to write: its images (read through [`EncodedSplit`]) and the total of their byte lengths, which the
/// contiguous byte dataset needs before the first write (it cannot grow).
pub struct SplitSource<'a> {
    pub images: &'a dyn EncodedSplit,
    pub total_bytes: u64,
}

impl<'a> SplitSource<'a> {
    /// Reads every image once to sum the byte lengths: for small, in-memory splits.
    pub fn measured(images: &'a dyn EncodedSplit) -> Result<Self, DataError> {
        let mut buf = Vec::new();
        let mut total = 0u64;
        for i in 0..images.len() {
            images.read_into(i, &mut buf)?;
            total += buf.len() as u64;
        }
        Ok(Self {
            images,
            total_bytes: total,
        })
    }
}

/// Write a version 2 file to `out` (through `<out>.partial`, renamed into place when complete). The file is
/// deterministic: the same images and attributes give the same bytes (no object timestamps).
pub fn write_jpeg_dataset(
    out: &Path,
    attrs: &JpegAttrs,
    train: SplitSource<'_>,
    val: SplitSource<'_>,
) -> Result<PathBuf, DataError> {
    check_attrs(out, attrs)?;
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let result = write_file(&tmp, attrs, [train, val]);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, out).map_err(|e| DataError::io(out, "cannot move into place", e))?;
    Ok(out.to_path_buf())
}

fn check_attrs(out: &Path, attrs: &JpegAttrs) -> Result<(), DataError> {
    if attrs.class_names.is_empty() {
        return Err(DataError::config(format!("{}: no classes", out.display())));
    }
    if let Some(folders) = &attrs.class_folders {
        if folders.len() != attrs.class_names.len() {
            return Err(DataError::config(format!(
                "{}: {} class folders for {} classes",
                out.display(),
                folders.len(),
                attrs.class_names.len()
            )));
        }
    }
    Ok(())
}

fn write_file(
    path: &Path,
    attrs: &JpegAttrs,
    splits: [SplitSource<'_>; 2],
) -> Result<(), DataError> {
    let file = File::create(path).map_err(|e| DataError::hdf5(path, "cannot create", e))?;
    for (split, source) in Split::ALL.into_iter().zip(splits) {
        write_split(&file, path, split, &source, attrs.class_names.len())?;
    }
    write_attrs(&file, path, attrs)?;
    file.flush()
        .map_err(|e| DataError::hdf5(path, "flushing", e))?;
    drop(file);
    // The rename must not overtake the data on a crash.
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| DataError::io(path, "cannot sync", e))
}

fn write_split(
    file: &File,
    path: &Path,
    split: Split,
    source: &SplitSource<'_>,
    num_classes: usize,
) -> Result<(), DataError> {
    let images = source.images;
    let n = images.len();
    if n == 0 {
        return Err(DataError::config(format!(
            "{}: the {split} split is empty; nothing to write",
            path.display()
        )));
    }
    let ctx = |e| DataError::hdf5(path, format!("writing /{split}"), e);
    let group = file
        .create_group_builder()
        .obj_track_times(false)
        .create(split.group_name())
        .map_err(ctx)?;
    let bytes = group
        .new_dataset::<u8>()
        .no_chunk()
        .alloc_time(Some(AllocTime::Early))
        .fill_time(FillTime::Never)
        .obj_track_times(false)
        .shape(source.total_bytes as usize)
        .create(DS_JPEG)
        .map_err(ctx)?;
    let mut offsets = Vec::with_capacity(n + 1);
    let (mut labels, mut heights, mut widths) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut block: Vec<u8> = Vec::with_capacity(COPY_BLOCK_BYTES);
    let mut image = Vec::new();
    let mut written = 0u64;
    offsets.push(0u64);
    for i in 0..n {
        let meta = images.meta(i);
        if meta.label as usize >= num_classes {
            return Err(DataError::config(format!(
                "{}: {split} image {i} has label {} out of range 0..{num_classes}",
                path.display(),
                meta.label
            )));
        }
        images.read_into(i, &mut image)?;
        let end = written + (block.len() + image.len()) as u64;
        if end > source.total_bytes {
            return Err(too_many_bytes(path, split, source.total_bytes));
        }
        block.extend_from_slice(&image);
        offsets.push(end);
        labels.push(meta.label);
        heights.push(meta.height);
        widths.push(meta.width);
        if block.len() >= COPY_BLOCK_BYTES {
            write_block(&bytes, path, split, written, &block)?;
            written += block.len() as u64;
            block.clear();
        }
    }
    write_block(&bytes, path, split, written, &block)?;
    written += block.len() as u64;
    if written != source.total_bytes {
        return Err(DataError::config(format!(
            "{}: the {split} images hold {written} bytes, {} were announced",
            path.display(),
            source.total_bytes
        )));
    }
    write_vec(&group, path, split, DS_OFFSETS, &offsets)?;
    write_vec(&group, path, split, DS_LABELS, &labels)?;
    write_vec(&group, path, split, DS_HEIGHTS, &heights)?;
    write_vec(&group, path, split, DS_WIDTHS, &widths)?;
    Ok(())
}

fn too_many_bytes(path: &Path, split: Split, announced: u64) -> DataError {
    DataError::config(format!(
        "{}: the {split} images hold more than the {announced} bytes announced",
        path.display()
    ))
}

fn write_block(
    ds: &hdf5::Dataset,
    path: &Path,
    split: Split,
    start: u64,
    block: &[u8],
) -> Result<(), DataError> {
    if block.is_empty() {
        return Ok(());
    }
    let (a, b) = (start as usize, start as usize + block.len());
    ds.write_slice(block, a..b)
        .map_err(|e| DataError::hdf5(path, format!("writing /{split}/{DS_JPEG} {a}..{b}"), e))
}

fn write_vec<T: hdf5::H5Type>(
    group: &hdf5::Group,
    path: &Path,
    split: Split,
    name: &str,
    data: &[T],
) -> Result<(), DataError> {
    group
        .new_dataset_builder()
        .obj_track_times(false)
        .with_data(data)
        .create(name)
        .map(|_| ())
        .map_err(|e| DataError::hdf5(path, format!("writing /{split}/{name}"), e))
}

fn write_attrs(file: &File, path: &Path, attrs: &JpegAttrs) -> Result<(), DataError> {
    let ctx = |e| DataError::hdf5(path, "writing attributes", e);
    let to_vlu = |s: &str| {
        VarLenUnicode::from_str(s)
            .map_err(|e| DataError::config(format!("string {s:?} cannot be stored: {e}")))
    };
    let strings = |v: &[String]| v.iter().map(|s| to_vlu(s)).collect::<Result<Vec<_>, _>>();
    file.new_attr::<u32>()
        .create(ATTR_FORMAT_VERSION)
        .and_then(|a| a.write_scalar(&FORMAT_VERSION_JPEG))
        .map_err(ctx)?;
    let storage = to_vlu(STORAGE_JPEG)?;
    file.new_attr::<VarLenUnicode>()
        .create(ATTR_STORAGE)
        .and_then(|a| a.write_scalar(&storage))
        .map_err(ctx)?;
    file.new_attr_builder()
        .with_data(strings(&attrs.class_names)?.as_slice())
        .create(ATTR_CLASS_NAMES)
        .map_err(ctx)?;
    if let Some(folders) = &attrs.class_folders {
        file.new_attr_builder()
            .with_data(strings(folders)?.as_slice())
            .create(ATTR_CLASS_FOLDERS)
            .map_err(ctx)?;
    }
    file.new_attr_builder()
        .with_data(attrs.mean.as_slice())
        .create(ATTR_MEAN)
        .map_err(ctx)?;
    file.new_attr_builder()
        .with_data(attrs.std.as_slice())
        .create(ATTR_STD)
        .map_err(ctx)?;
    let source = to_vlu(&attrs.source)?;
    file.new_attr::<VarLenUnicode>()
        .create(ATTR_SOURCE)
        .and_then(|a| a.write_scalar(&source))
        .map_err(ctx)?;
    Ok(())
}

/// One split of a version 2 file, open for reading: the index (offsets, labels, sizes) in memory and a plain file
/// handle for the bytes. Implements [`EncodedSplit`]; `read_into` is one `pread`, safe from any number of threads.
#[derive(Debug)]
pub struct JpegSplit {
    path: PathBuf,
    file: std::fs::File,
    /// File address of `jpeg[0]`.
    base: u64,
    offsets: Vec<u64>,
    labels: Vec<u32>,
    heights: Vec<u32>,
    widths: Vec<u32>,
}

impl JpegSplit {
    /// Open `split` of the version 2 file at `path` and check its index (lengths, offsets, labels, sizes).
    pub fn open(path: impl AsRef<Path>, split: Split) -> Result<Self, DataError> {
        let path = path.as_ref();
        let file = super::open_file(path)?;
        let num_classes = super::reader::read_class_names(&file, path)?.len();
        Self::from_file(&file, path, split, num_classes)
    }

    /// [`open`](Self::open) as the shared handle the loader takes.
    pub fn open_shared(
        path: impl AsRef<Path>,
        split: Split,
    ) -> Result<Arc<dyn EncodedSplit>, DataError> {
        Ok(Arc::new(Self::open(path, split)?))
    }

    pub(crate) fn from_file(
        file: &File,
        path: &Path,
        split: Split,
        num_classes: usize,
    ) -> Result<Self, DataError> {
        let name = |ds: &str| format!("/{split}/{ds}");
        let bytes = open_dataset_any(file, path, &name(DS_JPEG))?;
        let total = check_byte_dataset(&bytes, path, &name(DS_JPEG))?;
        let offsets: Vec<u64> = open_dataset_any(file, path, &name(DS_OFFSETS))?
            .read_raw()
            .map_err(|e| DataError::hdf5(path, format!("reading {}", name(DS_OFFSETS)), e))?;
        let labels = read_u32_vec(file, path, &name(DS_LABELS))?;
        let heights = read_u32_vec(file, path, &name(DS_HEIGHTS))?;
        let widths = read_u32_vec(file, path, &name(DS_WIDTHS))?;
        check_index(path, split, total, &offsets, &labels, num_classes)?;
        for (ds, v) in [(DS_HEIGHTS, &heights), (DS_WIDTHS, &widths)] {
            if v.len() != labels.len() {
                return Err(DataError::invalid(
                    path,
                    name(ds),
                    format!("{} values for {} images", v.len(), labels.len()),
                ));
            }
            if let Some(i) = v.iter().position(|&x| x == 0) {
                return Err(DataError::invalid(
                    path,
                    name(ds),
                    format!("image {i} has size 0"),
                ));
            }
        }
        let base = match (total, bytes.offset()) {
            (0, _) => 0,
            (_, Some(addr)) => addr,
            (_, None) => {
                return Err(DataError::invalid(
                    path,
                    name(DS_JPEG),
                    "has no file address (not allocated)",
                ))
            }
        };
        let handle =
            std::fs::File::open(path).map_err(|e| DataError::io(path, "cannot open", e))?;
        let split = Self {
            path: path.to_path_buf(),
            file: handle,
            base,
            offsets,
            labels,
            heights,
            widths,
        };
        split.check_address(&bytes)?;
        Ok(split)
    }

    /// The positioned reads trust H5Dget_offset; compare their first bytes with what HDF5 itself reads once.
    fn check_address(&self, bytes: &hdf5::Dataset) -> Result<(), DataError> {
        let total = *self.offsets.last().unwrap_or(&0) as usize;
        let n = total.min(64);
        if n == 0 {
            return Ok(());
        }
        let via_hdf5: Vec<u8> = bytes
            .read_slice_1d(0..n)
            .map_err(|e| DataError::hdf5(&self.path, "reading the JPEG bytes", e))?
            .to_vec();
        let mut direct = vec![0u8; n];
        self.file
            .read_exact_at(&mut direct, self.base)
            .map_err(|e| DataError::io(&self.path, "cannot read the JPEG bytes", e))?;
        if direct != via_hdf5 {
            return Err(DataError::invalid(
                &self.path,
                DS_JPEG,
                "the bytes at the dataset's file address differ from HDF5's reading",
            ));
        }
        Ok(())
    }

    /// Byte length of image `index`.
    pub fn byte_len(&self, index: usize) -> usize {
        (self.offsets[index + 1] - self.offsets[index]) as usize
    }

    /// Total bytes of the split's images.
    pub fn total_bytes(&self) -> u64 {
        *self.offsets.last().unwrap_or(&0)
    }

    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    pub fn heights(&self) -> &[u32] {
        &self.heights
    }

    pub fn widths(&self) -> &[u32] {
        &self.widths
    }
}

/// The byte dataset must be u8, rank 1, contiguous and unfiltered (else its bytes are not in the file verbatim).
fn check_byte_dataset(ds: &hdf5::Dataset, path: &Path, name: &str) -> Result<u64, DataError> {
    let dtype = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| DataError::invalid(path, name, format!("unreadable dtype: {e}")))?;
    if dtype != hdf5::types::TypeDescriptor::Unsigned(hdf5::types::IntSize::U1) {
        return Err(DataError::invalid(
            path,
            name,
            format!("dtype is {dtype:?}, expected u8"),
        ));
    }
    let shape = ds.shape();
    if shape.len() != 1 {
        return Err(DataError::invalid(
            path,
            name,
            format!("rank {}, expected 1", shape.len()),
        ));
    }
    if ds.layout() != Layout::Contiguous || !ds.filters().is_empty() {
        return Err(DataError::invalid(
            path,
            name,
            "must be contiguous without filters (chunked or compressed bytes cannot be read in place)",
        ));
    }
    Ok(shape[0] as u64)
}

fn check_index(
    path: &Path,
    split: Split,
    total: u64,
    offsets: &[u64],
    labels: &[u32],
    num_classes: usize,
) -> Result<(), DataError> {
    let field = format!("/{split}/{DS_OFFSETS}");
    if labels.is_empty() {
        return Err(DataError::invalid(
            path,
            format!("/{split}/{DS_LABELS}"),
            "empty split (0 images)",
        ));
    }
    if offsets.len() != labels.len() + 1 {
        return Err(DataError::invalid(
            path,
            field,
            format!(
                "{} offsets for {} images (expected N+1)",
                offsets.len(),
                labels.len()
            ),
        ));
    }
    if offsets[0] != 0 || offsets.last() != Some(&total) {
        return Err(DataError::invalid(
            path,
            field,
            format!("must run from 0 to the {total} bytes of /{split}/{DS_JPEG}"),
        ));
    }
    if let Some(i) = offsets.windows(2).position(|w| w[1] < w[0]) {
        return Err(DataError::invalid(
            path,
            field,
            format!("decrease at image {i}"),
        ));
    }
    if let Some(i) = labels.iter().position(|&l| l as usize >= num_classes) {
        return Err(DataError::invalid(
            path,
            format!("/{split}/{DS_LABELS}"),
            format!(
                "label {} at index {i} is out of range 0..{num_classes}",
                labels[i]
            ),
        ));
    }
    Ok(())
}

impl EncodedSplit for JpegSplit {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn meta(&self, index: usize) -> EncodedMeta {
        EncodedMeta {
            label: self.labels[index],
            height: self.heights[index],
            width: self.widths[index],
        }
    }

    fn read_into(&self, index: usize, buf: &mut Vec<u8>) -> Result<(), DataError> {
        if index >= self.len() {
            return Err(DataError::config(format!(
                "{}: image {index} requested from a split of {}",
                self.path.display(),
                self.len()
            )));
        }
        buf.clear();
        buf.resize(self.byte_len(index), 0);
        self.file
            .read_exact_at(buf, self.base + self.offsets[index])
            .map_err(|e| DataError::io(&self.path, "cannot read JPEG bytes", e))
    }
}

/// The v2-specific part of [`DatasetInfo`](super::DatasetInfo): both splits opened (their index checked).
pub(crate) struct JpegLayout {
    pub splits: [JpegSplit; 2],
}

impl JpegLayout {
    pub(crate) fn open(file: &File, path: &Path, num_classes: usize) -> Result<Self, DataError> {
        let storage = super::reader::read_string_attr(file, ATTR_STORAGE);
        if storage.as_deref() != Some(STORAGE_JPEG) {
            return Err(DataError::invalid(
                path,
                format!("attribute {ATTR_STORAGE}"),
                format!("{storage:?}, expected \"{STORAGE_JPEG}\" in a format version 2 file"),
            ));
        }
        Ok(Self {
            splits: [
                JpegSplit::from_file(file, path, Split::Train, num_classes)?,
                JpegSplit::from_file(file, path, Split::Val, num_classes)?,
            ],
        })
    }

    /// The largest stored height and width over both splits.
    pub(crate) fn max_size(&self) -> (usize, usize) {
        let max = |f: fn(&JpegSplit) -> &[u32]| {
            self.splits
                .iter()
                .flat_map(|s| f(s).iter().copied())
                .max()
                .unwrap_or(0) as usize
        };
        (max(JpegSplit::heights), max(JpegSplit::widths))
    }
}
