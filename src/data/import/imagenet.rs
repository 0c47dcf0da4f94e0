//! `nfbench data import --format imagenet`: the ImageNet layout (or any class-folder tree) into a format version 2
//! file of JPEG bytes. `SRC/train/<wnid>/*`; `SRC/val/` as class folders, or flat with the devkit's ground truth
//! (plus the devkit's synset order) or Kaggle's `LOC_val_solution.csv`; without `SRC/val`, `--val-split` holds out
//! the last images of each class (listed by [`layout`](super::layout)). Files go in sorted order through [`probe`](super::probe) on every core, block by
//! block (bounded memory), committed to the resumable [`staging`](super::staging) files; the HDF5 file is built from
//! them at the end and appears by rename.

use super::layout::{class_names, list, Item, Listing, ValFiles, ValSource};
use super::probe::{self, Limits, Processed, Verdict};
use super::staging::{Entry, Fingerprint, Record, Staging, Status};
use super::{progress_bar, ImportOptions, SKIPPED_NAMES_SHOWN};
use crate::data::format::{write_jpeg_dataset, JpegAttrs, SplitSource};
use crate::data::{ChannelStats, DataError, EncodedMeta, EncodedSplit, Split};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// PIL's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`).
pub const DEFAULT_MAX_PIXELS: u64 = 89_478_485;
/// Train images decoded for the mean/std attributes, spread evenly over the split.
const STATS_SAMPLE: usize = 10_000;
/// The test hook: milliseconds to sleep in every block between staging the bytes and committing them.
pub const BLOCK_PAUSE_ENV: &str = "NFBENCH_TEST_IMPORT_BLOCK_PAUSE_MS";

/// The JPEG-specific settings of an import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JpegImportOptions {
    /// Images whose longer side exceeds this are resized to it (and re-encoded).
    pub max_side: u32,
    /// JPEG quality of re-encoded images (1..=100).
    pub quality: u8,
    /// Files whose header gives more pixels than this are skipped without decoding (decompression bombs).
    pub max_pixels: u64,
    /// The devkit's synset order (one wnid per line, line k = devkit id k), for a devkit ground-truth file.
    pub val_synsets: Option<PathBuf>,
    /// The validation label file, when it is not in SRC or SRC/val under its usual name (`.csv`: Kaggle's).
    pub val_labels: Option<PathBuf>,
}

impl Default for JpegImportOptions {
    fn default() -> Self {
        Self {
            max_side: 512,
            quality: 90,
            max_pixels: DEFAULT_MAX_PIXELS,
            val_synsets: None,
            val_labels: None,
        }
    }
}

impl JpegImportOptions {
    fn check(&self) -> Result<(), DataError> {
        if !(16..=16384).contains(&self.max_side) {
            return Err(DataError::config(format!(
                "--max-side must be between 16 and 16384, got {}",
                self.max_side
            )));
        }
        if !(1..=100).contains(&self.quality) {
            return Err(DataError::config(format!(
                "--quality must be between 1 and 100, got {}",
                self.quality
            )));
        }
        if self.max_pixels == 0 {
            return Err(DataError::config("--max-pixels must be positive"));
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        Limits {
            max_side: self.max_side,
            quality: self.quality,
            max_pixels: self.max_pixels,
        }
    }
}

/// What a JPEG import did.
#[derive(Debug, Clone, Serialize)]
pub struct JpegImportSummary {
    pub out: PathBuf,
    /// The per-file log (`path`, `kept|converted|skipped`, reason).
    pub log: PathBuf,
    pub class_names: Vec<String>,
    pub train_count: usize,
    pub val_count: usize,
    pub train_per_class: Vec<usize>,
    pub val_per_class: Vec<usize>,
    pub val_source: ValSource,
    pub kept: usize,
    pub converted: usize,
    pub skipped: usize,
    /// The first skipped files (up to [`SKIPPED_NAMES_SHOWN`]) and why.
    pub first_skipped: Vec<(PathBuf, String)>,
    /// Files a previous, interrupted run had committed (0: a fresh import).
    pub resumed_from: usize,
    pub total_bytes: u64,
    pub seconds: f64,
}

impl std::fmt::Display for JpegImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "wrote {} (imagenet, JPEG bytes, format version 2)",
            self.out.display()
        )?;
        let files = self.kept + self.converted + self.skipped;
        writeln!(
            f,
            "  {files} files: {} kept, {} converted, {} skipped (per-file log: {})",
            self.kept,
            self.converted,
            self.skipped,
            self.log.display()
        )?;
        if self.resumed_from > 0 {
            writeln!(
                f,
                "  resumed after {} files committed by an earlier run",
                self.resumed_from
            )?;
        }
        writeln!(
            f,
            "  train: {} images, val: {} images (labels: {}), {} classes, {:.1} MB",
            self.train_count,
            self.val_count,
            self.val_source,
            self.class_names.len(),
            self.total_bytes as f64 / 1e6
        )?;
        let shown = self.class_names.len().min(20);
        for (k, name) in self.class_names.iter().enumerate().take(shown) {
            writeln!(
                f,
                "    {k:>4} {name:<30} train {:>7}  val {:>6}",
                self.train_per_class[k], self.val_per_class[k]
            )?;
        }
        if shown < self.class_names.len() {
            writeln!(f, "    ... {} more classes", self.class_names.len() - shown)?;
        }
        if !self.first_skipped.is_empty() {
            writeln!(f, "  skipped files, the first:")?;
            for (p, why) in &self.first_skipped {
                writeln!(f, "    {}: {why}", p.display())?;
            }
        }
        write!(f, "  took {:.1} s", self.seconds)
    }
}

/// Import `root` into `out` as JPEG bytes.
pub fn import_imagenet(
    sources: &[PathBuf],
    out: &Path,
    opts: &ImportOptions,
    jpeg: &JpegImportOptions,
) -> Result<JpegImportSummary, DataError> {
    let started = std::time::Instant::now();
    let [root] = sources else {
        return Err(DataError::config(
            "imagenet: give exactly one source directory",
        ));
    };
    super::refuse_resolution("imagenet", opts)?;
    jpeg.check()?;
    let val_files = ValFiles {
        synsets: jpeg.val_synsets.as_deref(),
        labels: jpeg.val_labels.as_deref(),
    };
    let listing = list(root, opts, val_files)?;
    let class_names = class_names(root, &listing.class_folders)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| DataError::io(dir, "cannot create directory", e))?;
    }
    let fingerprint = fingerprint(&listing, jpeg);
    let mut staging = Staging::open(out, fingerprint.value(), "path\tstatus\treason\n")?;
    let resumed_from = staging.records().len().min(listing.items.len());
    run_blocks(root, &listing.items, &mut staging, opts, jpeg.limits())?;
    let records = staging.records().to_vec();
    let index = StagedIndex::new(&listing.items, &records);
    for split in Split::ALL {
        if index.split(split).is_empty() {
            return Err(DataError::bad_source(
                root,
                format!(
                    "the {split} split has no usable images ({} file(s) skipped in all; see {})",
                    index.skipped,
                    staging.log_path().display()
                ),
            ));
        }
    }
    let file = staging.staged_file()?;
    let staged_path = staging.staging_path().to_path_buf();
    let train = StagedSplit::new(&file, &staged_path, index.split(Split::Train));
    let val = StagedSplit::new(&file, &staged_path, index.split(Split::Val));
    let (mean, std) = sample_stats(&train)?;
    let folders_differ = class_names != listing.class_folders;
    let attrs = JpegAttrs {
        class_names: class_names.clone(),
        class_folders: folders_differ.then(|| listing.class_folders.clone()),
        mean,
        std,
        source: format!("nfbench data import --format imagenet: {}", root.display()),
    };
    write_jpeg_dataset(
        out,
        &attrs,
        SplitSource {
            images: &train,
            total_bytes: train.total_bytes(),
        },
        SplitSource {
            images: &val,
            total_bytes: val.total_bytes(),
        },
    )?;
    let log = staging.log_path().to_path_buf();
    let k = class_names.len();
    let per_class = |s: &StagedSplit| {
        let mut v = vec![0usize; k];
        for m in &s.metas {
            v[m.label as usize] += 1;
        }
        v
    };
    let summary = JpegImportSummary {
        out: out.to_path_buf(),
        train_count: train.len(),
        val_count: val.len(),
        train_per_class: per_class(&train),
        val_per_class: per_class(&val),
        class_names,
        val_source: listing.val_source,
        kept: index.count(Status::Kept),
        converted: index.count(Status::Converted),
        skipped: index.skipped,
        first_skipped: first_skipped(root, &log, SKIPPED_NAMES_SHOWN),
        resumed_from,
        total_bytes: train.total_bytes() + val.total_bytes(),
        seconds: 0.0,
        log,
    };
    drop((train, val));
    drop(file);
    staging.remove()?;
    Ok(JpegImportSummary {
        seconds: started.elapsed().as_secs_f64(),
        ..summary
    })
}

/// The settings and file list a journal belongs to.
fn fingerprint(listing: &Listing, jpeg: &JpegImportOptions) -> Fingerprint {
    let mut fp = Fingerprint::new();
    fp.add(b"nfbench imagenet import 1")
        .add(&jpeg.max_side.to_le_bytes())
        .add(&[jpeg.quality])
        .add(&jpeg.max_pixels.to_le_bytes());
    for name in &listing.class_folders {
        fp.add(name.as_bytes());
    }
    for item in &listing.items {
        fp.add(item.path.as_os_str().as_encoded_bytes())
            .add(&item.label.to_le_bytes())
            .add(&[item.split as u8]);
    }
    fp
}

/// Files processed per parallel block: enough to keep every core busy, few enough that memory stays small, and at
/// most about 1% of the import (a killed import loses at most one block's work).
fn block_len(files: usize) -> usize {
    let per_core = (16 * rayon::current_num_threads()).max(64);
    per_core.min(files.div_ceil(100).max(64))
}

fn run_blocks(
    root: &Path,
    items: &[Item],
    staging: &mut Staging,
    opts: &ImportOptions,
    limits: Limits,
) -> Result<(), DataError> {
    let done = staging.records().len().min(items.len());
    let bar = progress_bar(opts.progress, items.len() as u64, "imagenet");
    bar.set_position(done as u64);
    bar.reset_eta();
    let pause_ms: u64 = std::env::var(BLOCK_PAUSE_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for block in items[done..].chunks(block_len(items.len())) {
        let processed: Vec<Processed> = block
            .par_iter()
            .map(|item| match std::fs::read(&item.path) {
                Ok(bytes) => probe::process(bytes, limits),
                Err(e) => Processed {
                    verdict: Verdict::Skipped(format!("cannot read: {e}")),
                    bytes: Vec::new(),
                    height: 0,
                    width: 0,
                },
            })
            .collect();
        if opts.strict {
            if let Some((item, p)) = block
                .iter()
                .zip(&processed)
                .find(|(_, p)| matches!(p.verdict, Verdict::Skipped(_)))
            {
                return Err(DataError::bad_source(
                    &item.path,
                    format!("{} (--strict)", p.verdict.reason()),
                ));
            }
        }
        let lines: Vec<String> = block
            .iter()
            .zip(&processed)
            .map(|(item, p)| log_line(root, &item.path, &p.verdict))
            .collect();
        let entries: Vec<Entry<'_>> = processed
            .iter()
            .zip(&lines)
            .map(|(p, line)| Entry {
                status: match p.verdict {
                    Verdict::Kept => Status::Kept,
                    Verdict::Converted(_) => Status::Converted,
                    Verdict::Skipped(_) => Status::Skipped,
                },
                height: p.height,
                width: p.width,
                bytes: &p.bytes,
                log_line: line,
            })
            .collect();
        staging.commit(&entries, || {
            if pause_ms > 0 {
                std::thread::sleep(std::time::Duration::from_millis(pause_ms));
            }
        })?;
        bar.inc(block.len() as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

/// `path<TAB>status<TAB>reason`, the path relative to the source root; tabs and newlines in names escaped.
fn log_line(root: &Path, path: &Path, verdict: &Verdict) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let clean = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
    };
    format!(
        "{}\t{}\t{}\n",
        clean(&rel.to_string_lossy()),
        verdict.status(),
        clean(verdict.reason())
    )
}

/// The first `n` skipped files named in the log.
fn first_skipped(root: &Path, log: &Path, n: usize) -> Vec<(PathBuf, String)> {
    let Ok(text) = std::fs::read_to_string(log) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '\t');
            let (path, status, reason) = (f.next()?, f.next()?, f.next().unwrap_or(""));
            (status == "skipped").then(|| (root.join(path), reason.to_string()))
        })
        .take(n)
        .collect()
}

/// The committed records laid out per split: each accepted image's place in the staging file.
struct StagedIndex {
    splits: [Vec<(EncodedMeta, u64, u64)>; 2],
    statuses: Vec<Status>,
    skipped: usize,
}

impl StagedIndex {
    fn new(items: &[Item], records: &[Record]) -> Self {
        let mut splits: [Vec<(EncodedMeta, u64, u64)>; 2] = Default::default();
        let mut start = 0u64;
        let mut skipped = 0;
        for (item, r) in items.iter().zip(records) {
            if r.status == Status::Skipped {
                skipped += 1;
            } else {
                let meta = EncodedMeta {
                    label: item.label,
                    height: r.height,
                    width: r.width,
                };
                splits[item.split as usize].push((meta, start, r.bytes_end));
            }
            start = r.bytes_end;
        }
        Self {
            splits,
            statuses: records.iter().map(|r| r.status).collect(),
            skipped,
        }
    }

    fn split(&self, split: Split) -> &[(EncodedMeta, u64, u64)] {
        &self.splits[split as usize]
    }

    fn count(&self, status: Status) -> usize {
        self.statuses.iter().filter(|&&s| s == status).count()
    }
}

/// One split's images inside the staging file.
struct StagedSplit<'a> {
    file: &'a std::fs::File,
    path: &'a Path,
    metas: Vec<EncodedMeta>,
    ranges: Vec<(u64, u64)>,
}

impl<'a> StagedSplit<'a> {
    fn new(file: &'a std::fs::File, path: &'a Path, entries: &[(EncodedMeta, u64, u64)]) -> Self {
        Self {
            file,
            path,
            metas: entries.iter().map(|e| e.0).collect(),
            ranges: entries.iter().map(|e| (e.1, e.2)).collect(),
        }
    }

    fn total_bytes(&self) -> u64 {
        self.ranges.iter().map(|(a, b)| b - a).sum()
    }
}

impl EncodedSplit for StagedSplit<'_> {
    fn len(&self) -> usize {
        self.metas.len()
    }

    fn meta(&self, index: usize) -> EncodedMeta {
        self.metas[index]
    }

    fn read_into(&self, index: usize, buf: &mut Vec<u8>) -> Result<(), DataError> {
        let (a, b) = self.ranges[index];
        buf.clear();
        buf.resize((b - a) as usize, 0);
        self.file
            .read_exact_at(buf, a)
            .map_err(|e| DataError::io(self.path, "cannot read staged bytes", e))
    }
}

/// Mean and std of the decoded RGB pixels of up to [`STATS_SAMPLE`] train images spread over the split. Integer
/// histograms are summed first, so the result does not depend on thread timing.
fn sample_stats(train: &StagedSplit<'_>) -> Result<([f64; 3], [f64; 3]), DataError> {
    let n = train.len();
    let step = n.div_ceil(STATS_SAMPLE).max(1);
    let picks: Vec<usize> = (0..n).step_by(step).collect();
    let hists: Vec<[[u64; 256]; 3]> = picks
        .par_iter()
        .map(|&i| {
            let mut buf = Vec::new();
            train.read_into(i, &mut buf)?;
            probe::rgb_histogram(&buf)
                .map_err(|e| DataError::bad_source(train.path, format!("staged image {i}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let mut total = [[0u64; 256]; 3];
    for h in &hists {
        for (t, c) in total.iter_mut().zip(h) {
            for (a, b) in t.iter_mut().zip(c) {
                *a += b;
            }
        }
    }
    let mut stats = ChannelStats::new(3);
    stats.add_histogram(&total);
    let (mean, std) = stats.mean_std();
    let arr = |v: Vec<f64>| [v[0], v[1], v[2]];
    Ok((arr(mean), arr(std)))
}
