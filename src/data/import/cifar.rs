//! CIFAR-10 "binary version" records: 1 label byte, then 1024 red, 1024 green, 1024 blue bytes (32 x 32, row-major).
//! Any number of records per file; files whose name starts with `test` form the validation split, the others the
//! training split. Class names come from `batches.meta.txt` next to the files when there is one.

use super::{
    check_val_split, progress_bar, read_file, summary, val_mask, ImportOptions, ImportSummary,
    SplitLabels,
};
use crate::data::{DataError, DatasetWriter, ImageShape, Split};
use std::path::{Path, PathBuf};

const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;
pub const RECORD_BYTES: usize = 1 + 3 * PLANE;
const META_FILE: &str = "batches.meta.txt";

/// The CIFAR-10 classes in label order, used when no `batches.meta.txt` is found.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Records converted per append: bounds memory for large files.
const RECORDS_PER_BLOCK: usize = 2048;

/// Import CIFAR binary files (or every `*.bin` in a directory) into `out`.
pub fn import_cifar_bin(
    sources: &[PathBuf],
    out: &Path,
    opts: &ImportOptions,
) -> Result<ImportSummary, DataError> {
    let started = std::time::Instant::now();
    let files = list_sources(sources)?;
    let class_names = class_names(&files)?;
    let k = class_names.len();
    let has_val = files.iter().any(|(_, s)| *s == Split::Val);
    // Without test files, every file is training data and the validation split is carved out of it.
    let mask = if has_val {
        None
    } else {
        check_val_split(opts.val_split)?;
        let mut labels = Vec::new();
        for (path, _) in &files {
            labels.extend(read_records(path, k)?.1);
        }
        Some(val_mask(&labels, k, opts.val_split))
    };
    let shape = ImageShape {
        height: SIDE,
        width: SIDE,
        channels: 3,
    };
    let total: u64 = files
        .iter()
        .map(|(p, _)| {
            std::fs::metadata(p)
                .map(|m| m.len() / RECORD_BYTES as u64)
                .unwrap_or(0)
        })
        .sum();
    let bar = progress_bar(opts.progress, total, "cifar-bin");
    let mut writer = DatasetWriter::create(out, shape, class_names.clone())?;
    let mut seen = SplitLabels::default();
    let mut record_no = 0usize;
    for (path, split) in &files {
        let (data, labels) = read_records(path, k)?;
        for (b, block_labels) in labels.chunks(RECORDS_PER_BLOCK).enumerate() {
            let first = b * RECORDS_PER_BLOCK;
            let mut parts: [(Vec<u8>, Vec<u32>); 2] = Default::default();
            for (i, &label) in block_labels.iter().enumerate() {
                let record = &data[(first + i) * RECORD_BYTES..(first + i + 1) * RECORD_BYTES];
                let target = match &mask {
                    Some(m) if m[record_no] => Split::Val,
                    Some(_) => Split::Train,
                    None => *split,
                };
                record_no += 1;
                let part = &mut parts[target as usize];
                chw_to_hwc(&record[1..], &mut part.0);
                part.1.push(label);
            }
            for target in Split::ALL {
                let (images, labels) = &parts[target as usize];
                writer.append(target, images, labels)?;
                seen.extend(target, labels);
            }
            bar.inc(block_labels.len() as u64);
        }
    }
    bar.finish_and_clear();
    let source = format!(
        "nfbench data import --format cifar-bin: {}",
        files
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    writer.finish(&source)?;
    Ok(summary(
        out,
        "cifar-bin",
        shape,
        class_names,
        &seen,
        mask.is_some(),
        started,
    ))
}

/// The record files to import with the split each feeds, in a stable order (training files first).
fn list_sources(sources: &[PathBuf]) -> Result<Vec<(PathBuf, Split)>, DataError> {
    if sources.is_empty() {
        return Err(DataError::config("cifar-bin: no source given"));
    }
    let mut files = Vec::new();
    for src in sources {
        let meta = std::fs::metadata(src).map_err(|e| DataError::io(src, "cannot open", e))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            let entries = std::fs::read_dir(src)
                .map_err(|e| DataError::io(src, "cannot list directory", e))?;
            for entry in entries {
                let path = entry
                    .map_err(|e| DataError::io(src, "cannot list directory", e))?
                    .path();
                if path.is_file()
                    && path
                        .extension()
                        .is_some_and(|e| e.eq_ignore_ascii_case("bin"))
                {
                    found.push(path);
                }
            }
            if found.is_empty() {
                return Err(DataError::bad_source(
                    src,
                    "no *.bin CIFAR record files in this directory",
                ));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(src.clone());
        }
    }
    let mut tagged: Vec<(PathBuf, Split)> = files
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            let split = if name.starts_with("test") {
                Split::Val
            } else {
                Split::Train
            };
            (p, split)
        })
        .collect();
    tagged.sort_by_key(|(_, s)| *s as usize);
    Ok(tagged)
}

/// Class names from `batches.meta.txt` beside the first file, else the CIFAR-10 names.
fn class_names(files: &[(PathBuf, Split)]) -> Result<Vec<String>, DataError> {
    let meta = files
        .first()
        .and_then(|(p, _)| p.parent())
        .map(|d| d.join(META_FILE))
        .filter(|m| m.is_file());
    let Some(meta) = meta else {
        return Ok(CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect());
    };
    let text =
        std::fs::read_to_string(&meta).map_err(|e| DataError::io(&meta, "cannot read", e))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() || names.len() > 256 {
        return Err(DataError::bad_source(
            &meta,
            format!(
                "expected 1 to 256 class names, one per line; found {}",
                names.len()
            ),
        ));
    }
    Ok(names)
}

/// Read a record file whole and check it: a non-zero multiple of the record size, labels below `num_classes`.
/// Returns the raw bytes and the labels.
fn read_records(path: &Path, num_classes: usize) -> Result<(Vec<u8>, Vec<u32>), DataError> {
    let data = read_file(path)?;
    if data.is_empty() {
        return Err(DataError::bad_source(path, "empty file (no CIFAR records)"));
    }
    if data.len() % RECORD_BYTES != 0 {
        return Err(DataError::bad_source(
            path,
            format!(
                "size {} bytes is not a multiple of the {RECORD_BYTES}-byte CIFAR record (truncated, or not CIFAR-10 binary?)",
                data.len()
            ),
        ));
    }
    let mut labels = Vec::with_capacity(data.len() / RECORD_BYTES);
    for (r, record) in data.chunks_exact(RECORD_BYTES).enumerate() {
        let label = record[0] as usize;
        if label >= num_classes {
            return Err(DataError::bad_source(
                path,
                format!("record {r}: label {label} is out of range 0..{num_classes}"),
            ));
        }
        labels.push(label as u32);
    }
    Ok((data, labels))
}

/// Planar RGB (CHW) to interleaved (HWC), appended to `out`.
fn chw_to_hwc(planes: &[u8], out: &mut Vec<u8>) {
    let (r, rest) = planes.split_at(PLANE);
    let (g, b) = rest.split_at(PLANE);
    out.reserve(3 * PLANE);
    for i in 0..PLANE {
        out.extend_from_slice(&[r[i], g[i], b[i]]);
    }
}
