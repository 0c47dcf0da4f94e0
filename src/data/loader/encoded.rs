//! The loader over a split of JPEG bytes ([`EncodedSplit`]): each worker thread reads an image's bytes, decodes
//! and augments it ([`ImageWorker`]) and copies it into a u8 NHWC batch, which the trainer normalises on its device
//! ([`model_input`]). The batch-to-worker assignment and every random draw are the pixel loader's: batch `g` is made
//! by worker `g % workers`, its images are the epoch permutation's slice, and image `i` of it draws its crop, flip
//! and per-image ops from `rng_for(seed, [AUGMENT, epoch, batch, i])`; so batches are bit-identical across thread
//! counts and across a resume from a [`LoaderPosition`].

use super::{
    deliver, first_batch, rng_for, spawn_workers, spread_indices, Batch, EpochOrder, Loader,
    LoaderPosition, Stream, AUGMENT, EVAL_PREFETCH, EVAL_WORKERS, MAX_RESOLUTION,
};
use crate::data::augment::{EvalTransform, ImageOp, ImageWorker, InceptionCrop, TrainTransform};
use crate::data::config::DataConfig;
use crate::data::decode::{DecodeError, DecoderKind};
use crate::data::mixing::MixTargets;
use crate::data::recipe::{assemble_rgb, AugmentConfig, RecipeJob};
use crate::data::{DataError, DatasetInfo, EncodedSplit, RgbImage};
use candle_core::{DType, Device, Tensor};
use crossbeam::channel::Sender;
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// ImageNet's per-channel mean and standard deviation (0..1 scale), which DeepMind's and timm's pipelines
/// normalise JPEG data with.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How a training loader over JPEG bytes makes batches.
#[derive(Clone, Debug)]
pub struct EncodedTrainConfig {
    pub batch_size: usize,
    pub workers: usize,
    /// Ready batches queued ahead of the consumer.
    pub prefetch: usize,
    pub seed: u64,
    pub decoder: DecoderKind,
    pub transform: TrainTransform,
    /// RandAugment and MixUp/CutMix (the NFNet recipe), with the pixel loader's random streams.
    pub augment: AugmentConfig,
}

impl EncodedTrainConfig {
    /// A preset's `[data]` with the run's seed, at `resolution` (the preset's, or the architecture's when it is 0).
    pub fn from_preset(data: &DataConfig, seed: u64, resolution: u32) -> Self {
        Self {
            batch_size: data.batch_size,
            workers: data.workers,
            prefetch: data.prefetch,
            seed,
            decoder: data.decoder.kind(),
            transform: TrainTransform {
                resolution,
                hflip: data.hflip,
                crop: InceptionCrop::default(),
                ops: Vec::new(),
            },
            augment: AugmentConfig::default(),
        }
    }

    /// Apply the recipe's RandAugment and MixUp/CutMix (`[augment]`).
    pub fn with_recipe(mut self, augment: AugmentConfig) -> Self {
        self.augment = augment;
        self
    }

    /// Add a per-image op (RandAugment), run after crop, resize and flip.
    pub fn with_op(mut self, op: Arc<dyn ImageOp>) -> Self {
        self.transform.ops.push(op);
        self
    }
}

/// How an evaluation loader over JPEG bytes makes batches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EncodedEvalConfig {
    pub batch_size: usize,
    /// Images drawn uniformly at random with a fixed seed; 0: the whole split.
    pub max_images: usize,
    pub decoder: DecoderKind,
    pub transform: EvalTransform,
}

/// The decoded, augmented images of a batch as the trainer's input: f32 `[B, 3, H, W]` on `device`, normalised by
/// ImageNet's mean and std. A u8 `[B, H, W, 3]` batch (JPEG data) is moved as bytes and converted there; an f32
/// batch (pixel data sets, already normalised) is only moved.
pub fn model_input(images: &Tensor, device: &Device) -> candle_core::Result<Tensor> {
    if images.dtype() != DType::U8 {
        return images.to_device(device);
    }
    let x = images
        .to_device(device)?
        .to_dtype(DType::F32)?
        .permute((0, 3, 1, 2))?;
    let scale = |v: [f32; 3]| Tensor::from_vec(v.map(|m| m * 255.0).to_vec(), (1, 3, 1, 1), device);
    x.broadcast_sub(&scale(IMAGENET_MEAN)?)?
        .broadcast_div(&scale(IMAGENET_STD)?)
}

/// What a JPEG loader's workers share.
struct EncodedShared {
    split: Arc<dyn EncodedSplit>,
    name: String,
    side: usize,
    decoder: DecoderKind,
    stop: Arc<AtomicBool>,
}

impl EncodedShared {
    fn stream(&self) -> Stream {
        Stream {
            stop: Arc::clone(&self.stop),
            name: self.name.clone(),
            side: self.side,
        }
    }
}

fn check_side(resolution: u32) -> Result<usize, DataError> {
    if resolution == 0 || resolution > MAX_RESOLUTION {
        return Err(DataError::config(format!(
            "a JPEG data set needs a resolution from 1 to {MAX_RESOLUTION}, got {resolution}"
        )));
    }
    Ok(resolution as usize)
}

impl Loader {
    /// An endless stream of training batches from `split`, epoch after epoch, starting at `start`; u8 NHWC batches
    /// (see [`model_input`]). `info` describes the data set (classes, counts) for [`Loader::info`].
    pub fn train_encoded(
        info: DatasetInfo,
        split: Arc<dyn EncodedSplit>,
        cfg: &EncodedTrainConfig,
        start: LoaderPosition,
    ) -> Result<Loader, DataError> {
        for (field, v) in [
            ("batch_size", cfg.batch_size),
            ("workers", cfg.workers),
            ("prefetch", cfg.prefetch),
        ] {
            if v == 0 {
                return Err(DataError::config(format!(
                    "data.{field} must be at least 1"
                )));
            }
        }
        let side = check_side(cfg.transform.resolution)?;
        let name = info.path.display().to_string();
        let n = split.len();
        // With mixing each output image is made from two sources, so an epoch has half the batches.
        let rows = cfg.batch_size * cfg.augment.mixing.rows_per_image();
        let batches_per_epoch = (n / rows) as u64;
        if batches_per_epoch == 0 {
            return Err(DataError::config(format!(
                "{name}: the train split has {n} images, fewer than one batch of {rows} source images"
            )));
        }
        let first = first_batch(start, batches_per_epoch)?;
        let shared = Arc::new(EncodedShared {
            split,
            name,
            side,
            decoder: cfg.decoder,
            stop: Arc::new(AtomicBool::new(false)),
        });
        let workers = cfg.workers;
        let capacity = cfg.prefetch.div_ceil(workers).max(1);
        let channels = spawn_workers("jpeg", workers, capacity, |w, tx| {
            let shared = Arc::clone(&shared);
            let cfg = cfg.clone();
            move || {
                encoded_train_worker(
                    &shared,
                    &cfg,
                    batches_per_epoch,
                    first + w as u64,
                    workers as u64,
                    &tx,
                )
            }
        })?;
        Ok(Loader::over(
            info,
            channels,
            shared.stream(),
            None,
            batches_per_epoch,
        ))
    }

    /// `split` once, in order (or a fixed random subset of `max_images`), cropped for evaluation, in batches of
    /// `batch_size` (the last may be smaller); u8 NHWC batches.
    pub fn eval_encoded(
        info: DatasetInfo,
        split: Arc<dyn EncodedSplit>,
        cfg: &EncodedEvalConfig,
    ) -> Result<Loader, DataError> {
        if cfg.batch_size == 0 {
            return Err(DataError::config(
                "evaluation batch size must be at least 1",
            ));
        }
        let side = check_side(cfg.transform.resolution)?;
        let indices = Arc::new(spread_indices(split.len(), cfg.max_images));
        let total = indices.len().div_ceil(cfg.batch_size);
        let shared = Arc::new(EncodedShared {
            split,
            name: info.path.display().to_string(),
            side,
            decoder: cfg.decoder,
            stop: Arc::new(AtomicBool::new(false)),
        });
        let workers = EVAL_WORKERS.min(total).max(1);
        let cfg = *cfg;
        let channels = spawn_workers("jpeg-eval", workers, EVAL_PREFETCH, |w, tx| {
            let shared = Arc::clone(&shared);
            let indices = Arc::clone(&indices);
            move || encoded_eval_worker(&shared, &indices, &cfg, w, workers, &tx)
        })?;
        Ok(Loader::over(
            info,
            channels,
            shared.stream(),
            Some(total),
            total as u64,
        ))
    }
}

/// A worker's decoder, or the error that ends it before its first batch.
fn image_worker(shared: &EncodedShared) -> Result<ImageWorker, DataError> {
    ImageWorker::new(shared.decoder).map_err(|source| DataError::Decode {
        image: shared.name.clone(),
        source,
    })
}

fn encoded_train_worker(
    shared: &EncodedShared,
    cfg: &EncodedTrainConfig,
    batches_per_epoch: u64,
    first: u64,
    step: u64,
    tx: &Sender<Result<Batch, DataError>>,
) {
    let mut worker = match image_worker(shared) {
        Ok(w) => w,
        Err(e) => {
            deliver(tx, Err(e));
            return;
        }
    };
    let mut order = EpochOrder::new(
        shared.split.len(),
        cfg.batch_size * cfg.augment.mixing.rows_per_image(),
        batches_per_epoch,
        cfg.seed,
    );
    let mut bytes = Vec::new();
    let mut global = first;
    while !shared.stop.load(Ordering::Relaxed) {
        let plan = order.plan(global);
        let job = RecipeJob::of(cfg.augment, cfg.seed, plan.epoch, plan.batch);
        let decoded = decode_rows(shared, &plan.indices, &mut bytes, |i, b| {
            let mut rng: ChaCha8Rng =
                rng_for(cfg.seed, &[AUGMENT, plan.epoch, plan.batch, i as u64]);
            worker.train_image(b, &cfg.transform, &mut rng)
        });
        let batch = decoded.and_then(|(images, labels)| match job {
            None => rgb_batch(&images, labels, None, shared.side, plan.next),
            Some(job) => {
                let a = assemble_rgb(images, &labels, &job)?;
                rgb_batch(&a.images, a.labels, a.mix, shared.side, plan.next)
            }
        });
        if !deliver(tx, batch) {
            return;
        }
        global += step;
    }
}

fn encoded_eval_worker(
    shared: &EncodedShared,
    indices: &[usize],
    cfg: &EncodedEvalConfig,
    w: usize,
    workers: usize,
    tx: &Sender<Result<Batch, DataError>>,
) {
    let mut worker = match image_worker(shared) {
        Ok(w) => w,
        Err(e) => {
            deliver(tx, Err(e));
            return;
        }
    };
    let total = indices.len().div_ceil(cfg.batch_size);
    let mut bytes = Vec::new();
    let mut b = w;
    while b < total && !shared.stop.load(Ordering::Relaxed) {
        let rows = &indices[b * cfg.batch_size..((b + 1) * cfg.batch_size).min(indices.len())];
        let position = LoaderPosition {
            epoch: 0,
            batch: b as u64 + 1,
        };
        let batch = decode_rows(shared, rows, &mut bytes, |_, bytes| {
            worker.eval_image(bytes, &cfg.transform)
        })
        .and_then(|(images, labels)| rgb_batch(&images, labels, None, shared.side, position));
        if !deliver(tx, batch) {
            return;
        }
        b += workers;
    }
}

/// Read, decode and augment the images `indices` of the split (`make(i, bytes)` for image `i` of the batch).
fn decode_rows(
    shared: &EncodedShared,
    indices: &[usize],
    bytes: &mut Vec<u8>,
    mut make: impl FnMut(usize, &[u8]) -> Result<RgbImage, DecodeError>,
) -> Result<(Vec<RgbImage>, Vec<u32>), DataError> {
    let mut images = Vec::with_capacity(indices.len());
    let mut labels = Vec::with_capacity(indices.len());
    for (i, &index) in indices.iter().enumerate() {
        shared.split.read_into(index, bytes)?;
        let image = make(i, bytes).map_err(|source| DataError::Decode {
            image: format!("{}: {}", shared.name, shared.split.describe(index)),
            source,
        })?;
        images.push(image);
        labels.push(shared.split.label(index));
    }
    Ok((images, labels))
}

/// One u8 `[B, side, side, 3]` batch of `images`, with the recipe's mix targets (second label, first weight) if any.
fn rgb_batch(
    images: &[RgbImage],
    labels: Vec<u32>,
    mix: Option<(Vec<u32>, Vec<f32>)>,
    side: usize,
    position: LoaderPosition,
) -> Result<Batch, DataError> {
    let len = side * side * RgbImage::CHANNELS;
    let mut pixels = vec![0u8; images.len() * len];
    for (image, out) in images.iter().zip(pixels.chunks_exact_mut(len)) {
        out.copy_from_slice(image.pixels());
    }
    let b = images.len();
    let tensor_err =
        |e: candle_core::Error| DataError::config(format!("building the batch tensor: {e}"));
    let cpu = &Device::Cpu;
    let mix = match mix {
        Some((labels_b, weight_a)) => Some(MixTargets {
            labels_b: Tensor::from_vec(labels_b, b, cpu).map_err(tensor_err)?,
            weight_a: Tensor::from_vec(weight_a, b, cpu).map_err(tensor_err)?,
        }),
        None => None,
    };
    Ok(Batch {
        images: Tensor::from_vec(pixels, (b, side, side, RgbImage::CHANNELS), cpu)
            .map_err(tensor_err)?,
        labels: Tensor::from_vec(labels, b, cpu).map_err(tensor_err)?,
        mix,
        position,
    })
}
