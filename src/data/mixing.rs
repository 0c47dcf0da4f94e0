//! MixUp and CutMix of a training batch (in progress).

use candle_core::Tensor;

/// The soft targets of a mixed batch beside its first labels (`Batch::labels`), per image, on the CPU.
#[derive(Debug, Clone)]
pub struct MixTargets {
    /// u32 `[B]`: the label of the image mixed in.
    pub labels_b: Tensor,
    /// f32 `[B]`: the weight of the first label; `1 - weight_a` goes to `labels_b`.
    pub weight_a: Tensor,
}
