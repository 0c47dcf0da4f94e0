//! The prefetching loader: worker threads read batches from the HDF5 file, augment and normalise them, and queue
//! ready tensors in bounded crossbeam channels.
//!
//! Determinism: batch `g` of a run (counting across epochs) is made by worker `g % workers` and handed out in order,
//! and its content depends only on (seed, epoch, batch index): the epoch's permutation comes from
//! `rng_for(seed, [PERMUTATION, epoch])` and each image's crop and flip from `rng_for(seed, [AUGMENT, epoch, batch,
//! i])`. So a loader started at a [`LoaderPosition`] yields exactly what an uninterrupted one would have from there.

use super::augment::{
    crop_flip_normalise, permutation, resize_square, rng_for, Augmentation, Normaliser,
};
use super::config::DataConfig;
use super::format::{open_images, read_labels, read_rows};
use super::mixing::MixTargets;
use super::recipe::{self, AugmentConfig, RecipeJob};
use super::{DataError, DatasetInfo, ImageShape, Split};
use candle_core::{Device, Tensor};
use crossbeam::channel::{bounded, Receiver, RecvError, Sender};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

mod encoded;
pub use encoded::{
    model_input, EncodedEvalConfig, EncodedTrainConfig, IMAGENET_MEAN, IMAGENET_STD,
};

/// HDF5 chunk cache for the loader's reads: a small data set stays decompressed in memory after its first epoch; a
/// large one is read through a bounded window.
const CHUNK_CACHE_BYTES: usize = 64 << 20;
const CHUNK_CACHE_SLOTS: usize = 10_007;
/// The largest training or evaluation resolution accepted.
pub const MAX_RESOLUTION: u32 = 4096;
/// Domain tags for [`rng_for`].
const PERMUTATION: u64 = 1;
const AUGMENT: u64 = 2;
/// Threads and queue depth of an evaluation loader.
const EVAL_WORKERS: usize = 2;
const EVAL_PREFETCH: usize = 2;

/// Where a training loader is in its stream of batches: the next batch to make is batch `batch` of epoch `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct LoaderPosition {
    pub epoch: u64,
    pub batch: u64,
}

/// How a training loader makes batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Square training resolution in pixels; 0 keeps the data set's own (which must then be square).
    pub resolution: u32,
    /// Zero padding for the random crop; 0 disables cropping.
    pub crop_padding: u32,
    pub hflip: bool,
    pub workers: usize,
    /// Ready batches queued ahead of the consumer.
    pub prefetch: usize,
    pub seed: u64,
}

impl LoaderConfig {
    /// The training loader settings of a preset's `[data]` section with the run's seed.
    pub fn from_preset(data: &DataConfig, seed: u64) -> Self {
        Self {
            batch_size: data.batch_size,
            resolution: data.resolution,
            crop_padding: data.crop_padding,
            hflip: data.hflip,
            workers: data.workers,
            prefetch: data.prefetch,
            seed,
        }
    }
}

/// The evaluation resolution a preset asks for: `eval_resolution`, or the training resolution when that is 0.
pub fn eval_resolution(data: &DataConfig) -> u32 {
    if data.eval_resolution == 0 {
        data.resolution
    } else {
        data.eval_resolution
    }
}

/// One batch, ready for the model.
#[derive(Debug, Clone)]
pub struct Batch {
    /// On the CPU: f32 `[B, C, H, W]` normalised by the data set's mean and std (decoded-pixel data sets), or u8
    /// `[B, H, W, 3]` (JPEG data sets, normalised on the device by [`model_input`]).
    pub images: Tensor,
    /// u32 `[B]`.
    pub labels: Tensor,
    /// MixUp/CutMix soft targets (the NFNet recipe); `None` for hard labels.
    pub mix: Option<MixTargets>,
    /// The position after this batch (resume from it to get the next batch).
    pub position: LoaderPosition,
}

/// What every worker needs, shared read-only.
struct Shared {
    path: PathBuf,
    /// Kept open for the life of the loader (the dataset handle must not outlive its file).
    _file: hdf5::File,
    images: hdf5::Dataset,
    labels: Vec<u32>,
    source: ImageShape,
    /// Output side in pixels.
    side: usize,
    normaliser: Normaliser,
    stop: Arc<AtomicBool>,
}

/// What a [`Loader`] keeps of its workers' shared state.
struct Stream {
    stop: Arc<AtomicBool>,
    name: String,
    side: usize,
}

impl Stream {
    fn of(shared: &Shared) -> Self {
        Self {
            stop: Arc::clone(&shared.stop),
            name: shared.path.display().to_string(),
            side: shared.side,
        }
    }
}

/// A stream of batches made on background threads. Iterate it; drop it to stop the threads.
pub struct Loader {
    info: DatasetInfo,
    receivers: Vec<Receiver<Result<Batch, DataError>>>,
    handles: Vec<JoinHandle<()>>,
    /// Set on drop: the workers' signal to stop.
    stop: Arc<AtomicBool>,
    /// What the loader reads, for messages.
    name: String,
    /// Side of the square images handed out.
    side: usize,
    next_worker: usize,
    /// Batches still to hand out (evaluation); None for the endless training stream.
    remaining: Option<usize>,
    batches_per_epoch: u64,
    done: bool,
}

impl Loader {
    /// An endless stream of training batches, epoch after epoch, starting at `start`. The last partial batch of each
    /// epoch is dropped.
    pub fn train(
        path: impl AsRef<Path>,
        cfg: &LoaderConfig,
        start: LoaderPosition,
    ) -> Result<Loader, DataError> {
        Self::train_with(path, cfg, AugmentConfig::default(), start)
    }

    /// [`Loader::train`] with the recipe's RandAugment and MixUp/CutMix. With mixing each batch reads twice its
    /// size in source images, so an epoch has half the batches.
    pub fn train_with(
        path: impl AsRef<Path>,
        cfg: &LoaderConfig,
        augment: AugmentConfig,
        start: LoaderPosition,
    ) -> Result<Loader, DataError> {
        let path = path.as_ref();
        check_config(cfg)?;
        let info = DatasetInfo::open(path)?;
        recipe::check_channels(&augment, info.shape().channels, path)?;
        let shared = Arc::new(open_shared(&info, Split::Train, cfg.resolution)?);
        let n = shared.labels.len();
        let batches_per_epoch = (n / (cfg.batch_size * augment.mixing.rows_per_image())) as u64;
        if batches_per_epoch == 0 {
            return Err(DataError::config(format!(
                "{}: the train split has {n} images, fewer than one batch of {}",
                path.display(),
                cfg.batch_size
            )));
        }
        let first = first_batch(start, batches_per_epoch)?;
        let job = TrainJob {
            batch_size: cfg.batch_size,
            batches_per_epoch,
            padding: cfg.crop_padding as usize,
            hflip: cfg.hflip,
            seed: cfg.seed,
            augment,
        };
        let workers = cfg.workers;
        let capacity = cfg.prefetch.div_ceil(workers).max(1);
        let channels = spawn_workers("loader", workers, capacity, |w, tx| {
            let shared = Arc::clone(&shared);
            move || train_worker(&shared, job, first + w as u64, workers as u64, &tx)
        })?;
        Ok(Loader::over(
            info,
            channels,
            Stream::of(&shared),
            None,
            batches_per_epoch,
        ))
    }

    /// The loader over started workers; `remaining`: batches left to hand out (`None`: endless).
    fn over(
        info: DatasetInfo,
        (receivers, handles): WorkerChannels,
        stream: Stream,
        remaining: Option<usize>,
        batches_per_epoch: u64,
    ) -> Loader {
        Loader {
            info,
            receivers,
            handles,
            stop: stream.stop,
            name: stream.name,
            side: stream.side,
            next_worker: 0,
            remaining,
            batches_per_epoch,
            done: false,
        }
    }

    /// A split once, in file order, without augmentation, in batches of `batch_size` (the last may be smaller).
    /// `resolution` 0 keeps the data set's own; `max_images` 0 takes the whole split, otherwise that many images
    /// drawn uniformly at random with a fixed seed (so a class-sorted or class-interleaved file gives a fair sample).
    pub fn eval(
        path: impl AsRef<Path>,
        split: Split,
        batch_size: usize,
        resolution: u32,
        max_images: usize,
    ) -> Result<Loader, DataError> {
        let path = path.as_ref();
        if batch_size == 0 {
            return Err(DataError::config(
                "evaluation batch size must be at least 1",
            ));
        }
        check_resolution(resolution)?;
        let info = DatasetInfo::open(path)?;
        let shared = Arc::new(open_shared(&info, split, resolution)?);
        let indices = Arc::new(spread_indices(shared.labels.len(), max_images));
        let total = indices.len().div_ceil(batch_size);
        let workers = EVAL_WORKERS.min(total).max(1);
        let channels = spawn_workers("eval", workers, EVAL_PREFETCH, |w, tx| {
            let shared = Arc::clone(&shared);
            let indices = Arc::clone(&indices);
            move || eval_worker(&shared, &indices, batch_size, w, workers, &tx)
        })?;
        Ok(Loader::over(
            info,
            channels,
            Stream::of(&shared),
            Some(total),
            total as u64,
        ))
    }

    pub fn info(&self) -> &DatasetInfo {
        &self.info
    }

    /// Full batches per training epoch (for an evaluation loader: batches in all).
    pub fn batches_per_epoch(&self) -> u64 {
        self.batches_per_epoch
    }

    /// Side of the square images this loader hands out.
    pub fn resolution(&self) -> usize {
        self.side
    }
}

impl Iterator for Loader {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.remaining == Some(0) {
            return None;
        }
        let item = match self.receivers[self.next_worker].recv() {
            Ok(item) => item,
            Err(RecvError) => Err(DataError::LoaderStopped(format!(
                "{}: worker {} ended unexpectedly",
                self.name, self.next_worker
            ))),
        };
        self.next_worker = (self.next_worker + 1) % self.receivers.len();
        if let Some(r) = self.remaining.as_mut() {
            *r -= 1;
        }
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receivers makes a worker blocked on a full queue fail its send and return.
        self.receivers.clear();
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

fn check_config(cfg: &LoaderConfig) -> Result<(), DataError> {
    if cfg.batch_size == 0 {
        return Err(DataError::config("data.batch_size must be at least 1"));
    }
    if cfg.workers == 0 {
        return Err(DataError::config("data.workers must be at least 1"));
    }
    if cfg.prefetch == 0 {
        return Err(DataError::config("data.prefetch must be at least 1"));
    }
    check_resolution(cfg.resolution)
}

fn check_resolution(resolution: u32) -> Result<(), DataError> {
    if resolution > MAX_RESOLUTION {
        return Err(DataError::config(format!(
            "resolution {resolution} is above the maximum {MAX_RESOLUTION}"
        )));
    }
    Ok(())
}

fn open_shared(info: &DatasetInfo, split: Split, resolution: u32) -> Result<Shared, DataError> {
    let path = &info.path;
    let source = info.shape();
    let side = if resolution == 0 {
        if source.height != source.width {
            return Err(DataError::config(format!(
                "{}: images are {}x{} (not square); set a resolution to resize them",
                path.display(),
                source.height,
                source.width
            )));
        }
        source.height
    } else {
        if source.channels > super::augment::MAX_RESIZE_CHANNELS
            && resolution as usize != source.height
        {
            return Err(DataError::config(format!(
                "{}: cannot resize images with {} channels",
                path.display(),
                source.channels
            )));
        }
        resolution as usize
    };
    let file = hdf5::File::with_options()
        .with_fapl(|p| p.chunk_cache(CHUNK_CACHE_SLOTS, CHUNK_CACHE_BYTES, 0.75))
        .open(path)
        .map_err(|e| DataError::hdf5(path, "cannot open", e))?;
    let labels = read_labels(&file, path, split, info.num_classes)?;
    let (images, _, _) = open_images(&file, path, split)?;
    Ok(Shared {
        path: path.clone(),
        _file: file,
        images,
        labels,
        source,
        side,
        normaliser: Normaliser::new(&info.mean, &info.std),
        stop: Arc::new(AtomicBool::new(false)),
    })
}

/// The receiving ends and join handles of a loader's worker threads, in worker order.
type WorkerChannels = (Vec<Receiver<Result<Batch, DataError>>>, Vec<JoinHandle<()>>);

/// Start `workers` threads named `nfbench-<kind>-<w>`, each with its own bounded queue of `capacity` batches;
/// `make(w, tx)` builds worker `w`'s body.
fn spawn_workers<F, B>(
    kind: &str,
    workers: usize,
    capacity: usize,
    mut make: F,
) -> Result<WorkerChannels, DataError>
where
    F: FnMut(usize, Sender<Result<Batch, DataError>>) -> B,
    B: FnOnce() + Send + 'static,
{
    let mut receivers = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    for w in 0..workers {
        let (tx, rx) = bounded(capacity);
        let handle = std::thread::Builder::new()
            .name(format!("nfbench-{kind}-{w}"))
            .spawn(make(w, tx))
            .map_err(|e| DataError::LoaderStopped(format!("cannot start a worker thread: {e}")))?;
        receivers.push(rx);
        handles.push(handle);
    }
    Ok((receivers, handles))
}

/// `k` of `n` indices, the same every call: a uniform random subset from a fixed seed, sorted for read locality.
/// Random rather than evenly strided, because a stride can alias with a periodic layout (the shipped CIFAR subset
/// interleaves its classes, so every 4th record would hold only even labels).
fn spread_indices(n: usize, k: usize) -> Vec<usize> {
    if k == 0 || k >= n {
        return (0..n).collect();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(EVAL_SUBSET_SEED);
    let mut picked = rand::seq::index::sample(&mut rng, n, k).into_vec();
    picked.sort_unstable();
    picked
}

/// Seed of the evaluation subset: fixed, so every evaluation of a run (and of every run) sees the same images.
const EVAL_SUBSET_SEED: u64 = 0x5eed_e7a1;

#[derive(Debug, Clone, Copy)]
struct TrainJob {
    batch_size: usize,
    batches_per_epoch: u64,
    padding: usize,
    hflip: bool,
    seed: u64,
    augment: AugmentConfig,
}

/// Which images batch `g` of a run holds: the epoch's permutation (cached for the current epoch) cut in batches.
struct EpochOrder {
    images: usize,
    batch_size: usize,
    batches_per_epoch: u64,
    seed: u64,
    perm: Option<(u64, Vec<u32>)>,
}

/// One batch's coordinates and images.
struct BatchPlan {
    epoch: u64,
    batch: u64,
    indices: Vec<usize>,
    /// The position after this batch.
    next: LoaderPosition,
}

impl EpochOrder {
    fn new(images: usize, batch_size: usize, batches_per_epoch: u64, seed: u64) -> Self {
        Self {
            images,
            batch_size,
            batches_per_epoch,
            seed,
            perm: None,
        }
    }

    fn plan(&mut self, global: u64) -> BatchPlan {
        let epoch = global / self.batches_per_epoch;
        let batch = global % self.batches_per_epoch;
        if self.perm.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut rng = rng_for(self.seed, &[PERMUTATION, epoch]);
            self.perm = Some((epoch, permutation(self.images, &mut rng)));
        }
        let order = self.perm.as_ref().map(|(_, p)| p.as_slice()).unwrap_or(&[]);
        let start = batch as usize * self.batch_size;
        let indices = order[start..start + self.batch_size]
            .iter()
            .map(|&i| i as usize)
            .collect();
        let next = if batch + 1 == self.batches_per_epoch {
            LoaderPosition {
                epoch: epoch + 1,
                batch: 0,
            }
        } else {
            LoaderPosition {
                epoch,
                batch: batch + 1,
            }
        };
        BatchPlan {
            epoch,
            batch,
            indices,
            next,
        }
    }
}

/// The first batch (counting across epochs) a loader started at `start` makes.
fn first_batch(start: LoaderPosition, batches_per_epoch: u64) -> Result<u64, DataError> {
    start
        .epoch
        .checked_mul(batches_per_epoch)
        .and_then(|b| b.checked_add(start.batch))
        .ok_or_else(|| DataError::config(format!("loader position {start:?} is out of range")))
}

/// Make batches `first`, `first + step`, ... until the consumer goes away or an error is sent.
fn train_worker(
    shared: &Shared,
    job: TrainJob,
    first: u64,
    step: u64,
    tx: &Sender<Result<Batch, DataError>>,
) {
    let rows = job.batch_size * job.augment.mixing.rows_per_image();
    let mut order = EpochOrder::new(shared.labels.len(), rows, job.batches_per_epoch, job.seed);
    let mut global = first;
    while !shared.stop.load(Ordering::Relaxed) {
        let plan = order.plan(global);
        let augs: Vec<Augmentation> = (0..rows as u64)
            .map(|i| {
                let mut rng = rng_for(job.seed, &[AUGMENT, plan.epoch, plan.batch, i]);
                Augmentation::draw(&mut rng, job.padding, job.hflip)
            })
            .collect();
        let recipe = RecipeJob::of(job.augment, job.seed, plan.epoch, plan.batch);
        let batch = make_batch(shared, &plan.indices, &augs, job.padding, plan.next, recipe);
        if !deliver(tx, batch) {
            return;
        }
        global += step;
    }
}

/// Hand a batch (or the error that ends this worker) to the consumer; whether the worker goes on: not after an
/// error, and not once the consumer is gone.
fn deliver(tx: &Sender<Result<Batch, DataError>>, result: Result<Batch, DataError>) -> bool {
    let failed = result.is_err();
    tx.send(result).is_ok() && !failed
}

/// Make evaluation batches `w`, `w + workers`, ... of `indices`.
fn eval_worker(
    shared: &Shared,
    indices: &[usize],
    batch_size: usize,
    w: usize,
    workers: usize,
    tx: &Sender<Result<Batch, DataError>>,
) {
    let total = indices.len().div_ceil(batch_size);
    let mut b = w;
    while b < total && !shared.stop.load(Ordering::Relaxed) {
        let rows = &indices[b * batch_size..((b + 1) * batch_size).min(indices.len())];
        let augs = vec![Augmentation::NONE; rows.len()];
        let position = LoaderPosition {
            epoch: 0,
            batch: b as u64 + 1,
        };
        if !deliver(tx, make_batch(shared, rows, &augs, 0, position, None)) {
            return;
        }
        b += workers;
    }
}

/// Read the rows, then (outside the HDF5 lock) resize, crop, flip and normalise them into one tensor.
fn make_batch(
    shared: &Shared,
    indices: &[usize],
    augs: &[Augmentation],
    padding: usize,
    position: LoaderPosition,
    recipe: Option<RecipeJob>,
) -> Result<Batch, DataError> {
    let src = shared.source;
    let raw = read_rows(&shared.images, &shared.path, indices, src.bytes())?;
    let side = shared.side;
    let c = src.channels;
    let labels: Vec<u32> = indices.iter().map(|&i| shared.labels[i]).collect();
    // The recipe's RandAugment and MixUp/CutMix replace the plain crop/flip/normalise below.
    if let Some(job) = recipe {
        let srcs = recipe::Sources {
            raw: &raw,
            shape: src,
            labels: &labels,
            augs,
            side,
            padding,
        };
        let a = recipe::assemble(srcs, &shared.normaliser, &job)?;
        return batch_of(a.images, a.labels, a.mix, (c, side), position);
    }
    let out_len = c * side * side;
    let mut images = vec![0f32; indices.len() * out_len];
    for (i, (pixels, aug)) in raw.chunks_exact(src.bytes()).zip(augs).enumerate() {
        let resized;
        let pixels = if side != src.height || side != src.width {
            resized = resize_square(pixels, src, side as u32)?;
            resized.as_slice()
        } else {
            pixels
        };
        crop_flip_normalise(
            pixels,
            side,
            padding,
            *aug,
            &shared.normaliser,
            &mut images[i * out_len..(i + 1) * out_len],
        );
    }
    batch_of(images, labels, None, (c, side), position)
}

/// The tensors of a batch of `labels.len()` images `(channels, side)`, with the recipe's mix targets if any.
fn batch_of(
    images: Vec<f32>,
    labels: Vec<u32>,
    mix: Option<(Vec<u32>, Vec<f32>)>,
    (c, side): (usize, usize),
    position: LoaderPosition,
) -> Result<Batch, DataError> {
    let b = labels.len();
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
        images: Tensor::from_vec(images, (b, c, side, side), cpu).map_err(tensor_err)?,
        labels: Tensor::from_vec(labels, b, cpu).map_err(tensor_err)?,
        mix,
        position,
    })
}

#[cfg(test)]
mod tests {
    use super::spread_indices;

    #[test]
    fn eval_subset_does_not_alias_with_interleaved_classes() {
        // The shipped CIFAR subset stores label r % 10 at record r; a stride of 4 would keep only even labels.
        let picked = spread_indices(2000, 500);
        let mut seen = [0usize; 10];
        for i in &picked {
            seen[i % 10] += 1;
        }
        assert!(
            seen.iter().all(|&c| c >= 25),
            "every class is sampled: {seen:?}"
        );
    }
}
