//! Data sets: the HDF5 layout, importers (CIFAR binary, IDX, class folders) and the prefetching loader.
//!
//! - [`format`]: the file layout, [`DatasetInfo::open`] (checks a file), [`DatasetWriter`] (writes one).
//! - [`import`]: `nfbench data import` for each source format; [`inspect`](mod@inspect): `nfbench data inspect`.
//! - [`image`]: [`RgbImage`], a decoded image; [`encoded`]: [`EncodedSplit`], a split of JPEG bytes read by index.
//! - [`loader`]: [`Loader`], batches for the trainer from worker threads; [`augment`]: the per-image transforms.
//!
//! # The trainer's side
//!
//! ```no_run
//! use nfbench::data::{DatasetInfo, Loader, LoaderConfig, LoaderPosition, Split};
//! # fn demo(preset: &nfbench::preset::schema::Preset) -> Result<(), nfbench::data::DataError> {
//! let info = DatasetInfo::open(&preset.data.path)?; // num_classes, channels, height, width, counts, mean/std
//! let cfg = LoaderConfig::from_preset(&preset.data, preset.run.seed);
//! // Endless: epoch after epoch, reshuffled from the seed; the last partial batch of an epoch is dropped.
//! let mut train = Loader::train(&preset.data.path, &cfg, LoaderPosition::default())?;
//! let batch = train.next().expect("the training stream never ends")?;
//! // batch.images: f32 [B, C, H, W] normalised, CPU; batch.labels: u32 [B];
//! // batch.position: where to resume to get the next batch (store it in checkpoints).
//! let eval_res = nfbench::data::eval_resolution(&preset.data);
//! for batch in Loader::eval(&preset.data.path, Split::Val, 256, eval_res, preset.data.eval_images)? {
//!     let _batch = batch?; // the split once, in order, no augmentation; the last batch may be smaller
//! }
//! # Ok(()) }
//! ```
//!
//! Batch contents depend only on (seed, epoch, batch index), never on thread timing, so resuming from a stored
//! [`LoaderPosition`] reproduces an uninterrupted run. Dropping a [`Loader`] stops and joins its threads.
//! Every error is a [`DataError`] naming the file and the reason.

pub mod augment;
pub mod config;
pub mod decode;
pub mod encoded;
pub mod encoded_folder;
mod error;
pub mod format;
pub mod image;
pub mod import;
pub mod inspect;
pub mod loader;
pub mod mixing;
pub mod open;
pub mod randaugment;
pub mod recipe;

pub use config::DataConfig;
pub use encoded::{EncodedMeta, EncodedSplit, MemorySplit};
pub use encoded_folder::FolderSplit;
pub use error::DataError;
pub use format::{ChannelStats, DatasetInfo, DatasetWriter, ImageShape, Split, FORMAT_VERSION};
pub use image::RgbImage;
pub use import::{ImportOptions, ImportSummary};
pub use inspect::{inspect, InspectReport};
pub use loader::{
    eval_resolution, model_input, Batch, EncodedEvalConfig, EncodedTrainConfig, Loader,
    LoaderConfig, LoaderPosition,
};
pub use open::{open_dataset, OpenedData};
pub use recipe::{AugmentConfig, Mixing};
