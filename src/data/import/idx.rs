//! IDX files (MNIST, Fashion-MNIST, KMNIST ...): a directory with `train-images-idx3-ubyte`,
//! `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each gzip-compressed or not (told
//! by content, not name; prefixes such as `emnist-digits-` and a `.` before `idx` are accepted). Train comes from
//! `train-*`, val from `t10k-*`; with only one of the two pairs, --val-split carves the val split out of it.
//!
//! IDX header: two zero bytes, a type byte (0x08 = u8), the number of dimensions, then each dimension as a
//! big-endian u32; then the values. Images are `[N, rows, cols]` (one channel) or `[N, rows, cols, channels]`.

use super::{
    check_val_split, progress_bar, read_file, summary, val_mask, ImportOptions, ImportSummary,
    SplitLabels,
};
use crate::data::{DataError, DatasetWriter, ImageShape, Split};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const TYPE_U8: u8 = 0x08;
/// Images per append.
const IMAGES_PER_BLOCK: usize = 4096;

/// The four files an IDX directory may hold.
#[derive(Debug, Default)]
struct IdxFiles {
    train_images: Option<PathBuf>,
    train_labels: Option<PathBuf>,
    test_images: Option<PathBuf>,
    test_labels: Option<PathBuf>,
}

/// A decoded IDX array of u8.
struct IdxArray {
    dims: Vec<usize>,
    data: Vec<u8>,
}

/// One split's images (HWC, back to back) and labels.
struct Part {
    shape: ImageShape,
    pixels: Vec<u8>,
    labels: Vec<u32>,
    source: String,
}

/// Import an IDX directory into `out`.
pub fn import_idx(
    sources: &[PathBuf],
    out: &Path,
    opts: &ImportOptions,
) -> Result<ImportSummary, DataError> {
    let started = std::time::Instant::now();
    let [dir] = sources else {
        return Err(DataError::config("idx: give exactly one source directory"));
    };
    let files = find_files(dir)?;
    let train = load_pair(
        files.train_images.as_deref(),
        files.train_labels.as_deref(),
        "train",
    )?;
    let test = load_pair(
        files.test_images.as_deref(),
        files.test_labels.as_deref(),
        "t10k",
    )?;
    let (train, val, val_from_train) = match (train, test) {
        (Some(train), Some(test)) => (train, Some(test), false),
        (Some(only), None) | (None, Some(only)) => {
            check_val_split(opts.val_split)?;
            (only, None, true)
        }
        (None, None) => {
            return Err(DataError::bad_source(
                dir,
                "no IDX files found (expected train-images-idx3-ubyte / t10k-images-idx3-ubyte and their labels, \
                 optionally .gz)",
            ))
        }
    };
    if let Some(val) = &val {
        if val.shape != train.shape {
            return Err(DataError::bad_source(
                dir,
                format!(
                    "train images are {}x{}x{} but t10k images are {}x{}x{}",
                    train.shape.height,
                    train.shape.width,
                    train.shape.channels,
                    val.shape.height,
                    val.shape.width,
                    val.shape.channels
                ),
            ));
        }
    }
    let max_label = train
        .labels
        .iter()
        .chain(val.iter().flat_map(|v| v.labels.iter()))
        .copied()
        .max()
        .unwrap_or(0);
    let num_classes = max_label as usize + 1;
    let class_names: Vec<String> = (0..num_classes).map(|k| k.to_string()).collect();
    let shape = train.shape;
    let total = train.labels.len() + val.as_ref().map_or(0, |v| v.labels.len());
    let bar = progress_bar(opts.progress, total as u64, "idx");
    let mut writer = DatasetWriter::create(out, shape, class_names.clone())?;
    let mut seen = SplitLabels::default();
    let mask = val_from_train.then(|| val_mask(&train.labels, num_classes, opts.val_split));
    write_part(
        &mut writer,
        &train,
        mask.as_deref(),
        Split::Train,
        &mut seen,
        &bar,
    )?;
    if let Some(val) = &val {
        write_part(&mut writer, val, None, Split::Val, &mut seen, &bar)?;
    }
    bar.finish_and_clear();
    let mut source = format!("nfbench data import --format idx: {}", train.source);
    if let Some(val) = &val {
        source.push_str(&format!("; {}", val.source));
    }
    writer.finish(&source)?;
    Ok(summary(
        out,
        "idx",
        shape,
        class_names,
        &seen,
        val_from_train,
        started,
    ))
}

/// Write a part to `default` split, or where `mask` says (true = val).
fn write_part(
    writer: &mut DatasetWriter,
    part: &Part,
    mask: Option<&[bool]>,
    default: Split,
    seen: &mut SplitLabels,
    bar: &indicatif::ProgressBar,
) -> Result<(), DataError> {
    let bytes = part.shape.bytes();
    for start in (0..part.labels.len()).step_by(IMAGES_PER_BLOCK) {
        let end = (start + IMAGES_PER_BLOCK).min(part.labels.len());
        let mut parts: [(Vec<u8>, Vec<u32>); 2] = Default::default();
        for i in start..end {
            let split = match mask {
                Some(m) if m[i] => Split::Val,
                Some(_) => Split::Train,
                None => default,
            };
            let p = &mut parts[split as usize];
            p.0.extend_from_slice(&part.pixels[i * bytes..(i + 1) * bytes]);
            p.1.push(part.labels[i]);
        }
        for split in Split::ALL {
            let (images, labels) = &parts[split as usize];
            writer.append(split, images, labels)?;
            seen.extend(split, labels);
        }
        bar.inc((end - start) as u64);
    }
    Ok(())
}

/// Find the four files by name: anything ending in `<split>-<kind>-idx<d>-ubyte`, with `.gz` or not.
fn find_files(dir: &Path) -> Result<IdxFiles, DataError> {
    let meta = std::fs::metadata(dir).map_err(|e| DataError::io(dir, "cannot open", e))?;
    if !meta.is_dir() {
        return Err(DataError::bad_source(
            dir,
            "idx: the source must be a directory of IDX files",
        ));
    }
    let mut files = IdxFiles::default();
    let entries =
        std::fs::read_dir(dir).map_err(|e| DataError::io(dir, "cannot list directory", e))?;
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in entries {
        paths.push(
            entry
                .map_err(|e| DataError::io(dir, "cannot list directory", e))?
                .path(),
        );
    }
    paths.sort();
    for path in paths.into_iter().filter(|p| p.is_file()) {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let name = name.strip_suffix(".gz").unwrap_or(&name).replace('.', "-");
        let slot = if name.ends_with("train-images-idx3-ubyte")
            || name.ends_with("train-images-idx4-ubyte")
        {
            &mut files.train_images
        } else if name.ends_with("train-labels-idx1-ubyte") {
            &mut files.train_labels
        } else if name.ends_with("t10k-images-idx3-ubyte")
            || name.ends_with("t10k-images-idx4-ubyte")
        {
            &mut files.test_images
        } else if name.ends_with("t10k-labels-idx1-ubyte") {
            &mut files.test_labels
        } else {
            continue;
        };
        if let Some(other) = slot {
            return Err(DataError::bad_source(
                &path,
                format!(
                    "two candidate IDX files for one role: this and {}",
                    other.display()
                ),
            ));
        }
        *slot = Some(path);
    }
    Ok(files)
}

/// Load an images/labels pair; a pair with only one half is an error naming the missing half.
fn load_pair(
    images: Option<&Path>,
    labels: Option<&Path>,
    prefix: &str,
) -> Result<Option<Part>, DataError> {
    let (images, labels) = match (images, labels) {
        (None, None) => return Ok(None),
        (Some(i), Some(l)) => (i, l),
        (Some(i), None) => {
            return Err(DataError::bad_source(
                i,
                format!("found no matching {prefix}-labels-idx1-ubyte file for these images"),
            ))
        }
        (None, Some(l)) => {
            return Err(DataError::bad_source(
                l,
                format!("found no matching {prefix}-images-idx3-ubyte file for these labels"),
            ))
        }
    };
    let img = read_idx(images)?;
    let lab = read_idx(labels)?;
    let shape = match img.dims.as_slice() {
        [_, h, w] => ImageShape {
            height: *h,
            width: *w,
            channels: 1,
        },
        [_, h, w, c] => ImageShape {
            height: *h,
            width: *w,
            channels: *c,
        },
        d => {
            return Err(DataError::bad_source(
                images,
                format!("{} dimensions; expected 3 ([N, rows, cols]) or 4", d.len()),
            ))
        }
    };
    if shape.bytes() == 0 {
        return Err(DataError::bad_source(
            images,
            format!("empty image size {:?}", img.dims),
        ));
    }
    if lab.dims.len() != 1 {
        return Err(DataError::bad_source(
            labels,
            format!("{} dimensions; expected 1 ([N])", lab.dims.len()),
        ));
    }
    let n = img.dims[0];
    if n == 0 {
        return Err(DataError::bad_source(
            images,
            "holds 0 images (empty split)",
        ));
    }
    if lab.dims[0] != n {
        return Err(DataError::bad_source(
            labels,
            format!(
                "{} labels for {n} images in {}",
                lab.dims[0],
                images.display()
            ),
        ));
    }
    Ok(Some(Part {
        shape,
        pixels: img.data,
        labels: lab.data.into_iter().map(u32::from).collect(),
        source: format!("{}, {}", images.display(), labels.display()),
    }))
}

/// Read and check one IDX file (gunzipping it when it starts with the gzip magic).
fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let raw = read_file(path)?;
    let data = if raw.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| {
                DataError::bad_source(path, format!("gzip data is damaged or truncated: {e}"))
            })?;
        out
    } else {
        raw
    };
    if data.len() < 4 {
        return Err(DataError::bad_source(
            path,
            format!("{} bytes is too short for an IDX header", data.len()),
        ));
    }
    if data[0] != 0 || data[1] != 0 {
        return Err(DataError::bad_source(
            path,
            format!("bad IDX magic {:02x?} (not an IDX file?)", &data[..4]),
        ));
    }
    if data[2] != TYPE_U8 {
        return Err(DataError::bad_source(
            path,
            format!(
                "IDX element type 0x{:02x}; only unsigned bytes (0x08) are supported",
                data[2]
            ),
        ));
    }
    let ndim = data[3] as usize;
    let header = 4 + 4 * ndim;
    if ndim == 0 || data.len() < header {
        return Err(DataError::bad_source(
            path,
            format!(
                "truncated IDX header ({ndim} dimensions, {} bytes)",
                data.len()
            ),
        ));
    }
    let dims: Vec<usize> = data[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::bad_source(path, format!("dimensions {dims:?} overflow")))?;
    let found = data.len() - header;
    if found != expected {
        let what = if found < expected {
            "truncated"
        } else {
            "trailing bytes"
        };
        return Err(DataError::bad_source(
            path,
            format!("{what}: dimensions {dims:?} need {expected} bytes of data, found {found}"),
        ));
    }
    Ok(IdxArray {
        dims,
        data: data[header..].to_vec(),
    })
}
