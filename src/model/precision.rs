//! Compute precision of the forward pass (the preset's `run.dtype`).
//!
//! Mixed precision as the NFNet recipe has it: master weights, their gradients, AGC, the optimiser and EMA stay f32;
//! activations, and the weights cast for each layer, are bf16. Weight standardisation runs in f32 before the cast
//! (its variance is a small difference of large sums), BatchNorm's batch statistics and the signal-propagation
//! statistics are taken in f32, and the classifier (pooled features and logits) runs in f32 so the loss is f32.
//! candle's `to_dtype` casts the gradient back to the source dtype, so every parameter's gradient arrives as f32.

use candle_core::{DType, Result, Tensor};
use serde::{Deserialize, Serialize};

/// Precision of activations in the forward pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// bf16 activations with f32 master weights (meant for GPUs: on the CPU it runs candle's generic, slower ops).
    Bf16,
}

impl Precision {
    /// From the preset's `run.dtype` (`f32` or `bf16`).
    pub fn parse(s: &str) -> Option<Precision> {
        match s.trim() {
            "f32" => Some(Precision::F32),
            "bf16" => Some(Precision::Bf16),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// The dtype activations are carried in.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }
}

/// `t` in `dtype`; no op (and no graph node) when it already is.
pub fn cast(t: &Tensor, dtype: DType) -> Result<Tensor> {
    if t.dtype() == dtype {
        Ok(t.clone())
    } else {
        t.to_dtype(dtype)
    }
}

/// `t` in f32 (statistics, classifier inputs).
pub fn f32(t: &Tensor) -> Result<Tensor> {
    cast(t, DType::F32)
}
