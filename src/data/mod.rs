//! Data sets: the HDF5 layout, importers (CIFAR binary, IDX, class folders) and the prefetching loader.
//!
//! - [`format`]: the file layout, [`DatasetInfo::open`] (checks a file), [`DatasetWriter`] (writes one).
//! - [`import`]: `nfbench data import` for each source format; [`inspect`](mod@inspect): `nfbench data inspect`.
//! - [`loader`]: [`Loader`], batches for the trainer from worker threads; [`augment`]: the per-image transforms.

pub mod augment;
mod error;
pub mod format;
pub mod import;
pub mod inspect;
pub mod loader;

pub use error::DataError;
pub use format::{ChannelStats, DatasetInfo, DatasetWriter, ImageShape, Split, FORMAT_VERSION};
pub use import::{ImportOptions, ImportSummary};
pub use inspect::{inspect, InspectReport};
pub use loader::{eval_resolution, Batch, Loader, LoaderConfig, LoaderPosition};
