//! `nfbench data import --format imagenet`: the ImageNet layout (or any class-folder tree) into a format version 2
//! file of JPEG bytes. `SRC/train/<wnid>/*`; `SRC/val/` as class folders, or flat with the devkit's ground truth
//! (plus the devkit's synset order) or Kaggle's `LOC_val_solution.csv`; without `SRC/val`, `--val-split` holds out
//! the last images of each class. Files go in sorted order through [`probe`](super::probe) on every core, block by
//! block (bounded memory), committed to the resumable [`staging`](super::staging) files; the HDF5 file is built from
//! them at the end and appears by rename.

use super::probe::{self, Limits, Processed, Verdict};
use super::staging::{Entry, Fingerprint, Record, Staging, Status};
use super::{check_val_split, progress_bar, val_mask, ImportOptions, SKIPPED_NAMES_SHOWN};
use crate::data::format::{write_jpeg_dataset, JpegAttrs, SplitSource};
use crate::data::{ChannelStats, DataError, EncodedMeta, EncodedSplit, Split};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The devkit's validation labels (1-based devkit ids, one per line, in sorted file-name order).
pub const DEVKIT_GROUND_TRUTH: &str = "ILSVRC2012_validation_ground_truth.txt";
/// Kaggle's validation labels (`ImageId,PredictionString`; the string's first token is the wnid).
pub const KAGGLE_VAL_SOLUTION: &str = "LOC_val_solution.csv";
/// Human class names, `n01440764 tench, Tinca tinca` per line (Caffe's and Kaggle's names for one format).
pub const SYNSET_NAME_FILES: [&str; 2] = ["synset_words.txt", "LOC_synset_mapping.txt"];
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

/// Where the validation labels came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValSource {
    ClassFolders,
    Devkit {
        ground_truth: PathBuf,
        synsets: PathBuf,
    },
    Kaggle {
        solution: PathBuf,
    },
    HeldOutOfTrain,
}

impl std::fmt::Display for ValSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValSource::ClassFolders => write!(f, "class folders"),
            ValSource::Devkit {
                ground_truth,
                synsets,
            } => write!(
                f,
                "devkit ground truth {} with synsets {}",
                ground_truth.display(),
                synsets.display()
            ),
            ValSource::Kaggle { solution } => write!(f, "Kaggle solution {}", solution.display()),
            ValSource::HeldOutOfTrain => write!(f, "held out of the training images"),
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

/// One source file.
#[derive(Debug, Clone)]
struct Item {
    path: PathBuf,
    label: u32,
    split: Split,
}

/// The source tree, listed.
struct Listing {
    class_folders: Vec<String>,
    /// Train items first, then val, each in sorted order.
    items: Vec<Item>,
    val_source: ValSource,
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
    let listing = list(root, opts, jpeg)?;
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

/// List the source tree: classes, train files, val files with their labels.
fn list(root: &Path, opts: &ImportOptions, jpeg: &JpegImportOptions) -> Result<Listing, DataError> {
    let meta = std::fs::metadata(root).map_err(|e| DataError::io(root, "cannot open", e))?;
    if !meta.is_dir() {
        return Err(DataError::bad_source(
            root,
            "imagenet: the source must be a directory",
        ));
    }
    let train_dir = root.join("train");
    if !train_dir.is_dir() {
        return Err(DataError::bad_source(
            root,
            "no train/ directory (expected SRC/train/<wnid>/<image> and SRC/val/)",
        ));
    }
    let class_folders = subdirs(&train_dir)?;
    if class_folders.is_empty() {
        return Err(DataError::bad_source(&train_dir, "no class folders"));
    }
    let mut items = Vec::new();
    for (k, name) in class_folders.iter().enumerate() {
        for path in files(&train_dir.join(name))? {
            items.push(Item {
                path,
                label: k as u32,
                split: Split::Train,
            });
        }
    }
    if items.is_empty() {
        return Err(DataError::bad_source(
            &train_dir,
            "no files in any class folder",
        ));
    }
    let val_dir = root.join("val");
    let val_source = if !val_dir.is_dir() {
        hold_out(&mut items, class_folders.len(), opts.val_split)?;
        ValSource::HeldOutOfTrain
    } else if !subdirs(&val_dir)?.is_empty() {
        items.extend(val_class_folders(&val_dir, &class_folders)?);
        ValSource::ClassFolders
    } else {
        let (val, source) = flat_val(root, &val_dir, &class_folders, jpeg)?;
        items.extend(val);
        source
    };
    Ok(Listing {
        class_folders,
        items,
        val_source,
    })
}

fn hold_out(items: &mut [Item], num_classes: usize, fraction: f64) -> Result<(), DataError> {
    check_val_split(fraction)?;
    let labels: Vec<u32> = items.iter().map(|i| i.label).collect();
    for (item, is_val) in items
        .iter_mut()
        .zip(val_mask(&labels, num_classes, fraction))
    {
        if is_val {
            item.split = Split::Val;
        }
    }
    // Keep the order train then val (the held-out images move behind the train ones).
    items.sort_by_key(|i| i.split as u8);
    Ok(())
}

fn val_class_folders(val_dir: &Path, classes: &[String]) -> Result<Vec<Item>, DataError> {
    let mut items = Vec::new();
    for name in subdirs(val_dir)? {
        let Some(k) = classes.iter().position(|c| *c == name) else {
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
    Ok(items)
}

/// A flat `val/`: the label file decides each file's class.
fn flat_val(
    root: &Path,
    val_dir: &Path,
    classes: &[String],
    jpeg: &JpegImportOptions,
) -> Result<(Vec<Item>, ValSource), DataError> {
    let label_file = match &jpeg.val_labels {
        Some(p) => p.clone(),
        None => find_label_file(root, val_dir)?,
    };
    let is_kaggle = label_file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let mut skip_names: Vec<&str> = vec![DEVKIT_GROUND_TRUTH, KAGGLE_VAL_SOLUTION];
    skip_names.extend(SYNSET_NAME_FILES);
    let val_files: Vec<PathBuf> = files(val_dir)?
        .into_iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !skip_names.contains(&name) && Some(p.as_path()) != jpeg.val_labels.as_deref()
        })
        .collect();
    let position = |wnid: &str| classes.iter().position(|c| c == wnid);
    if is_kaggle {
        let by_stem = read_kaggle(&label_file)?;
        let mut items = Vec::with_capacity(val_files.len());
        for path in val_files {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let Some((wnid, line)) = by_stem.get(stem) else {
                return Err(DataError::bad_source(
                    &path,
                    format!("no row for image id {stem:?} in {}", label_file.display()),
                ));
            };
            let label = position(wnid).ok_or_else(|| {
                DataError::bad_source(
                    &label_file,
                    format!("line {line}: class {wnid} has no train folder"),
                )
            })?;
            items.push(Item {
                path,
                label: label as u32,
                split: Split::Val,
            });
        }
        return Ok((
            items,
            ValSource::Kaggle {
                solution: label_file,
            },
        ));
    }
    let Some(synsets) = jpeg.val_synsets.clone() else {
        return Err(DataError::config(format!(
            "{}: the devkit's ground truth holds devkit class ids; pass --val-synsets FILE (one wnid per line in \
             devkit id order, e.g. from the devkit's meta.mat)",
            label_file.display()
        )));
    };
    let ids = read_devkit_ids(&label_file)?;
    if ids.len() != val_files.len() {
        return Err(DataError::bad_source(
            &label_file,
            format!(
                "{} labels for {} files in {}",
                ids.len(),
                val_files.len(),
                val_dir.display()
            ),
        ));
    }
    let order = read_first_tokens(&synsets)?;
    let mut items = Vec::with_capacity(val_files.len());
    for (line, (path, id)) in val_files.into_iter().zip(ids).enumerate() {
        let wnid = order.get(id as usize - 1).ok_or_else(|| {
            DataError::bad_source(
                &label_file,
                format!(
                    "line {}: class id {id} beyond the {} synsets of {}",
                    line + 1,
                    order.len(),
                    synsets.display()
                ),
            )
        })?;
        let label = position(wnid).ok_or_else(|| {
            DataError::bad_source(
                &synsets,
                format!("line {id}: class {wnid} has no train folder"),
            )
        })?;
        items.push(Item {
            path,
            label: label as u32,
            split: Split::Val,
        });
    }
    Ok((
        items,
        ValSource::Devkit {
            ground_truth: label_file,
            synsets,
        },
    ))
}

fn find_label_file(root: &Path, val_dir: &Path) -> Result<PathBuf, DataError> {
    let dirs = [
        root.to_path_buf(),
        val_dir.to_path_buf(),
        root.join("ILSVRC2012_devkit_t12").join("data"),
        root.join("devkit").join("data"),
    ];
    for name in [KAGGLE_VAL_SOLUTION, DEVKIT_GROUND_TRUTH] {
        if let Some(p) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            return Ok(p);
        }
    }
    Err(DataError::bad_source(
        val_dir,
        format!(
            "val/ has no class folders and no label file was found ({KAGGLE_VAL_SOLUTION} or {DEVKIT_GROUND_TRUTH} \
             in SRC or SRC/val); name one with --val-labels"
        ),
    ))
}

fn read_text(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|e| DataError::io(path, "cannot read", e))
}

/// Devkit ids, one per line, 1-based.
fn read_devkit_ids(path: &Path) -> Result<Vec<u32>, DataError> {
    let text = read_text(path)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| match l.trim().parse::<u32>() {
            Ok(id) if id >= 1 => Ok(id),
            _ => Err(DataError::bad_source(
                path,
                format!(
                    "line {}: {:?} is not a class id (1, 2, ...)",
                    i + 1,
                    l.trim()
                ),
            )),
        })
        .collect()
}

/// The first whitespace-separated token of every non-empty line.
fn read_first_tokens(path: &Path) -> Result<Vec<String>, DataError> {
    Ok(read_text(path)?
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect())
}

/// Kaggle's solution: image id -> (wnid, line number).
fn read_kaggle(path: &Path) -> Result<HashMap<String, (String, usize)>, DataError> {
    let text = read_text(path)?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim().eq_ignore_ascii_case("ImageId,PredictionString") => {}
        other => {
            return Err(DataError::bad_source(
                path,
                format!(
                    "line 1: expected the header ImageId,PredictionString, found {:?}",
                    other.map(|(_, h)| h).unwrap_or("")
                ),
            ))
        }
    }
    let mut map = HashMap::new();
    for (i, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let bad =
            || DataError::bad_source(path, format!("line {}: expected ImageId,wnid ...", i + 1));
        let (id, prediction) = line.split_once(',').ok_or_else(bad)?;
        let wnid = prediction.split_whitespace().next().ok_or_else(bad)?;
        map.insert(id.trim().to_string(), (wnid.to_string(), i + 1));
    }
    Ok(map)
}

/// Human names from a synset file in `root` when there is one, else the folder names.
fn class_names(root: &Path, folders: &[String]) -> Result<Vec<String>, DataError> {
    let Some(path) = SYNSET_NAME_FILES
        .iter()
        .map(|n| root.join(n))
        .find(|p| p.is_file())
    else {
        return Ok(folders.to_vec());
    };
    let text = read_text(&path)?;
    let names: HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let (wnid, name) = l.split_once(char::is_whitespace)?;
            Some((wnid, name.trim()))
        })
        .collect();
    Ok(folders
        .iter()
        .map(|f| {
            names
                .get(f.as_str())
                .map_or_else(|| f.clone(), |n| n.to_string())
        })
        .collect())
}

/// Names of the subdirectories of `dir`, sorted.
fn subdirs(dir: &Path) -> Result<Vec<String>, DataError> {
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

/// The regular files directly inside `dir`, sorted by name.
fn files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
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
