//! nfbench: a terminal workbench for training Normalizer-Free ResNets and NFNets with Adaptive Gradient Clipping.
//!
//! The crate is laid out by responsibility, in layers from the bottom up; a module uses only the layers below it
//! (`tests/architecture_layers.rs` reads every `crate::` / `super::` path and fails on one against the order, or on
//! sibling files that use each other):
//! 1. [`kernels`]: custom candle ops (convolution, pooling, weight standardisation) with their own backward passes.
//! 2. [`model`]: NF-ResNets, NFNets and their BatchNorm / plain baselines, with signal-propagation statistics; then
//!    [`weights`]: timm / DeepMind weights imported so our networks compute their function, loaded, exported.
//! 3. [`optim`]: Adaptive Gradient Clipping, SGD with Nesterov momentum, schedules, EMA.
//! 4. [`data`]: the HDF5 data-set layout, importers, and the prefetching loader.
//! 5. [`preset`]: TOML presets: schema, validation, `extends`, hot reload, the live-parameter table.
//! 6. [`train`]: the background trainer and the typed messages it exchanges with the outside.
//! 7. [`record`]: run directories, the HDF5 metrics log, checkpoints, replay and reports; run start-up
//!    ([`record::session`]), which hands the trainer its checkpoint writer.
//! 8. [`attach`]: the run's socket, over which `nfbench attach` reopens the workbench on a live run.
//! 9. [`tui`]: the ratatui workbench, one file per pane.
//! 10. [`cli`]: the command line, one file per command group.

pub mod attach;
pub mod cli;
pub mod data;
pub mod kernels;
pub mod model;
pub mod optim;
pub mod preset;
pub mod record;
pub mod train;
pub mod tui;
pub mod weights;
