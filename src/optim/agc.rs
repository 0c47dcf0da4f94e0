//! Adaptive Gradient Clipping (Brock et al. 2021), unit-wise, as in DeepMind's reference:
//!
//! ```text
//! if ||G_u|| > lambda * max(||W_u||, eps):   G_u <- G_u * lambda * max(||W_u||, eps) / max(||G_u||, 1e-6)
//! ```
//!
//! One unit is one output channel of a conv kernel (OIHW: norm over I, kh, kw), one output unit of a linear weight
//! (`[out, in]`: norm over the inputs), and the whole tensor for vectors and scalars (gains, biases, skip gains).
//!
//! [`clip_with_stats`] also returns the unit statistics of one parameter as a small device tensor, so the trainer can
//! stack the rows of all parameters and copy them to the host once per statistics interval.

use candle_core::{DType, Result, Tensor};

/// Floor on a unit's gradient norm in the clipping factor (keeps the division finite).
pub const GRAD_NORM_FLOOR: f64 = 1e-6;

/// Number of values in one parameter's statistics row; see [`AgcStatsRow`].
pub const STATS_LEN: usize = 5;

/// Unit-wise L2 norms in candle's layouts: `[O, 1, ...]` (keepdim) for tensors of rank >= 2, one value (shaped like
/// the input, all dims 1) for vectors and scalars.
pub fn unitwise_norm(t: &Tensor) -> Result<Tensor> {
    let t = t.to_dtype(DType::F32)?;
    let rank = t.rank();
    let sq = t.sqr()?;
    let sum = if rank >= 2 {
        let dims: Vec<usize> = (1..rank).collect();
        sq.sum_keepdim(dims)?
    } else if rank == 1 {
        sq.sum_keepdim(0)?
    } else {
        sq
    };
    sum.sqrt()
}

/// Clip one parameter's gradient unit-wise. `clipping` is lambda, `eps` the floor on the weight norm (1e-3 in the
/// reference). Returns a tensor shaped like `grad`, in f32.
pub fn adaptive_clip(param: &Tensor, grad: &Tensor, clipping: f64, eps: f64) -> Result<Tensor> {
    Ok(clip_with_stats(param, grad, clipping, eps, false)?.0)
}

/// Unit norms and the clipping decision of one parameter, shared by clipping and statistics.
struct UnitNorms {
    /// ||G_u||, before clipping.
    grad: Tensor,
    /// max(||W_u||, eps).
    weight_floored: Tensor,
    /// ||W_u||.
    weight: Tensor,
    /// 1.0 where the unit is clipped, else 0.0.
    clipped: Tensor,
    /// The factor each unit's gradient is multiplied by (1 where not clipped).
    factor: Tensor,
}

fn unit_norms(param: &Tensor, grad: &Tensor, clipping: f64, eps: f64) -> Result<UnitNorms> {
    let weight = unitwise_norm(param)?;
    let grad_norm = unitwise_norm(grad)?;
    let weight_floored = weight.maximum(eps)?;
    let max_norm = (&weight_floored * clipping)?;
    let trigger = grad_norm.gt(&max_norm)?;
    let scaled = max_norm.div(&grad_norm.maximum(GRAD_NORM_FLOOR)?)?;
    let ones = scaled.ones_like()?;
    let factor = trigger.where_cond(&scaled, &ones)?;
    let clipped = trigger.to_dtype(DType::F32)?;
    Ok(UnitNorms {
        grad: grad_norm,
        weight_floored,
        weight,
        clipped,
        factor,
    })
}

/// Clip one parameter's gradient and, when `stats` is true, also return its statistics row `[STATS_LEN]` on the
/// device:
/// `[sum ||W||^2, sum ||G||^2 (before clipping), max ratio, mean ratio, clipped fraction]`, where
/// ratio = ||G_u|| / max(||W_u||, eps).
pub fn clip_with_stats(
    param: &Tensor,
    grad: &Tensor,
    clipping: f64,
    eps: f64,
    stats: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let norms = unit_norms(param, grad, clipping, eps)?;
    let clipped_grad = grad.to_dtype(DType::F32)?.broadcast_mul(&norms.factor)?;
    let row = if stats {
        Some(stats_row(&norms, true)?)
    } else {
        None
    };
    Ok((clipped_grad, row))
}

/// Statistics row of a parameter that is not clipped (excluded, or AGC off): the same norms and ratios, with a
/// clipped fraction of 0 since nothing was clipped.
pub fn stats_only(param: &Tensor, grad: &Tensor, clipping: f64, eps: f64) -> Result<Tensor> {
    let norms = unit_norms(param, grad, clipping, eps)?;
    stats_row(&norms, false)
}

fn stats_row(n: &UnitNorms, applied: bool) -> Result<Tensor> {
    let ratio = n.grad.div(&n.weight_floored)?.flatten_all()?;
    let w_sq = n.weight.sqr()?.sum_all()?;
    let g_sq = n.grad.sqr()?.sum_all()?;
    let max_ratio = ratio.max(0)?;
    let mean_ratio = ratio.mean(0)?;
    let clipped = if applied {
        n.clipped.flatten_all()?.mean(0)?
    } else {
        n.clipped.flatten_all()?.mean(0)?.zeros_like()?
    };
    Tensor::stack(&[w_sq, g_sq, max_ratio, mean_ratio, clipped], 0)
}

/// Number of AGC units of a parameter of this shape.
pub fn unit_count(dims: &[usize]) -> usize {
    if dims.len() >= 2 {
        dims[0]
    } else {
        1
    }
}

/// One parameter's statistics, decoded from a host copy of its row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgcStatsRow {
    pub weight_norm: f64,
    pub grad_norm: f64,
    pub max_ratio: f64,
    pub mean_ratio: f64,
    pub clipped_fraction: f64,
}

impl AgcStatsRow {
    /// Decode a row of [`STATS_LEN`] values as written by [`clip_with_stats`].
    pub fn from_row(row: &[f32]) -> Self {
        let get = |i: usize| row.get(i).copied().unwrap_or(f32::NAN) as f64;
        Self {
            weight_norm: get(0).sqrt(),
            grad_norm: get(1).sqrt(),
            max_ratio: get(2),
            mean_ratio: get(3),
            clipped_fraction: get(4),
        }
    }
}

/// Whether a parameter name is excluded from clipping: an exact name, or a prefix pattern ending in `*`.
pub fn is_excluded(name: &str, exclude: &[String]) -> bool {
    exclude.iter().any(|pat| match pat.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pat,
    })
}
