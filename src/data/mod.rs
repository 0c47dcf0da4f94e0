//! Data sets: the HDF5 layout, importers (CIFAR binary, IDX, class folders) and the prefetching loader.
//!
//! - [`format`]: the file layout, [`DatasetInfo::open`] (checks a file), [`DatasetWriter`] (writes one).
//! - [`import`]: `nfbench data import` for each source format.

mod error;
pub mod format;
pub mod import;
pub mod inspect;

pub use error::DataError;
pub use format::{ChannelStats, DatasetInfo, DatasetWriter, ImageShape, Split, FORMAT_VERSION};
pub use import::{ImportOptions, ImportSummary};
pub use inspect::{inspect, InspectReport};
