//! Where training batches come from: the HDF5 loader (see `parts`) or a synthetic source for tests and benchmarks.

use super::Result;
use crate::data::mixing::MixTargets;
use candle_core::{Device, Tensor};

/// One batch on the host: images f32 `[B, C, H, W]` (normalised) or u8 `[B, H, W, 3]` (JPEG data, normalised on the
/// device by [`crate::data::model_input`]), labels u32 `[B]`.
#[derive(Debug, Clone)]
pub struct HostBatch {
    pub images: Tensor,
    pub labels: Tensor,
    /// The second labels and first-label weights of a MixUp/CutMix batch; `None` for hard labels.
    pub mix: Option<MixTargets>,
}

impl HostBatch {
    /// A batch with hard labels.
    pub fn new(images: Tensor, labels: Tensor) -> Self {
        Self {
            images,
            labels,
            mix: None,
        }
    }

    pub fn len(&self) -> usize {
        self.labels.dims().first().copied().unwrap_or(0)
    }

    /// Images `start..start + len` (a micro-batch), labels and mix targets alike.
    pub fn slice(&self, start: usize, len: usize) -> Result<HostBatch> {
        let mix = match &self.mix {
            Some(m) => Some(MixTargets {
                labels_b: m.labels_b.narrow(0, start, len)?,
                weight_a: m.weight_a.narrow(0, start, len)?,
            }),
            None => None,
        };
        Ok(HostBatch {
            images: self.images.narrow(0, start, len)?,
            labels: self.labels.narrow(0, start, len)?,
            mix,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One evaluation pass, batch by batch.
pub type EvalBatches<'a> = Box<dyn Iterator<Item = Result<HostBatch>> + 'a>;

/// Shape of the data a source yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceInfo {
    pub num_classes: usize,
    pub in_channels: usize,
    pub resolution: usize,
    pub train_images: usize,
    pub val_images: usize,
}

/// A source of training batches (endless, epochs wrap) and evaluation passes.
pub trait BatchSource {
    fn info(&self) -> SourceInfo;
    /// The next training batch.
    fn next_train(&mut self) -> Result<HostBatch>;
    /// Where the training iterator stands after the last batch it returned, serialised (for exact resume).
    fn position(&self) -> serde_json::Value;
    /// The validation batches of one evaluation pass over at most `max_images` images (0: all), streamed so a
    /// large validation split never sits in memory at once.
    fn eval_batches(&mut self, max_images: usize) -> Result<EvalBatches<'_>>;
}

/// A deterministic, learnable synthetic data set: class `k` images are a fixed per-class pattern plus noise.
/// The n-th training batch depends only on (seed, n), so positions resume exactly.
pub struct SyntheticSource {
    info: SourceInfo,
    batch_size: usize,
    seed: u64,
    next_batch: u64,
    patterns: Tensor,
}

impl SyntheticSource {
    pub fn new(info: SourceInfo, batch_size: usize, seed: u64) -> Result<Self> {
        let dims = (
            info.num_classes,
            info.in_channels,
            info.resolution,
            info.resolution,
        );
        let n = dims.0 * dims.1 * dims.2 * dims.3;
        let vals: Vec<f32> = (0..n)
            .map(|i| hash_unit(seed ^ 0x9e37_79b9, i as u64) * 2.0 - 1.0)
            .collect();
        let patterns = Tensor::from_vec(vals, dims, &Device::Cpu)?;
        Ok(Self {
            info,
            batch_size: batch_size.max(1),
            seed,
            next_batch: 0,
            patterns,
        })
    }

    /// Continue from a position written by [`BatchSource::position`].
    pub fn seek(&mut self, position: &serde_json::Value) {
        if let Some(n) = position.get("batch").and_then(|v| v.as_u64()) {
            self.next_batch = n;
        }
    }

    fn make_batch(&self, stream: u64, index: u64, size: usize) -> Result<HostBatch> {
        let k = self.info.num_classes.max(1);
        let labels: Vec<u32> = (0..size)
            .map(|i| (hash_u64(self.seed ^ stream, index * 1_000_003 + i as u64) % k as u64) as u32)
            .collect();
        let per = self.info.in_channels * self.info.resolution * self.info.resolution;
        let noise: Vec<f32> = (0..size * per)
            .map(|j| {
                (hash_unit(self.seed ^ stream ^ 0x5555, index * 7_919_993 + j as u64) - 0.5) * 1.5
            })
            .collect();
        let noise = Tensor::from_vec(
            noise,
            (
                size,
                self.info.in_channels,
                self.info.resolution,
                self.info.resolution,
            ),
            &Device::Cpu,
        )?;
        let lab = Tensor::from_vec(labels, size, &Device::Cpu)?;
        let images = (self.patterns.index_select(&lab, 0)? + noise)?;
        Ok(HostBatch::new(images, lab))
    }
}

impl BatchSource for SyntheticSource {
    fn info(&self) -> SourceInfo {
        self.info
    }

    fn next_train(&mut self) -> Result<HostBatch> {
        let b = self.make_batch(1, self.next_batch, self.batch_size)?;
        self.next_batch += 1;
        Ok(b)
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({ "batch": self.next_batch })
    }

    fn eval_batches(&mut self, max_images: usize) -> Result<EvalBatches<'_>> {
        let total = if max_images == 0 {
            self.info.val_images
        } else {
            max_images.min(self.info.val_images)
        };
        let mut out = Vec::new();
        let mut done = 0;
        let mut index = 0;
        while done < total {
            let size = self.batch_size.min(total - done);
            out.push(self.make_batch(2, index, size)?);
            done += size;
            index += 1;
        }
        Ok(Box::new(out.into_iter().map(Ok)))
    }
}

/// SplitMix64 of (seed, i): a stateless, reproducible stream.
fn hash_u64(seed: u64, i: u64) -> u64 {
    let mut z = seed
        .wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hash_unit(seed: u64, i: u64) -> f32 {
    (hash_u64(seed, i) >> 40) as f32 / (1u64 << 24) as f32
}
