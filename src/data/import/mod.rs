//! Importers: turn CIFAR binary records, IDX files or class folders of JPEG/PNG images into one HDF5 data set
//! (see [`super::format`]). Each importer checks its source as it goes and fails with the file and the reason.

mod cifar;
mod folder;
mod idx;
mod imagenet;
mod layout;
mod probe;
mod staging;

pub use cifar::{import_cifar_bin, CIFAR10_CLASSES};
pub use folder::import_folder;
pub use idx::import_idx;
pub use imagenet::{
    import_imagenet, JpegImportOptions, JpegImportSummary, BLOCK_PAUSE_ENV, DEFAULT_MAX_PIXELS,
};
pub use layout::{ValSource, DEVKIT_GROUND_TRUTH, KAGGLE_VAL_SOLUTION, SYNSET_NAME_FILES};

use super::{DataError, Split};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// How many skipped files a summary names; the rest are only counted.
pub const SKIPPED_NAMES_SHOWN: usize = 5;

/// Options shared by the importers.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Folder format: shorter side to R, centre crop R x R. None keeps the images' own size (then they must agree).
    pub resolution: Option<u32>,
    /// Fraction of the training images moved to the validation split when the source has no validation split.
    pub val_split: f64,
    /// Folder format: fail on the first bad image instead of skipping it.
    pub strict: bool,
    /// Draw a progress bar on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            resolution: None,
            val_split: 0.2,
            strict: false,
            progress: false,
        }
    }
}

/// What an import wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    pub out: PathBuf,
    pub format: String,
    pub train_count: usize,
    pub val_count: usize,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub class_names: Vec<String>,
    /// Images per class in the train and val splits.
    pub train_per_class: Vec<usize>,
    pub val_per_class: Vec<usize>,
    /// Whether the validation split was carved out of the training images (--val-split).
    pub val_from_train: bool,
    /// Files that were skipped (folder format), with the reason; `skipped_count` counts them all.
    pub skipped_count: usize,
    pub skipped: Vec<(PathBuf, String)>,
    pub seconds: f64,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "wrote {} ({})", self.out.display(), self.format)?;
        writeln!(
            f,
            "  images: {}x{}x{} (H x W x C), {} classes",
            self.height,
            self.width,
            self.channels,
            self.class_names.len()
        )?;
        let how = if self.val_from_train {
            " (held out of the training images)"
        } else {
            ""
        };
        writeln!(
            f,
            "  train: {} images, val: {} images{how}",
            self.train_count, self.val_count
        )?;
        for (k, name) in self.class_names.iter().enumerate() {
            writeln!(
                f,
                "    {k:>4} {name:<20} train {:>8}  val {:>7}",
                self.train_per_class[k], self.val_per_class[k]
            )?;
        }
        if self.skipped_count > 0 {
            writeln!(
                f,
                "  skipped {} bad file(s); the first:",
                self.skipped_count
            )?;
            for (p, why) in &self.skipped {
                writeln!(f, "    {}: {why}", p.display())?;
            }
        }
        write!(f, "  took {:.1} s", self.seconds)
    }
}

/// `--resolution` resizes folder imports only; the fixed-size formats keep their size (the loader resizes).
pub(crate) fn refuse_resolution(format: &str, opts: &ImportOptions) -> Result<(), DataError> {
    match opts.resolution {
        Some(r) => Err(DataError::config(format!(
            "--resolution {r} applies to --format folder only; {format} images keep their size \
             (set data.resolution in the preset to train at another size)"
        ))),
        None => Ok(()),
    }
}

/// Check `--val-split`: a fraction strictly between 0 and 1.
pub(crate) fn check_val_split(val_split: f64) -> Result<(), DataError> {
    if !(val_split > 0.0 && val_split < 1.0) {
        return Err(DataError::config(format!(
            "--val-split must be a fraction between 0 and 1 (exclusive), got {val_split}"
        )));
    }
    Ok(())
}

/// Choose which training images become validation images: per class, the last `round(fraction * count)` images in
/// source order (at least one image stays in training). Stratified and deterministic, with no randomness needed.
pub(crate) fn val_mask(labels: &[u32], num_classes: usize, fraction: f64) -> Vec<bool> {
    let mut per_class = vec![0usize; num_classes];
    for &l in labels {
        per_class[l as usize] += 1;
    }
    let keep: Vec<usize> = per_class
        .iter()
        .map(|&n| {
            let val = ((n as f64) * fraction).round() as usize;
            n - val.min(n.saturating_sub(1))
        })
        .collect();
    let mut seen = vec![0usize; num_classes];
    labels
        .iter()
        .map(|&l| {
            let k = l as usize;
            seen[k] += 1;
            seen[k] > keep[k]
        })
        .collect()
}

/// Count images per class.
pub(crate) fn per_class_counts(labels: &[u32], num_classes: usize) -> Vec<usize> {
    per_class(labels.iter().copied(), num_classes)
}

fn per_class(labels: impl IntoIterator<Item = u32>, num_classes: usize) -> Vec<usize> {
    let mut counts = vec![0usize; num_classes];
    for l in labels {
        if let Some(c) = counts.get_mut(l as usize) {
            *c += 1;
        }
    }
    counts
}

pub(crate) fn progress_bar(enabled: bool, len: u64, what: &str) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let style = indicatif::ProgressStyle::with_template(
        "{msg:>10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    let bar = indicatif::ProgressBar::new(len).with_style(style);
    bar.set_message(what.to_string());
    bar
}

/// Per-split labels collected while importing, for the summary.
#[derive(Debug, Default)]
pub(crate) struct SplitLabels {
    pub train: Vec<u32>,
    pub val: Vec<u32>,
}

impl SplitLabels {
    pub fn extend(&mut self, split: Split, labels: &[u32]) {
        match split {
            Split::Train => self.train.extend_from_slice(labels),
            Split::Val => self.val.extend_from_slice(labels),
        }
    }
}

/// Build the summary from what was written.
pub(crate) fn summary(
    out: &Path,
    format: &str,
    shape: super::ImageShape,
    class_names: Vec<String>,
    labels: &SplitLabels,
    val_from_train: bool,
    started: std::time::Instant,
) -> ImportSummary {
    let k = class_names.len();
    ImportSummary {
        out: out.to_path_buf(),
        format: format.to_string(),
        train_count: labels.train.len(),
        val_count: labels.val.len(),
        height: shape.height,
        width: shape.width,
        channels: shape.channels,
        train_per_class: per_class(labels.train.iter().copied(), k),
        val_per_class: per_class(labels.val.iter().copied(), k),
        class_names,
        val_from_train,
        skipped_count: 0,
        skipped: Vec::new(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Read a whole file, naming it on failure.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::io(path, "cannot read", e))
}
