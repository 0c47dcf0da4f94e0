//! Class folders, the ImageNet layout: `SRC/train/<class>/<image>` and `SRC/val/<class>/<image>`. Class names are
//! the train folder names, sorted (the label is the position). JPEG and PNG files are decoded in parallel, converted
//! to RGB and, with `--resolution R`, resized (shorter side to R, centre crop R x R). Without it every image must have
//! the size of the first one. Bad files (empty, truncated, undecodable, not an image, wrong size) are skipped and
//! counted, or with `--strict` stop the import. Without `SRC/val`, --val-split carves the val split out of train.

use super::{
    check_val_split, progress_bar, summary, val_mask, ImportOptions, ImportSummary, SplitLabels,
    SKIPPED_NAMES_SHOWN,
};
use crate::data::augment::resize_square;
use crate::data::{DataError, DatasetWriter, ImageShape, Split};
use image::ImageFormat;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Files decoded per parallel block (bounds memory: a block of 224 px RGB images is ~40 MB).
const FILES_PER_BLOCK: usize = 256;
const CHANNELS: usize = 3;

/// One image file to import.
#[derive(Debug, Clone)]
struct Item {
    path: PathBuf,
    label: u32,
    split: Split,
}

/// Import a class-folder tree into `out`.
pub fn import_folder(
    sources: &[PathBuf],
    out: &Path,
    opts: &ImportOptions,
) -> Result<ImportSummary, DataError> {
    let started = std::time::Instant::now();
    let [root] = sources else {
        return Err(DataError::config(
            "folder: give exactly one source directory",
        ));
    };
    if let Some(r) = opts.resolution {
        if r == 0 || r > crate::data::loader::MAX_RESOLUTION {
            return Err(DataError::config(format!(
                "--resolution must be between 1 and {}, got {r}",
                crate::data::loader::MAX_RESOLUTION
            )));
        }
    }
    let (class_names, items, val_from_train) = list_items(root, opts)?;
    let mut target = opts.resolution.map(|r| (r, r));
    if target.is_none() {
        target = Some(first_size(&items, opts.strict)?);
    }
    let (width, height) = target.unwrap_or((0, 0));
    let shape = ImageShape {
        height: height as usize,
        width: width as usize,
        channels: CHANNELS,
    };
    let bar = progress_bar(opts.progress, items.len() as u64, "folder");
    let mut writer = DatasetWriter::create(out, shape, class_names.clone())?;
    let mut seen = SplitLabels::default();
    let mut skipped: Vec<(PathBuf, String)> = Vec::new();
    let mut skipped_count = 0usize;
    for block in items.chunks(FILES_PER_BLOCK) {
        let decoded: Vec<Result<Vec<u8>, String>> = block
            .par_iter()
            .map(|item| decode(&item.path, opts.resolution, (width, height)))
            .collect();
        let mut parts: [(Vec<u8>, Vec<u32>); 2] = Default::default();
        for (item, result) in block.iter().zip(decoded) {
            match result {
                Ok(pixels) => {
                    let p = &mut parts[item.split as usize];
                    p.0.extend_from_slice(&pixels);
                    p.1.push(item.label);
                }
                Err(reason) if opts.strict => {
                    return Err(DataError::bad_source(
                        &item.path,
                        format!("{reason} (--strict)"),
                    ));
                }
                Err(reason) => {
                    skipped_count += 1;
                    if skipped.len() < SKIPPED_NAMES_SHOWN {
                        skipped.push((item.path.clone(), reason));
                    }
                }
            }
        }
        for split in Split::ALL {
            let (images, labels) = &parts[split as usize];
            writer.append(split, images, labels)?;
            seen.extend(split, labels);
        }
        bar.inc(block.len() as u64);
    }
    bar.finish_and_clear();
    for split in Split::ALL {
        if writer.len(split) == 0 {
            return Err(DataError::bad_source(
                root,
                format!("the {split} split has no usable images ({skipped_count} file(s) skipped in all)"),
            ));
        }
    }
    writer.finish(&format!(
        "nfbench data import --format folder: {}",
        root.display()
    ))?;
    let mut s = summary(
        out,
        "folder",
        shape,
        class_names,
        &seen,
        val_from_train,
        started,
    );
    s.skipped_count = skipped_count;
    s.skipped = skipped;
    Ok(s)
}

/// The classes (sorted train folder names) and every file of both splits, in class then name order.
fn list_items(
    root: &Path,
    opts: &ImportOptions,
) -> Result<(Vec<String>, Vec<Item>, bool), DataError> {
    let meta = std::fs::metadata(root).map_err(|e| DataError::io(root, "cannot open", e))?;
    if !meta.is_dir() {
        return Err(DataError::bad_source(
            root,
            "folder: the source must be a directory",
        ));
    }
    let train_dir = root.join("train");
    if !train_dir.is_dir() {
        return Err(DataError::bad_source(
            root,
            "no train/ directory (expected SRC/train/<class>/<image> and optionally SRC/val/<class>/<image>)",
        ));
    }
    let class_names = subdirs(&train_dir)?;
    if class_names.is_empty() {
        return Err(DataError::bad_source(&train_dir, "no class folders"));
    }
    let mut items = Vec::new();
    for (k, name) in class_names.iter().enumerate() {
        for path in files(&train_dir.join(name))? {
            items.push(Item {
                path,
                label: k as u32,
                split: Split::Train,
            });
        }
    }
    let val_dir = root.join("val");
    let val_from_train = !val_dir.is_dir();
    if val_from_train {
        check_val_split(opts.val_split)?;
        let labels: Vec<u32> = items.iter().map(|i| i.label).collect();
        for (item, is_val) in
            items
                .iter_mut()
                .zip(val_mask(&labels, class_names.len(), opts.val_split))
        {
            if is_val {
                item.split = Split::Val;
            }
        }
    } else {
        for name in subdirs(&val_dir)? {
            let Some(k) = class_names.iter().position(|c| *c == name) else {
                return Err(DataError::bad_source(
                    &val_dir.join(&name),
                    "a val class folder with no train folder of the same name",
                ));
            };
            for path in files(&val_dir.join(&name))? {
                items.push(Item {
                    path,
                    label: k as u32,
                    split: Split::Val,
                });
            }
        }
    }
    if items.is_empty() {
        return Err(DataError::bad_source(root, "no files in any class folder"));
    }
    Ok((class_names, items, val_from_train))
}

/// Names of the subdirectories of `dir`, sorted.
pub(super) fn subdirs(dir: &Path) -> Result<Vec<String>, DataError> {
    let mut names = Vec::new();
    for entry in
        std::fs::read_dir(dir).map_err(|e| DataError::io(dir, "cannot list directory", e))?
    {
        let entry = entry.map_err(|e| DataError::io(dir, "cannot list directory", e))?;
        if entry.path().is_dir() {
            let name = entry.file_name();
            let name = name.to_str().ok_or_else(|| {
                DataError::bad_source(&entry.path(), "folder name is not valid UTF-8")
            })?;
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// The regular files directly inside `dir`, sorted.
pub(super) fn files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    for entry in
        std::fs::read_dir(dir).map_err(|e| DataError::io(dir, "cannot list directory", e))?
    {
        let path = entry
            .map_err(|e| DataError::io(dir, "cannot list directory", e))?
            .path();
        if path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The (width, height) of the first decodable image, used when no --resolution is given.
fn first_size(items: &[Item], strict: bool) -> Result<(u32, u32), DataError> {
    for item in items {
        match read_image(&item.path) {
            Ok(img) => return Ok((img.width(), img.height())),
            Err(reason) if strict => {
                return Err(DataError::bad_source(
                    &item.path,
                    format!("{reason} (--strict)"),
                ))
            }
            Err(_) => continue,
        }
    }
    Err(DataError::config("no decodable image in the source"))
}

/// Decode one file to RGB u8 HWC at the data set's size; `Err` carries the reason it is bad.
fn decode(
    path: &Path,
    resolution: Option<u32>,
    (width, height): (u32, u32),
) -> Result<Vec<u8>, String> {
    let img = read_image(path)?.to_rgb8();
    match resolution {
        Some(r) => {
            let shape = ImageShape {
                height: img.height() as usize,
                width: img.width() as usize,
                channels: CHANNELS,
            };
            resize_square(img.as_raw(), shape, r).map_err(|e| e.to_string())
        }
        None if img.width() == width && img.height() == height => Ok(img.into_raw()),
        None => Err(format!(
            "image is {}x{} but the data set's images are {width}x{height} (pass --resolution to resize)",
            img.width(),
            img.height()
        )),
    }
}

/// Read and decode a JPEG or PNG file, refusing empty, truncated and non-image files.
fn read_image(path: &Path) -> Result<image::DynamicImage, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let format = image::guess_format(&bytes)
        .map_err(|_| "not an image (neither JPEG nor PNG content)".to_string())?;
    match format {
        ImageFormat::Jpeg => check_jpeg_complete(&bytes)?,
        ImageFormat::Png => {}
        other => {
            return Err(format!(
                "unsupported image format {other:?} (JPEG and PNG are supported)"
            ))
        }
    }
    image::load_from_memory_with_format(&bytes, format).map_err(|e| format!("cannot decode: {e}"))
}

/// JPEG decoders fill a cut-off image with grey instead of failing, so check for the end-of-image marker after the
/// last start-of-scan (inside entropy-coded data a 0xFF byte is always followed by 0x00 or a restart marker, so
/// neither marker can appear there by accident).
fn check_jpeg_complete(bytes: &[u8]) -> Result<(), String> {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let Some(sos) = last_sos else {
        return Err("truncated JPEG (no image data)".into());
    };
    if bytes[sos + 2..].windows(2).any(|w| w == [0xFF, 0xD9]) {
        Ok(())
    } else {
        Err("truncated JPEG (no end-of-image marker)".into())
    }
}
