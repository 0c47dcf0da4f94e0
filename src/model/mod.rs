//! The model zoo: NF-ResNets, NFNets, and the BatchNorm / plain baselines the paper compares against.
//!
//! Contract used by the trainer, the CLI and the TUI (the model module owns the implementation):
//! - `Network::build(&ModelConfig, num_classes, resolution, &Device, seed)` builds any architecture by name;
//! - `Network::forward(&x, ForwardOptions { train, spp })` returns logits `[B, classes]` and, when `spp` is asked,
//!   one tensor `[num_blocks, 3]` (avg_sq_mean, avg_var, res_avg_var) reduced on the device;
//! - `Network::params()` lists every trainable parameter as a [`Param`] (name, `Var`, [`ParamKind`]);
//! - `Network::set_alpha(alpha)` recomputes every downstream beta from the predicted-variance bookkeeping;
//! - `Network::blocks()` describes each residual block (name, stage, index, channels, stride, alpha, beta,
//!   predicted variance).
//!
//! Parameter names are dotted module paths ending in a Haiku-style leaf (`w`, `b`, `gain`, `skip_gain`, `scale`,
//! `offset`), so they map one-to-one onto DeepMind's reference tree.

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
