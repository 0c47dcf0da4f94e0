//! The model zoo: NF-ResNets, NFNets, and the BatchNorm / plain baselines the paper compares against.
//!
//! - `zoo`: the variant tables, every architecture nfbench can build as data ([`zoo::architectures`]).
//! - `plan`: [`NetPlan`], every layer's shape, parameter count and FLOPs, computed without tensors.
//! - `layers`: the WS convolution, linear, SE, BatchNorm and residual-block layers built from a plan.
//! - `network`: [`Network`], the whole net: build, forward (with signal-propagation statistics), parameters,
//!   buffers, live alpha.
//! - `activation`: [`Activation`] with its gamma; `precision`: [`Precision`] (f32 / bf16 compute);
//!   `spp`: the signal-propagation statistics of one forward pass.
//!
//! Contract used by the trainer, the CLI, the TUI and the run records (this module owns the implementation):
//! - [`Network::build`]`(&ModelConfig, num_classes, in_channels, resolution, &Device, seed)` builds any architecture
//!   of [`zoo::architectures`] by name; unknown names and bad values give a [`ModelError`] naming the field.
//!   `resolution` 0 means the architecture's training resolution; it only sets what FLOPs are counted at.
//!   Weights are drawn on the host from a seeded ChaCha8 stream per parameter name: equal seeds give identical
//!   networks on any device (exact resume depends on it).
//! - [`Network::forward`]`(&x, &ForwardOptions { train, spp, seed })` returns [`ForwardOutput`]: logits
//!   `[B, classes]` and, when `spp`, one tensor `[num_blocks, 3]` = (avg_sq_mean, avg_var, res_avg_var) per block,
//!   reduced on the device and detached, so the caller makes one host copy. Stochastic-depth and dropout masks are
//!   drawn on the host from `seed` (train mode only), so a step is reproducible. BatchNorm baselines use and update
//!   batch statistics in train mode and use the running statistics in eval mode.
//! - [`Network::params`] lists every trainable `Var` as a [`Param`] (name, var, [`ParamKind`]) in a fixed order.
//! - [`Network::buffers`] / [`Network::load_buffers`]: non-trainable state (BatchNorm running mean/var) for
//!   checkpoints.
//! - [`Network::try_set_alpha`] recomputes every beta from the predicted-variance bookkeeping (between steps);
//!   [`Network::alpha`] reads it.
//! - [`Network::blocks`] describes each residual block ([`BlockInfo`]: name `s<stage>.b<index>`, stage from 1,
//!   index from 0, channels, stride, alpha, beta, predicted variance); [`Network::info`] gives the name, the
//!   trainable-parameter count and the forward multiply-accumulates per image ([`NetInfo`]).
//! - [`NetPlan`] computes all of that from shapes, without allocating a tensor (`nfbench model info nfnet_f7`).
//!
//! Parameter names are dotted module paths ending in a Haiku-style leaf (`w`, `b`, `gain`, `skip_gain`, `scale`,
//! `offset`). They follow DeepMind's reference tree except that every bias leaf is `b`: the reference's linear
//! layers say `b` too, its WS convolutions (`WSConv2D`: `w`, `gain`, `bias`) say `bias`. The names: `stem.conv0.w` (NFNet) or `stem.conv.w`,
//! `s<stage>.b<index>.conv0.w|gain|b` ... `conv_shortcut`, `se.fc0.w|b`, `se.fc1`, `skip_gain`, `bn<i>.scale|offset`
//! (BatchNorm before the block's i-th conv), `final_conv`, `final_bn`, and the classifier `linear.w` / `linear.b`.
//! Layouts are candle's: conv kernels OIHW, linear weights `[out, in]` (the reference's are HWIO and `[in, out]`).
//!
//! Layers call `crate::kernels::{conv2d, weight_standardize, max_pool2d}` for convolution, WS and the stem's max
//! pool, never candle's conv directly, so faster kernels can replace them.

pub mod activation;
pub mod alpha;
pub mod config;
pub mod layers;
pub mod network;
pub mod plan;
pub mod precision;
pub mod spp;
pub mod zoo;

pub use activation::Activation;
pub use config::ModelConfig;
pub use network::{BlockInfo, ForwardOptions, ForwardOutput, NetInfo, Network};
pub use plan::NetPlan;
pub use precision::Precision;

use candle_core::Var;

/// Name of the classifier's weight: excluded from AGC by default.
pub const CLASSIFIER_WEIGHT: &str = "linear.w";
/// Name of the classifier's bias.
pub const CLASSIFIER_BIAS: &str = "linear.b";

/// What a parameter is, which decides weight decay and AGC unit layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A convolution kernel `[O, I/groups, kh, kw]`: one AGC unit per output channel.
    ConvWeight,
    /// A linear weight `[out, in]` (candle layout): one AGC unit per output unit.
    LinearWeight,
    /// A per-channel WS gain or a BatchNorm scale: never decayed, one AGC unit.
    Gain,
    /// A bias or BatchNorm offset: never decayed, one AGC unit.
    Bias,
    /// A block's SkipInit scalar: never decayed, one AGC unit.
    SkipGain,
}

impl ParamKind {
    /// Coupled weight decay applies to weights only, never to gains, biases and skip gains.
    pub fn decays(self) -> bool {
        matches!(self, ParamKind::ConvWeight | ParamKind::LinearWeight)
    }
}

/// A trainable parameter with its name and kind.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub var: Var,
    pub kind: ParamKind,
}

/// What can go wrong building or restoring a network.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown architecture `{name}` (model.name); known: {known}")]
    UnknownArchitecture { name: String, known: String },
    #[error("invalid {field} = {value}: {reason}")]
    InvalidField {
        field: String,
        value: String,
        reason: String,
    },
    #[error("network buffer `{name}`: {reason}")]
    Buffer { name: String, reason: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    /// An invalid value for a named field.
    pub fn invalid(
        field: &str,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> ModelError {
        ModelError::InvalidField {
            field: field.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
