//! Presets: TOML files under `presets/`, validated, inherited with `extends`, watched and applied live.

pub mod schema;

pub use schema::{AgcConfig, DataConfig, ModelConfig, OptimConfig, Preset, RunConfig};
