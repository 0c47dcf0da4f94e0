//! The preset schema: plain serde data, one struct per TOML section.
//!
//! Every field's doc comment is the user's manual: `nfbench preset fields` lists them (see `fields.rs`), so keep
//! each one a complete sentence that says what the field does, its unit and its range. Unknown fields are rejected.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A whole preset: what to train, on what, with which recipe, for how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Preset {
    /// Another preset file this one inherits from (a path relative to this file); fields set here override it.
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
}

/// `[model]`: which network and its normaliser-free knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Architecture name as listed by `nfbench model list` (e.g. `nf_resnet_cifar`, `nf_resnet50`, `nfnet_f0`,
    /// `bn_resnet50`, `plain_resnet50`).
    pub name: String,
    /// Residual scale alpha: each block adds alpha * skip_gain * f(x) to the stream. 0 < alpha <= 1; changing it
    /// live recomputes every downstream beta from the predicted variance. Live.
    pub alpha: f64,
    /// Initial value of each block's learnable SkipInit gain. 0 makes the network the identity at init; 1 shows the
    /// alpha^2 variance staircase.
    pub skip_gain_init: f64,
    /// Nonlinearity, overriding the architecture's default (relu, gelu, silu, elu, leaky_relu, relu6, tanh,
    /// sigmoid, softplus, identity). Empty keeps the default.
    pub activation: String,
    /// Maximum stochastic-depth drop rate r; block i of n drops its residual branch with probability r * i / n.
    /// 0 <= r < 1.
    pub stochastic_depth: f64,
    /// Dropout rate before the classifier; a negative value keeps the architecture's default. -1 or 0 <= p < 1.
    pub dropout: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            name: "nf_resnet_cifar".into(),
            alpha: 0.2,
            skip_gain_init: 0.0,
            activation: String::new(),
            stochastic_depth: 0.0,
            dropout: -1.0,
        }
    }
}

/// `[data]`: the data set file and batch construction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// The HDF5 data set (see `nfbench data import`); a relative path is taken from the working directory.
    pub path: PathBuf,
    /// Images per training step. >= 1.
    pub batch_size: usize,
    /// Training resolution in pixels (square); 0 keeps the data set's own.
    pub resolution: u32,
    /// Evaluation resolution in pixels; 0 uses the training resolution.
    pub eval_resolution: u32,
    /// Zero padding, in pixels, for the random-crop augmentation; 0 disables random crops.
    pub crop_padding: u32,
    /// Randomly flip training images left-right.
    pub hflip: bool,
    /// Loader threads that read, augment and normalise batches. >= 1.
    pub workers: usize,
    /// Ready batches the loader keeps queued ahead of the trainer. >= 1.
    pub prefetch: usize,
    /// Validation images used per evaluation; 0 evaluates the whole validation split.
    pub eval_images: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("data/cifar10-subset.h5"),
            batch_size: 64,
            resolution: 0,
            eval_resolution: 0,
            crop_padding: 4,
            hflip: true,
            workers: 2,
            prefetch: 4,
            eval_images: 0,
        }
    }
}

/// `[optim]`: SGD with Nesterov momentum, coupled weight decay, warm-up then cosine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Base learning rate at batch 256; the effective rate is lr * batch_size / 256 * lr_scale. Finite, >= 0. Live.
    pub lr: f64,
    /// Live multiplier on the scheduled learning rate (1 = as scheduled). Finite, >= 0. Live.
    pub lr_scale: f64,
    /// Momentum coefficient. 0 <= momentum < 1. Live.
    pub momentum: f64,
    /// Use Nesterov momentum (the NFNet recipe).
    pub nesterov: bool,
    /// Coupled weight decay added to the gradient; gains, biases and skip gains are never decayed. >= 0. Live.
    pub weight_decay: f64,
    /// Linear warm-up length in epochs, from 0 to the peak rate. >= 0.
    pub warmup_epochs: f64,
    /// Label smoothing of the cross-entropy targets. 0 <= s < 1.
    pub label_smoothing: f64,
    /// Decay of the exponential moving average of the weights used for evaluation; 0 disables EMA. 0 <= d < 1.
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
    /// Clip gradients adaptively. Live.
    pub enabled: bool,
    /// Clipping threshold lambda: a unit's gradient norm is capped at lambda * max(||W_u||, eps). > 0. Live.
    pub lambda: f64,
    /// Floor on the weight norm in the threshold. > 0.
    pub eps: f64,
    /// Parameter names never clipped (exact names as in the AGC pane, or a prefix ending in `*`).
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
    /// Training steps in the run; the cosine schedule ends here. >= 1.
    pub steps: u64,
    /// Evaluate on the validation split every this many steps (and at the end); 0 only at the end.
    pub eval_every: u64,
    /// Compute per-layer AGC and signal-propagation statistics every this many steps. >= 1. Live.
    pub stats_every: u64,
    /// Write a checkpoint every this many steps; 0 only at the end and on request.
    pub checkpoint_every: u64,
    /// Checkpoints kept besides the best one. >= 1.
    pub keep_checkpoints: usize,
    /// Seed for initialisation, data order and augmentation.
    pub seed: u64,
    /// Where to train: `auto` (a GPU when there is one), `cpu`, or `cuda:N`.
    pub device: String,
    /// Activation precision: `f32`, or `bf16` (GPU only; master weights and AGC stay f32).
    pub dtype: String,
    /// Consecutive non-finite steps after which the trainer pauses itself. >= 1.
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
