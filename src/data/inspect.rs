//! `nfbench data inspect`: read a whole data-set file block by block and report shapes, classes, per-class counts,
//! pixel statistics (version 1) or stored sizes and byte counts (version 2, JPEG), and anything wrong with it.

use super::format::{open_file, open_images, read_labels, JpegSplit, Storage};
use super::{ChannelStats, DataError, DatasetInfo, EncodedSplit, Split};
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
    pub content: SplitContent,
}

/// What was measured in a split, by storage kind.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "storage", rename_all = "lowercase")]
pub enum SplitContent {
    /// Per-channel pixel mean and std of this split, recomputed from the pixels (0..1 scale).
    Pixels {
        pixel_mean: Vec<f64>,
        pixel_std: Vec<f64>,
    },
    Jpeg(JpegSplitReport),
}

/// The stored sizes and byte counts of a JPEG split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct JpegSplitReport {
    pub min_height: u32,
    pub max_height: u32,
    pub min_width: u32,
    pub max_width: u32,
    pub min_bytes: usize,
    pub max_bytes: usize,
    pub total_bytes: u64,
}

impl JpegSplitReport {
    fn merge(self, o: Self) -> Self {
        Self {
            min_height: self.min_height.min(o.min_height),
            max_height: self.max_height.max(o.max_height),
            min_width: self.min_width.min(o.min_width),
            max_width: self.max_width.max(o.max_width),
            min_bytes: self.min_bytes.min(o.min_bytes),
            max_bytes: self.max_bytes.max(o.max_bytes),
            total_bytes: self.total_bytes + o.total_bytes,
        }
    }

    fn sizes(&self) -> String {
        format!(
            "sizes (H x W) {}..{} x {}..{}",
            self.min_height, self.max_height, self.min_width, self.max_width
        )
    }
}

/// JPEG images whose bytes do not start with SOI and end with EOI are named up to this many per split.
const BAD_JPEGS_NAMED: usize = 5;

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
    if info.storage == Storage::Jpeg {
        return inspect_jpeg(path, info);
    }
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
            content: SplitContent::Pixels {
                pixel_mean,
                pixel_std,
            },
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

/// Version 2: every image read once (SOI/EOI markers checked), sizes and byte counts per split.
fn inspect_jpeg(path: &Path, info: DatasetInfo) -> Result<InspectReport, DataError> {
    let mut splits = Vec::new();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    for split in Split::ALL {
        let js = JpegSplit::open(path, split)?;
        let mut bad = Vec::new();
        let mut buf = Vec::new();
        for i in 0..js.len() {
            js.read_into(i, &mut buf)?;
            if !(buf.starts_with(&[0xFF, 0xD8]) && buf.ends_with(&[0xFF, 0xD9])) {
                bad.push(i);
            }
        }
        if !bad.is_empty() {
            problems.push(format!(
                "{split}: {} image(s) do not start with a JPEG start-of-image and end with an end-of-image marker \
                 (the first: {:?})",
                bad.len(),
                &bad[..bad.len().min(BAD_JPEGS_NAMED)]
            ));
        }
        let per_class = super::import::per_class_counts(js.labels(), info.num_classes);
        for (k, &n) in per_class.iter().enumerate() {
            if n == 0 {
                warnings.push(format!(
                    "class {k} ({}) has no {split} images",
                    info.class_names[k]
                ));
            }
        }
        let lens: Vec<usize> = (0..js.len()).map(|i| js.byte_len(i)).collect();
        let range = |v: &[u32]| {
            (
                v.iter().copied().min().unwrap_or(0),
                v.iter().copied().max().unwrap_or(0),
            )
        };
        let ((min_height, max_height), (min_width, max_width)) =
            (range(js.heights()), range(js.widths()));
        splits.push(SplitReport {
            split,
            count: js.len(),
            per_class,
            content: SplitContent::Jpeg(JpegSplitReport {
                min_height,
                max_height,
                min_width,
                max_width,
                min_bytes: lens.iter().copied().min().unwrap_or(0),
                max_bytes: lens.iter().copied().max().unwrap_or(0),
                total_bytes: js.total_bytes(),
            }),
        });
    }
    Ok(InspectReport {
        info,
        splits,
        problems,
        warnings,
    })
}

impl InspectReport {
    /// The sizes and bytes over both splits of a JPEG file.
    fn jpeg_overall(&self) -> Option<JpegSplitReport> {
        self.splits
            .iter()
            .filter_map(|s| match s.content {
                SplitContent::Jpeg(j) => Some(j),
                SplitContent::Pixels { .. } => None,
            })
            .reduce(JpegSplitReport::merge)
    }
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
        match self.jpeg_overall() {
            Some(all) => writeln!(
                f,
                "  storage jpeg; {}; train {}, val {}; {:.1} MB",
                all.sizes(),
                i.train_count,
                i.val_count,
                all.total_bytes as f64 / 1e6
            )?,
            None => writeln!(
                f,
                "  images: {}x{}x{} (H x W x C) u8; train {}, val {}",
                i.height, i.width, i.channels, i.train_count, i.val_count
            )?,
        }
        writeln!(f, "  stored mean {:?}, std {:?}", i.mean, i.std)?;
        for s in &self.splits {
            match &s.content {
                SplitContent::Pixels {
                    pixel_mean,
                    pixel_std,
                } => writeln!(
                    f,
                    "  {}: {} images, pixel mean {pixel_mean:.4?}, std {pixel_std:.4?}",
                    s.split, s.count
                )?,
                SplitContent::Jpeg(j) => writeln!(
                    f,
                    "  {}: {} images, {}, {}..{} bytes each (mean {:.0})",
                    s.split,
                    s.count,
                    j.sizes(),
                    j.min_bytes,
                    j.max_bytes,
                    j.total_bytes as f64 / s.count.max(1) as f64
                )?,
            }
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
