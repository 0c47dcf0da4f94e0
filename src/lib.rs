//! nfbench: a terminal workbench for training Normalizer-Free ResNets and NFNets with Adaptive Gradient Clipping.
//!
//! The crate is laid out by responsibility:
//! - [`model`]: NF-ResNets, NFNets and their BatchNorm / plain baselines, with signal-propagation statistics.
//! - [`kernels`]: custom candle ops (convolution, pooling, weight standardisation) with their own backward passes.
//! - [`optim`]: Adaptive Gradient Clipping, SGD with Nesterov momentum, schedules, EMA.
//! - [`data`]: the HDF5 data-set layout, importers, and the prefetching loader.
//! - [`train`]: the background trainer and the typed messages it exchanges with the outside.
//! - [`tui`]: the ratatui workbench, one file per pane.
//! - [`preset`]: TOML presets: schema, validation, `extends`, hot reload.
//! - [`record`]: run directories, the HDF5 metrics log, checkpoints, replay and reports.
//! - [`cli`]: the command line, one file per command group.

pub mod cli;
pub mod data;
pub mod kernels;
pub mod model;
pub mod optim;
pub mod preset;
pub mod record;
pub mod train;
pub mod tui;
