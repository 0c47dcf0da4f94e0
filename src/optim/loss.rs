//! The training losses over soft targets and top-k counts, composed from differentiable candle ops (candle's fused
//! softmax kernels drop their gradient; see candle-cpu-notes.md).
//!
//! Targets follow DeepMind's NFNet code (deepmind-research `nfnets/experiment.py`, `Experiment._loss_fn`, commit
//! f5de0ede8430809180254ee957abf36ed62579ef): a mixed image's target is `y = r * onehot(a) + (1 - r) * onehot(b)`
//! (MixUp/CutMix ratio `r`), then label smoothing `y = (1 - s) * y + s / K`, then `which_loss(logits, y)` summed over
//! classes and averaged over the batch. `which_loss` is `softmax_cross_entropy` in every shipped config; the config's
//! comment names a sigmoid option, which `nfnets/utils.py` at that commit does not define, so
//! [`LossKind::SigmoidCrossEntropy`] is the standard binary cross-entropy per class with the same reduction.

use candle_core::{DType, Result, Tensor, D};
use serde::{Deserialize, Serialize};

/// `optim.loss`: DeepMind's `which_loss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// `-sum_k y_k log softmax(z)_k`.
    #[default]
    SoftmaxCrossEntropy,
    /// `sum_k -(y_k log sigmoid(z_k) + (1 - y_k) log(1 - sigmoid(z_k)))`.
    SigmoidCrossEntropy,
}

impl LossKind {
    /// The spelling in presets.
    pub fn as_str(self) -> &'static str {
        match self {
            LossKind::SoftmaxCrossEntropy => "softmax_cross_entropy",
            LossKind::SigmoidCrossEntropy => "sigmoid_cross_entropy",
        }
    }
}

/// The second label of mixed images and the weight of the first, per image.
#[derive(Debug, Clone, Copy)]
pub struct Mix<'a> {
    /// u32 `[B]`: the image mixed in.
    pub labels_b: &'a Tensor,
    /// f32 `[B]`: `r`, the weight of `labels` (the first label); `1 - r` goes to `labels_b`.
    pub weight_a: &'a Tensor,
}

/// What a batch is trained towards: one label per image, optionally mixed with a second.
#[derive(Debug, Clone, Copy)]
pub struct Targets<'a> {
    /// u32 `[B]`.
    pub labels: &'a Tensor,
    pub mix: Option<Mix<'a>>,
}

impl<'a> Targets<'a> {
    /// Plain labels.
    pub fn hard(labels: &'a Tensor) -> Self {
        Self { labels, mix: None }
    }
}

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
    loss(
        LossKind::SoftmaxCrossEntropy,
        logits,
        Targets::hard(labels),
        smoothing,
    )
}

/// The batch mean of `kind` against `targets` smoothed by `smoothing`, as DeepMind composes them (module docs).
pub fn loss(kind: LossKind, logits: &Tensor, targets: Targets, smoothing: f64) -> Result<Tensor> {
    let logits = logits.to_dtype(DType::F32)?;
    match kind {
        LossKind::SoftmaxCrossEntropy => softmax_ce(&logits, targets, smoothing),
        LossKind::SigmoidCrossEntropy => sigmoid_ce(&logits, targets, smoothing),
    }
}

/// `-sum_k y_k log p_k` without building `y`: `(1 - s) * (r * nll_a + (1 - r) * nll_b) + s * mean_k(-log p_k)`,
/// which is the same sum because `y` is a combination of two one-hots and a uniform term.
fn softmax_ce(logits: &Tensor, targets: Targets, smoothing: f64) -> Result<Tensor> {
    let logp = log_softmax(logits)?;
    let nll = mixed_gather(&logp, targets)?.neg()?.mean_all()?;
    if smoothing == 0.0 {
        return Ok(nll);
    }
    let uniform = logp.mean(D::Minus1)?.neg()?.mean_all()?;
    (nll * (1.0 - smoothing))? + (uniform * smoothing)?
}

/// Per image `r * v[a] + (1 - r) * v[b]` of the rows of `v` `[B, K]` (just `v[a]` for hard targets), `[B]`.
fn mixed_gather(v: &Tensor, targets: Targets) -> Result<Tensor> {
    let at = |labels: &Tensor| -> Result<Tensor> {
        let idx = labels.to_dtype(DType::U32)?.unsqueeze(1)?;
        v.gather(&idx, 1)?.squeeze(1)
    };
    let a = at(targets.labels)?;
    let Some(mix) = targets.mix else {
        return Ok(a);
    };
    let b = at(mix.labels_b)?;
    let r = mix.weight_a.to_dtype(DType::F32)?;
    // r * a + (1 - r) * b = b + r * (a - b)
    b.add(&(a - &b)?.mul(&r)?)
}

/// The dense target matrix `y` `[B, K]` (module docs), on the device of `labels`.
pub fn dense_targets(targets: Targets, classes: usize, smoothing: f64) -> Result<Tensor> {
    let onehot = |labels: &Tensor| -> Result<Tensor> {
        let ks = Tensor::arange(0u32, classes as u32, labels.device())?.unsqueeze(0)?;
        ks.broadcast_eq(&labels.to_dtype(DType::U32)?.unsqueeze(1)?)?
            .to_dtype(DType::F32)
    };
    let mut y = onehot(targets.labels)?;
    if let Some(mix) = targets.mix {
        let r = mix.weight_a.to_dtype(DType::F32)?.unsqueeze(1)?;
        let b = onehot(mix.labels_b)?;
        y = b.add(&(y - &b)?.broadcast_mul(&r)?)?;
    }
    (y * (1.0 - smoothing))? + smoothing / classes as f64
}

/// `sum_k softplus(z_k) - y_k z_k` (the per-class binary cross-entropy written stably), batch mean.
fn sigmoid_ce(logits: &Tensor, targets: Targets, smoothing: f64) -> Result<Tensor> {
    let classes = logits.dim(D::Minus1)?;
    let y = dense_targets(targets, classes, smoothing)?;
    // softplus(z) = max(z, 0) + log(1 + exp(-|z|)), finite for any z.
    let softplus = (logits.relu()? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    (softplus - (y * logits)?)?.sum(D::Minus1)?.mean_all()
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

/// The label with the larger weight of each image (the first on a tie): what training top-1 is counted against on
/// mixed batches. u32 `[B]`.
pub fn dominant_labels(targets: Targets) -> Result<Tensor> {
    let Some(mix) = targets.mix else {
        return Ok(targets.labels.clone());
    };
    let first = mix.weight_a.to_dtype(DType::F32)?.ge(0.5)?;
    first.where_cond(
        &targets.labels.to_dtype(DType::U32)?,
        &mix.labels_b.to_dtype(DType::U32)?,
    )
}
