//! `nfbench data inspect`: read a whole data-set file block by block and report shapes, classes, per-class counts,
//! pixel statistics, and anything wrong with it.

use super::format::{open_file, open_images, read_labels};
use super::{ChannelStats, DataError, DatasetInfo, Split};
use serde::Serialize;
use std::path::Path;

/// How far the stored mean/std may drift from the recomputed ones before it counts as a problem.
const STATS_TOLERANCE: f64 = 1e-3;
/// Images read per HDF5 call while scanning.
const SCAN_ROWS: usize = 1024;

#[derive(Debug, Clone, Serialize)]
pub struct SplitReport {
    pub split: Split,
    pub count: usize,
    pub per_class: Vec<usize>,
    /// Per-channel pixel mean and std of this split, recomputed from the pixels (0..1 scale).
    pub pixel_mean: Vec<f64>,
    pub pixel_std: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    pub info: DatasetInfo,
    pub splits: Vec<SplitReport>,
    /// Things that make the file unusable or wrong (non-zero exit).
    pub problems: Vec<String>,
    /// Things worth knowing that do not stop training.
    pub warnings: Vec<String>,
}

impl InspectReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Inspect a data-set file. Layout errors (see [`DatasetInfo::open`]) are returned as errors; content problems
/// found while scanning are listed in the report.
pub fn inspect(path: impl AsRef<Path>) -> Result<InspectReport, DataError> {
    let path = path.as_ref();
    let info = DatasetInfo::open(path)?;
    let file = open_file(path)?;
    let mut splits = Vec::new();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    for split in Split::ALL {
        let labels = read_labels(&file, path, split, info.num_classes)?;
        let (ds, count, shape) = open_images(&file, path, split)?;
        let mut stats = ChannelStats::new(shape.channels);
        let mut start = 0;
        while start < count {
            let end = (start + SCAN_ROWS).min(count);
            let block: ndarray::Array4<u8> =
                ds.read_slice((start..end, .., .., ..)).map_err(|e| {
                    DataError::hdf5(path, format!("reading /{split}/images {start}..{end}"), e)
                })?;
            match block.as_slice() {
                Some(px) => stats.add(px),
                None => stats.add(&block.iter().copied().collect::<Vec<u8>>()),
            }
            start = end;
        }
        let (pixel_mean, pixel_std) = stats.mean_std();
        let per_class = super::import::per_class_counts(&labels, info.num_classes);
        for (k, &n) in per_class.iter().enumerate() {
            if n == 0 {
                warnings.push(format!(
                    "class {k} ({}) has no {split} images",
                    info.class_names[k]
                ));
            }
        }
        if split == Split::Train {
            for c in 0..shape.channels {
                let (m, s) = (f64::from(info.mean[c]), f64::from(info.std[c]));
                if (m - pixel_mean[c]).abs() > STATS_TOLERANCE
                    || (s - pixel_std[c]).abs() > STATS_TOLERANCE
                {
                    problems.push(format!(
                        "channel {c}: stored mean/std {m:.4}/{s:.4} differ from the train pixels' {:.4}/{:.4}",
                        pixel_mean[c], pixel_std[c]
                    ));
                }
            }
        }
        splits.push(SplitReport {
            split,
            count,
            per_class,
            pixel_mean,
            pixel_std,
        });
    }
    if info.class_names.iter().any(|n| n.is_empty()) {
        warnings.push("some class names are empty".into());
    }
    Ok(InspectReport {
        info,
        splits,
        problems,
        warnings,
    })
}

impl std::fmt::Display for InspectReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.info;
        writeln!(
            f,
            "{} (format version {})",
            i.path.display(),
            i.format_version
        )?;
        writeln!(f, "  source: {}", i.source)?;
        writeln!(
            f,
            "  images: {}x{}x{} (H x W x C) u8; train {}, val {}",
            i.height, i.width, i.channels, i.train_count, i.val_count
        )?;
        writeln!(f, "  stored mean {:?}, std {:?}", i.mean, i.std)?;
        for s in &self.splits {
            writeln!(
                f,
                "  {}: {} images, pixel mean {:.4?}, std {:.4?}",
                s.split, s.count, s.pixel_mean, s.pixel_std
            )?;
        }
        writeln!(f, "  {} classes (train / val images):", i.num_classes)?;
        for (k, name) in i.class_names.iter().enumerate() {
            let counts: Vec<String> = self
                .splits
                .iter()
                .map(|s| s.per_class[k].to_string())
                .collect();
            writeln!(f, "    {k:>4} {name:<20} {}", counts.join(" / "))?;
        }
        writeln!(f, "  labels: all in 0..{}", i.num_classes)?;
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        for p in &self.problems {
            writeln!(f, "  PROBLEM: {p}")?;
        }
        write!(f, "  {}", if self.ok() { "ok" } else { "NOT OK" })
    }
}
