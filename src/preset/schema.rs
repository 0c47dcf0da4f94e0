//! The preset schema: plain serde data, one struct per TOML section.
//!
//! The manual of every field (what it does, its unit and its range) is its entry in the field table of
//! [`super::fields`] (`nfbench preset fields`), the only copy: a field added here needs an entry there, and a test
//! holds the two in step. Unknown fields are rejected.
//!
//! `[model]` and `[data]` are declared in their own layers ([`crate::model::config`], [`crate::data::config`]) so
//! the model and the loader never import presets; they are re-exported here.

pub use super::rescue::{Remedy, RescueConfig};
pub use crate::data::config::DataConfig;
pub use crate::model::config::ModelConfig;
use serde::{Deserialize, Serialize};

/// A whole preset: what to train, on what, with which recipe, for how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Preset {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// The network.
    pub model: ModelConfig,
    /// The data set and how batches are made from it.
    pub data: DataConfig,
    /// The optimiser and its schedule.
    pub optim: OptimConfig,
    /// Adaptive Gradient Clipping.
    pub agc: AgcConfig,
    /// Length of the run, evaluation, statistics, checkpoints, device.
    pub run: RunConfig,
    /// What the trainer does when the run diverges (off by default).
    #[serde(default)]
    pub rescue: RescueConfig,
}

/// `[optim]`: SGD with Nesterov momentum, coupled weight decay, warm-up then cosine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    pub lr: f64,
    pub lr_scale: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub warmup_epochs: f64,
    pub label_smoothing: f64,
    pub ema_decay: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 0.1,
            lr_scale: 1.0,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 2e-5,
            warmup_epochs: 5.0,
            label_smoothing: 0.1,
            ema_decay: 0.0,
        }
    }
}

/// `[agc]`: Adaptive Gradient Clipping, unit-wise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgcConfig {
    pub enabled: bool,
    pub lambda: f64,
    pub eps: f64,
    pub exclude: Vec<String>,
}

impl Default for AgcConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            lambda: 0.01,
            eps: 1e-3,
            exclude: vec![crate::model::CLASSIFIER_WEIGHT.into()],
        }
    }
}

/// `[run]`: length, cadence of evaluation, statistics and checkpoints, and where it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    pub steps: u64,
    pub eval_every: u64,
    pub stats_every: u64,
    pub checkpoint_every: u64,
    pub keep_checkpoints: usize,
    pub seed: u64,
    pub device: String,
    pub dtype: String,
    pub max_bad_steps: u32,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            steps: 3000,
            eval_every: 500,
            stats_every: 50,
            checkpoint_every: 1000,
            keep_checkpoints: 3,
            seed: 0,
            device: "auto".into(),
            dtype: "f32".into(),
            max_bad_steps: 5,
        }
    }
}
