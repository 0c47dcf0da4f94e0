//! The element-wise passes of a residual block as custom ops with their own one-pass backward.
//!
//! candle composes these from generic ops whose backward is what costs: a per-channel bias `broadcast_add` reduces
//! its gradient over (N, H, W) with a strided single-threaded fold (a fifth of a training step's CPU time on the
//! default network; the bias is fused into the convolution, whose backward sums it with [`ChannelSum`]), `relu`'s
//! backward makes a zero tensor, a comparison mask, a cast and a product (four passes and
//! four allocations), and `shortcut + factor * branch` with a skip gain and stochastic-depth mask takes two products,
//! a sum and two reductions. Each op here is one pass forward and one pass per gradient, parallel over rows.

use super::par_fill;
use super::reduce;
use super::storage::{dims4, f32_slice};
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor,
};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Rows below this many floats are not worth a rayon task each; they are grouped.
const MIN_PAR_LEN: usize = 1 << 14;

/// `[B, C, H, W] -> [C]`: the sum over (B, H, W) per channel.
pub struct ChannelSum;

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "nf-channel-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = dims4(l)?;
        let x = f32_slice(s, l, "channel sum input")?;
        let hw = h * w;
        let sums: Vec<f32> = (0..c)
            .into_par_iter()
            .map(|ch| {
                // f64 across rows: a channel of a large batch sums ~10^6 values.
                (0..b)
                    .map(|n| {
                        let start = (n * c + ch) * hw;
                        f64::from(reduce::sum(&x[start..start + hw]))
                    })
                    .sum::<f64>() as f32
            })
            .collect();
        Ok((CpuStorage::F32(sums), Shape::from(c)))
    }
}

/// `max(x, 0)`, whose gradient is the output gradient where `x > 0` and zero elsewhere (one pass).
pub struct ReluOp;

impl CustomOp1 for ReluOp {
    fn name(&self) -> &'static str {
        "nf-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "relu input")?;
        // SAFETY: each chunk writes every value of its range.
        let out = unsafe {
            par_fill(x.len(), MIN_PAR_LEN, |at, o| {
                for (oi, xi) in o.iter_mut().zip(&x[at..]) {
                    oi.write(xi.max(0.0));
                }
            })
        };
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op2_no_bwd(x, &ReluGrad)?))
    }
}

/// `g` where `x > 0`, else 0: the gradient through a relu. Branch-free (a compare mask and-ed into the bits of `g`):
/// the signs of activations are a coin toss, and the branchy form compiled to scalar code that mispredicted half the
/// time (16% of a training step on the default network).
#[inline(always)]
pub(crate) fn keep_if_positive(g: f32, x: f32) -> f32 {
    let keep = u32::from(x > 0.0).wrapping_neg();
    f32::from_bits(g.to_bits() & keep)
}

fn relu_mask(o: &mut [MaybeUninit<f32>], g: &[f32], x: &[f32]) {
    for ((oi, gi), xi) in o.iter_mut().zip(g).zip(x) {
        oi.write(keep_if_positive(*gi, *xi));
    }
}

/// The output gradient and the input of an element-wise op's backward (`what`: the op, for errors), which must have
/// the same shape.
pub(crate) fn grad_and_input<'a>(
    (s1, l1): (&'a CpuStorage, &Layout),
    (s2, l2): (&'a CpuStorage, &Layout),
    what: &str,
) -> Result<(&'a [f32], &'a [f32])> {
    if l1.shape() != l2.shape() {
        bail!(
            "{what} gradient: shapes {:?} and {:?}",
            l1.shape(),
            l2.shape()
        );
    }
    Ok((
        f32_slice(s1, l1, &format!("{what} output gradient"))?,
        f32_slice(s2, l2, &format!("{what} input"))?,
    ))
}

/// `(dy, x) -> dy * (x > 0)`.
pub struct ReluGrad;

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "nf-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (dy, x) = grad_and_input((s1, l1), (s2, l2), "relu")?;
        // SAFETY: `relu_mask` writes every value of its chunk.
        let out = unsafe {
            par_fill(x.len(), MIN_PAR_LEN, |at, o| {
                relu_mask(o, &dy[at..], &x[at..])
            })
        };
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `shortcut + factor * branch` for `[B, C, H, W]` streams and a factor of one value (skip gain, alpha) or one per
/// sample (stochastic-depth mask times skip gain and alpha, any shape with B elements).
pub struct ScaledResidualOp;

/// The factor of sample `n` when the factor has `len` values (1 or B).
fn factor_at(f: &[f32], n: usize) -> f32 {
    if f.len() == 1 {
        f[0]
    } else {
        f[n]
    }
}

fn check_factor(len: usize, b: usize) -> Result<()> {
    if len != 1 && len != b {
        bail!("scaled residual: factor has {len} values, expected 1 or the batch size {b}");
    }
    Ok(())
}

/// `out[n] = base[n] + f_n * x[n]` per sample (`base` absent: zero), in parallel over samples and blocks within.
fn scale_add(base: Option<&[f32]>, x: &[f32], f: &[f32], b: usize) -> Vec<f32> {
    let per = (x.len() / b.max(1)).max(1);
    // Chunks never straddle two samples (a sample's factor is constant over its chunk).
    let chunk = MIN_PAR_LEN.min(per);
    let mut out: Vec<f32> = Vec::with_capacity(x.len());
    out.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(per)
        .enumerate()
        .for_each(|(n, o)| {
            let fv = factor_at(f, n);
            o.par_chunks_mut(chunk).enumerate().for_each(|(k, ob)| {
                let at = n * per + k * chunk;
                let xs = &x[at..at + ob.len()];
                match base {
                    Some(base) => {
                        let bs = &base[at..at + ob.len()];
                        for ((oi, bi), xi) in ob.iter_mut().zip(bs).zip(xs) {
                            oi.write(bi + fv * xi);
                        }
                    }
                    None => {
                        for (oi, xi) in ob.iter_mut().zip(xs) {
                            oi.write(fv * xi);
                        }
                    }
                }
            });
        });
    // SAFETY: every sample's chunks wrote all of its values.
    unsafe { out.set_len(x.len()) };
    out
}

impl CustomOp3 for ScaledResidualOp {
    fn name(&self) -> &'static str {
        "nf-scaled-residual"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            bail!(
                "scaled residual: shortcut {:?} and branch {:?} differ",
                l1.shape(),
                l2.shape()
            );
        }
        let b = l1.shape().dims().first().copied().unwrap_or(1);
        let shortcut = f32_slice(s1, l1, "residual shortcut")?;
        let branch = f32_slice(s2, l2, "residual branch")?;
        let f = f32_slice(s3, l3, "residual factor")?;
        check_factor(f.len(), b)?;
        Ok((
            CpuStorage::F32(scale_add(Some(shortcut), branch, f, b)),
            l1.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        _shortcut: &Tensor,
        branch: &Tensor,
        factor: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let db = grad.apply_op2_no_bwd(factor, &ScaleBySample)?;
        let df = if factor.track_op() {
            let per_sample = grad.apply_op2_no_bwd(branch, &SampleDot)?;
            let df = if factor.elem_count() == 1 {
                per_sample.sum_all()?
            } else {
                per_sample
            };
            Some(df.reshape(factor.shape())?)
        } else {
            None
        };
        Ok((Some(grad), Some(db), df))
    }
}

/// `(x [B, ...], f [1 or B]) -> f_n * x[n]`.
pub struct ScaleBySample;

impl CustomOp2 for ScaleBySample {
    fn name(&self) -> &'static str {
        "nf-scale-by-sample"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let b = l1.shape().dims().first().copied().unwrap_or(1);
        let x = f32_slice(s1, l1, "scaled tensor")?;
        let f = f32_slice(s2, l2, "per-sample factor")?;
        check_factor(f.len(), b)?;
        Ok((
            CpuStorage::F32(scale_add(None, x, f, b)),
            l1.shape().clone(),
        ))
    }
}

/// `(a [B, ...], b [B, ...]) -> [B]`: the dot product of each sample's values.
pub struct SampleDot;

impl CustomOp2 for SampleDot {
    fn name(&self) -> &'static str {
        "nf-sample-dot"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            bail!("sample dot: shapes {:?} and {:?}", l1.shape(), l2.shape());
        }
        let b = l1.shape().dims().first().copied().unwrap_or(1).max(1);
        let x = f32_slice(s1, l1, "sample dot lhs")?;
        let y = f32_slice(s2, l2, "sample dot rhs")?;
        let per = x.len() / b;
        let dots: Vec<f32> = x
            .par_chunks(per.max(1))
            .zip(y.par_chunks(per.max(1)))
            .map(|(a, b)| {
                // f64 accumulation across 1024-float blocks: a sample holds up to ~10^6 values.
                a.chunks(1024)
                    .zip(b.chunks(1024))
                    .map(|(a, b)| f64::from(reduce::dot(a, b)))
                    .sum::<f64>() as f32
            })
            .collect();
        Ok((CpuStorage::F32(dots), Shape::from(b)))
    }
}
