//! Opening and checking a data-set file against the layout, and reading its labels and image rows.

use super::{
    ImageShape, Split, ATTR_CLASS_NAMES, ATTR_FORMAT_VERSION, FORMAT_VERSION, HDF5_SIGNATURE,
};
use crate::data::DataError;
use hdf5::types::{TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Dataset, File};
use std::io::Read;
use std::path::Path;

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

pub(super) fn read_format_version(file: &File, path: &Path) -> Result<u32, DataError> {
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

pub(super) fn read_class_names(file: &File, path: &Path) -> Result<Vec<String>, DataError> {
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

pub(crate) fn read_string_attr(file: &File, name: &str) -> Option<String> {
    let attr = file.attr(name).ok()?;
    attr.read_scalar::<VarLenUnicode>()
        .map(|s| s.as_str().to_string())
        .or_else(|_| {
            attr.read_scalar::<VarLenAscii>()
                .map(|s| s.as_str().to_string())
        })
        .ok()
}

pub(super) fn read_channel_attr(
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

/// Open the dataset `name` (any dtype).
pub(super) fn open_dataset_any(file: &File, path: &Path, name: &str) -> Result<Dataset, DataError> {
    file.dataset(name)
        .map_err(|_| DataError::invalid(path, name, "missing dataset"))
}

/// Read a rank-1 unsigned or signed integer dataset whole as u32 (h5py users may write any integer dtype).
pub(super) fn read_u32_vec(file: &File, path: &Path, name: &str) -> Result<Vec<u32>, DataError> {
    let (ds, dtype) = open_dataset(file, path, name)?;
    if !matches!(
        dtype,
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_)
    ) || ds.shape().len() != 1
    {
        return Err(DataError::invalid(
            path,
            name,
            format!(
                "dtype {dtype:?}, rank {}: expected integers, rank 1",
                ds.shape().len()
            ),
        ));
    }
    let raw: Vec<i64> = ds
        .read_raw()
        .map_err(|e| DataError::hdf5(path, format!("reading {name}"), e))?;
    raw.iter()
        .enumerate()
        .map(|(i, &v)| {
            u32::try_from(v).map_err(|_| {
                DataError::invalid(path, name, format!("value {v} at index {i} is not a u32"))
            })
        })
        .collect()
}

/// Open the dataset `name` and read its dtype.
fn open_dataset(
    file: &File,
    path: &Path,
    name: &str,
) -> Result<(Dataset, TypeDescriptor), DataError> {
    let ds = file
        .dataset(name)
        .map_err(|_| DataError::invalid(path, name, "missing dataset"))?;
    let dtype = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| DataError::invalid(path, name, format!("unreadable dtype: {e}")))?;
    Ok((ds, dtype))
}

/// Open `/<split>/images`, checking dtype (u8) and rank (4).
pub(crate) fn open_images(
    file: &File,
    path: &Path,
    split: Split,
) -> Result<(Dataset, usize, ImageShape), DataError> {
    let name = format!("/{split}/images");
    if !file.link_exists(&name)
        && file.link_exists(&format!("/{split}/{}", super::JPEG_BYTES_DATASET))
    {
        return Err(DataError::invalid(
            path,
            &name,
            "missing: this file stores JPEG bytes (format version 2), not decoded pixels; \
             read it through the encoded (JPEG) loader",
        ));
    }
    let (ds, dtype) = open_dataset(file, path, &name)?;
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

pub(super) fn check_image_shapes(file: &File, path: &Path) -> Result<ImageShape, DataError> {
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
    let (ds, dtype) = open_dataset(file, path, &name)?;
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
