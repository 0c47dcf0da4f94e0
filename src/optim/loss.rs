//! Label-smoothed cross-entropy and top-k counts, composed from differentiable candle ops (candle's fused softmax
//! kernels drop their gradient; see candle-cpu-notes.md).

use candle_core::{DType, Result, Tensor, D};

/// Numerically stable log-softmax over the last dimension; the max shift is detached (it cancels exactly).
pub fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// Mean over the batch of the cross-entropy against smoothed targets
/// `q = (1 - s) * onehot(label) + s / K`, i.e. `(1 - s) * nll + s * mean_k(-log p_k)`.
/// `logits` `[B, K]`, `labels` u32 `[B]` on the same device.
pub fn smoothed_cross_entropy(logits: &Tensor, labels: &Tensor, smoothing: f64) -> Result<Tensor> {
    let logits = logits.to_dtype(DType::F32)?;
    let logp = log_softmax(&logits)?;
    let idx = labels.to_dtype(DType::U32)?.unsqueeze(1)?;
    let nll = logp.gather(&idx, 1)?.squeeze(1)?.neg()?.mean_all()?;
    if smoothing == 0.0 {
        return Ok(nll);
    }
    let uniform = logp.mean(D::Minus1)?.neg()?.mean_all()?;
    (nll * (1.0 - smoothing))? + (uniform * smoothing)?
}

/// Number of samples whose label is among the `k` highest logits (ties count in the label's favour), as an f32
/// scalar on the device (so it can be batched with other values into one host copy).
pub fn top_k_correct(logits: &Tensor, labels: &Tensor, k: usize) -> Result<Tensor> {
    let logits = logits.detach().to_dtype(DType::F32)?;
    let idx = labels.to_dtype(DType::U32)?.unsqueeze(1)?;
    let label_logit = logits.gather(&idx, 1)?;
    let higher = logits
        .broadcast_gt(&label_logit)?
        .to_dtype(DType::F32)?
        .sum(1)?;
    higher.lt(k as f64)?.to_dtype(DType::F32)?.sum_all()
}
