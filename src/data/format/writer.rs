//! Writing a data-set file: the images and labels split by split, then the attributes, then the move into place.

use super::{
    ImageShape, Split, ATTR_CLASS_NAMES, ATTR_FORMAT_VERSION, ATTR_MEAN, ATTR_SOURCE, ATTR_STD,
    DEFLATE_LEVEL, FORMAT_VERSION_PIXELS,
};
use crate::data::DataError;
use hdf5::types::VarLenUnicode;
use hdf5::{Dataset, File, Group};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Running per-channel sums for the mean and std attributes (f64 sums of u8 values stay exact far past ImageNet).
#[derive(Debug, Clone)]
pub struct ChannelStats {
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    count: u64,
}

impl ChannelStats {
    pub fn new(channels: usize) -> Self {
        Self {
            sum: vec![0.0; channels],
            sum_sq: vec![0.0; channels],
            count: 0,
        }
    }

    /// Add HWC u8 pixels (any number of whole pixels).
    pub fn add(&mut self, pixels: &[u8]) {
        let c = self.sum.len();
        // Per-channel histograms keep the inner loop to an increment; the sums come from 256 bins at the end.
        let mut hist = vec![[0u64; 256]; c];
        for px in pixels.chunks_exact(c) {
            for (h, &v) in hist.iter_mut().zip(px) {
                h[v as usize] += 1;
            }
        }
        self.add_histogram(&hist);
    }

    /// Add per-channel histograms of u8 values (one `[u64; 256]` per channel). Summing integer histograms first
    /// and adding them once makes the result independent of the order images were counted in.
    pub fn add_histogram(&mut self, hist: &[[u64; 256]]) {
        let c = self.sum.len();
        for (ch, h) in hist.iter().enumerate().take(c) {
            for (v, &n) in h.iter().enumerate() {
                let x = v as f64 / 255.0;
                self.sum[ch] += x * n as f64;
                self.sum_sq[ch] += x * x * n as f64;
            }
        }
        self.count += hist.first().map_or(0, |h| h.iter().sum::<u64>());
    }

    /// Per-channel mean and (population) std on the 0..1 scale.
    pub fn mean_std(&self) -> (Vec<f64>, Vec<f64>) {
        let n = self.count.max(1) as f64;
        let mean: Vec<f64> = self.sum.iter().map(|s| s / n).collect();
        let std = self
            .sum_sq
            .iter()
            .zip(&mean)
            .map(|(sq, m)| (sq / n - m * m).max(0.0).sqrt())
            .collect();
        (mean, std)
    }
}

/// One split being written: resizable datasets appended to batch by batch.
struct SplitWriter {
    images: Dataset,
    labels: Dataset,
    len: usize,
}

/// Writes a data-set file. Create it, [`append`](Self::append) images split by split, then [`finish`](Self::finish).
/// Until `finish` succeeds the data lives in `<out>.partial`; dropping an unfinished writer deletes that file.
pub struct DatasetWriter {
    out: PathBuf,
    tmp: PathBuf,
    /// The open file and its datasets (closed together before the file is moved into place).
    open: Option<OpenFile>,
    shape: ImageShape,
    class_names: Vec<String>,
    stats: ChannelStats,
    finished: bool,
}

struct OpenFile {
    /// Train then val.
    splits: [SplitWriter; 2],
    file: File,
}

impl DatasetWriter {
    pub fn create(
        out: &Path,
        shape: ImageShape,
        class_names: Vec<String>,
    ) -> Result<Self, DataError> {
        if shape.bytes() == 0 {
            return Err(DataError::config(format!(
                "{}: empty image shape {shape:?}",
                out.display()
            )));
        }
        if class_names.is_empty() {
            return Err(DataError::config(format!("{}: no classes", out.display())));
        }
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| DataError::io(dir, "cannot create directory", e))?;
        }
        let mut tmp = out.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        let file = File::create(&tmp).map_err(|e| DataError::hdf5(&tmp, "cannot create", e))?;
        let train = create_split(&file, &tmp, Split::Train, shape)?;
        let val = create_split(&file, &tmp, Split::Val, shape)?;
        Ok(Self {
            out: out.to_path_buf(),
            tmp,
            open: Some(OpenFile {
                splits: [train, val],
                file,
            }),
            shape,
            class_names,
            stats: ChannelStats::new(shape.channels),
            finished: false,
        })
    }

    pub fn shape(&self) -> ImageShape {
        self.shape
    }

    pub fn len(&self, split: Split) -> usize {
        self.open
            .as_ref()
            .map_or(0, |o| o.splits[split as usize].len)
    }

    /// Append images (u8 HWC, back to back) with their labels to a split.
    pub fn append(&mut self, split: Split, images: &[u8], labels: &[u32]) -> Result<(), DataError> {
        let bytes = self.shape.bytes();
        if images.len() != labels.len() * bytes {
            return Err(DataError::config(format!(
                "{}: {} image bytes for {} labels of {bytes} bytes each",
                self.out.display(),
                images.len(),
                labels.len()
            )));
        }
        if let Some(&l) = labels
            .iter()
            .find(|&&l| l as usize >= self.class_names.len())
        {
            return Err(DataError::config(format!(
                "{}: label {l} out of range 0..{}",
                self.out.display(),
                self.class_names.len()
            )));
        }
        if labels.is_empty() {
            return Ok(());
        }
        if split == Split::Train {
            self.stats.add(images);
        }
        let shape = self.shape;
        let tmp = self.tmp.clone();
        let w = match self.open.as_mut() {
            Some(o) => &mut o.splits[split as usize],
            None => return Err(DataError::config("data-set writer already closed")),
        };
        let n = labels.len();
        let (start, end) = (w.len, w.len + n);
        let grow = |e| DataError::hdf5(&tmp, format!("growing /{split}"), e);
        w.images
            .resize((end, shape.height, shape.width, shape.channels))
            .map_err(grow)?;
        w.labels.resize(end).map_err(grow)?;
        let view =
            ndarray::ArrayView4::from_shape((n, shape.height, shape.width, shape.channels), images)
                .map_err(|e| DataError::config(format!("image buffer shape: {e}")))?;
        w.images
            .write_slice(view, (start..end, .., .., ..))
            .map_err(|e| DataError::hdf5(&tmp, format!("writing /{split}/images"), e))?;
        w.labels
            .write_slice(labels, start..end)
            .map_err(|e| DataError::hdf5(&tmp, format!("writing /{split}/labels"), e))?;
        w.len = end;
        Ok(())
    }

    /// Write the attributes, close the file and move it into place. Both splits must hold images.
    pub fn finish(mut self, source: &str) -> Result<PathBuf, DataError> {
        for split in Split::ALL {
            if self.len(split) == 0 {
                return Err(DataError::config(format!(
                    "{}: the {split} split is empty; nothing to write",
                    self.out.display()
                )));
            }
        }
        let open = self
            .open
            .take()
            .ok_or_else(|| DataError::config("data-set writer already closed"))?;
        let (mean, std) = self.stats.mean_std();
        write_attrs(
            &open.file,
            &self.tmp,
            &self.class_names,
            &mean,
            &std,
            source,
        )?;
        open.file
            .flush()
            .map_err(|e| DataError::hdf5(&self.tmp, "flushing", e))?;
        // Close the datasets and the file before the rename, so nothing writes to it afterwards.
        drop(open);
        std::fs::rename(&self.tmp, &self.out)
            .map_err(|e| DataError::io(&self.out, "cannot move into place", e))?;
        self.finished = true;
        Ok(self.out.clone())
    }
}

impl Drop for DatasetWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.open.take();
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn create_split(
    file: &File,
    path: &Path,
    split: Split,
    shape: ImageShape,
) -> Result<SplitWriter, DataError> {
    let ctx = |e| DataError::hdf5(path, format!("creating /{split}"), e);
    // No object timestamps: importing the same source twice gives byte-identical files (a stable sha256).
    let group: Group = file
        .create_group_builder()
        .obj_track_times(false)
        .create(split.group_name())
        .map_err(ctx)?;
    let rows = shape.chunk_rows();
    let images = group
        .new_dataset::<u8>()
        .chunk((rows, shape.height, shape.width, shape.channels))
        .deflate(DEFLATE_LEVEL)
        .obj_track_times(false)
        .shape((0.., shape.height, shape.width, shape.channels))
        .create("images")
        .map_err(ctx)?;
    let labels = group
        .new_dataset::<u32>()
        .chunk(4096)
        .deflate(DEFLATE_LEVEL)
        .obj_track_times(false)
        .shape(0..)
        .create("labels")
        .map_err(ctx)?;
    Ok(SplitWriter {
        images,
        labels,
        len: 0,
    })
}

fn write_attrs(
    file: &File,
    path: &Path,
    class_names: &[String],
    mean: &[f64],
    std: &[f64],
    source: &str,
) -> Result<(), DataError> {
    let ctx = |e| DataError::hdf5(path, "writing attributes", e);
    let to_vlu = |s: &str| {
        VarLenUnicode::from_str(s)
            .map_err(|e| DataError::config(format!("string {s:?} cannot be stored: {e}")))
    };
    file.new_attr::<u32>()
        .create(ATTR_FORMAT_VERSION)
        .and_then(|a| a.write_scalar(&FORMAT_VERSION_PIXELS))
        .map_err(ctx)?;
    let names = class_names
        .iter()
        .map(|s| to_vlu(s))
        .collect::<Result<Vec<_>, _>>()?;
    file.new_attr_builder()
        .with_data(names.as_slice())
        .create(ATTR_CLASS_NAMES)
        .map_err(ctx)?;
    file.new_attr_builder()
        .with_data(mean)
        .create(ATTR_MEAN)
        .map_err(ctx)?;
    file.new_attr_builder()
        .with_data(std)
        .create(ATTR_STD)
        .map_err(ctx)?;
    let source = to_vlu(source)?;
    file.new_attr::<VarLenUnicode>()
        .create(ATTR_SOURCE)
        .and_then(|a| a.write_scalar(&source))
        .map_err(ctx)?;
    Ok(())
}
