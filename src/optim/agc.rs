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

/// Number of scalar values at the head of one parameter's statistics row; see [`AgcStatsRow`].
pub const STATS_SCALARS: usize = 5;

/// Number of values in one parameter's statistics row: the scalars, then one cumulative count per ratio edge.
pub const STATS_LEN: usize = STATS_SCALARS + RATIO_EDGES.len();

/// The edges of the what-if histogram of unit ratios `||G_u|| / max(||W_u||, eps)`: log-spaced, eight per decade
/// (mantissas 1, 1.5, 2, 3, 4, 5, 6, 8) from 1e-5 to 10. They are round decimals on purpose: a lambda typed as `0.01`
/// or `4e-2`, and every value the `+`/`-` keys step to (1-2-5), is exactly an edge, so the share AGC would clip
/// there is exact (see [`clipped_share`]). Below the first edge and above the last are the under- and overflow bins.
pub const RATIO_EDGES: [f64; 49] = [
    1.0e-5, 1.5e-5, 2.0e-5, 3.0e-5, 4.0e-5, 5.0e-5, 6.0e-5, 8.0e-5, 1.0e-4, 1.5e-4, 2.0e-4, 3.0e-4,
    4.0e-4, 5.0e-4, 6.0e-4, 8.0e-4, 1.0e-3, 1.5e-3, 2.0e-3, 3.0e-3, 4.0e-3, 5.0e-3, 6.0e-3, 8.0e-3,
    1.0e-2, 1.5e-2, 2.0e-2, 3.0e-2, 4.0e-2, 5.0e-2, 6.0e-2, 8.0e-2, 1.0e-1, 1.5e-1, 2.0e-1, 3.0e-1,
    4.0e-1, 5.0e-1, 6.0e-1, 8.0e-1, 1.0e0, 1.5e0, 2.0e0, 3.0e0, 4.0e0, 5.0e0, 6.0e0, 8.0e0, 1.0e1,
];

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

/// Per edge `e_k` of [`RATIO_EDGES`], the number of units AGC would clip at lambda = `e_k`, with AGC's own test
/// (`||G_u|| > max(||W_u||, eps) * lambda`, the same f32 products as [`unit_norms`]), so the count at an edge equals
/// what clipping at that lambda measures. Shape `[edges]`, f32, on the device: units x edges compared, summed over
/// units.
fn ratio_counts(n: &UnitNorms) -> Result<Tensor> {
    let device = n.grad.device();
    let edges: Vec<f32> = RATIO_EDGES.iter().map(|&e| e as f32).collect();
    let edges = Tensor::from_vec(edges, (1, RATIO_EDGES.len()), device)?;
    let units = n.grad.elem_count();
    let grad = n.grad.reshape((units, 1))?;
    let max_norm = n
        .weight_floored
        .reshape((units, 1))?
        .broadcast_mul(&edges)?;
    grad.broadcast_gt(&max_norm)?.to_dtype(DType::F32)?.sum(0)
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
    let scalars = Tensor::stack(&[w_sq, g_sq, max_ratio, mean_ratio, clipped], 0)?;
    Tensor::cat(&[scalars, ratio_counts(n)?], 0)
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
#[derive(Debug, Clone, PartialEq)]
pub struct AgcStatsRow {
    pub weight_norm: f64,
    pub grad_norm: f64,
    pub max_ratio: f64,
    pub mean_ratio: f64,
    pub clipped_fraction: f64,
    /// Per edge of [`RATIO_EDGES`], the units whose ratio exceeds it (empty when the row has none).
    pub ratio_counts: Vec<f64>,
}

impl AgcStatsRow {
    /// Decode a row of [`STATS_LEN`] values as written by [`clip_with_stats`].
    pub fn from_row(row: &[f32]) -> Self {
        let ratio_counts = row
            .get(STATS_SCALARS..STATS_LEN)
            .map(|c| c.iter().map(|&v| v as f64).collect())
            .unwrap_or_default();
        let get = |i: usize| row.get(i).copied().unwrap_or(f32::NAN) as f64;
        Self {
            weight_norm: get(0).sqrt(),
            grad_norm: get(1).sqrt(),
            max_ratio: get(2),
            mean_ratio: get(3),
            clipped_fraction: get(4),
            ratio_counts,
        }
    }
}

/// The share of units AGC would clip at some lambda, from the cumulative counts at [`RATIO_EDGES`]: exact when
/// lambda is an edge, otherwise the bracket the two neighbouring edges give (the counts say nothing finer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClipShare {
    Exact(f64),
    /// At least `low`, at most `high`.
    Between {
        low: f64,
        high: f64,
    },
}

impl ClipShare {
    /// The share as a fraction when exact; the middle of the bracket otherwise (for drawing only).
    pub fn midpoint(self) -> f64 {
        match self {
            ClipShare::Exact(s) => s,
            ClipShare::Between { low, high } => 0.5 * (low + high),
        }
    }

    /// `12.5%` or `10.0-15.0%`.
    pub fn percent(self) -> String {
        match self {
            ClipShare::Exact(s) => format!("{:.1}%", 100.0 * s),
            ClipShare::Between { low, high } => format!("{:.1}-{:.1}%", 100.0 * low, 100.0 * high),
        }
    }
}

/// The share of `units` units clipped at `lambda`, given `counts[k]` = units with ratio > `RATIO_EDGES[k]` (summed
/// over layers for a whole net). `None` without units or counts. Compared in f32, as AGC compares.
pub fn clipped_share(counts: &[f64], units: f64, lambda: f64) -> Option<ClipShare> {
    if units <= 0.0 || counts.len() != RATIO_EDGES.len() || !lambda.is_finite() {
        return None;
    }
    let l = lambda as f32;
    let share = |c: f64| c / units;
    let above = RATIO_EDGES.iter().position(|&e| e as f32 >= l);
    Some(match above {
        Some(k) if RATIO_EDGES[k] as f32 == l => ClipShare::Exact(share(counts[k])),
        // lambda below the first edge: at least the first edge's share, at most every unit.
        Some(0) => ClipShare::Between {
            low: share(counts[0]),
            high: 1.0,
        },
        Some(k) => ClipShare::Between {
            low: share(counts[k]),
            high: share(counts[k - 1]),
        },
        None => ClipShare::Between {
            low: 0.0,
            high: share(counts[RATIO_EDGES.len() - 1]),
        },
    })
}

/// Units per histogram bin from the cumulative counts: under (ratio <= first edge), one bin per pair of edges,
/// over (ratio > last edge); `RATIO_EDGES.len() + 1` bins summing to `units`.
pub fn ratio_bins(counts: &[f64], units: f64) -> Vec<f64> {
    let mut bins = Vec::with_capacity(counts.len() + 1);
    let mut prev = units;
    for &c in counts {
        bins.push(prev - c);
        prev = c;
    }
    if !counts.is_empty() {
        bins.push(prev);
    }
    bins
}

/// Whether a parameter name is excluded from clipping: an exact name, or a prefix pattern ending in `*`.
pub fn is_excluded(name: &str, exclude: &[String]) -> bool {
    exclude.iter().any(|pat| match pat.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pat,
    })
}
