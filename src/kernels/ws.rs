//! Scaled weight standardisation as one fused pass per output channel, forward and backward, instead of the eight
//! candle ops (and their eight backward ops and allocations) of the composite version.
//!
//! Per output channel with fan-in `N`: `s = 1/sqrt(max(N*var, eps))`, `xhat = (w - mean) * s`, `y = gain * xhat`.
//! Backward with `g = dy * gain`: `dgain = sum(dy * xhat)` and, while `N*var > eps`,
//! `dw = s * (g - mean(g) - xhat * sum(g * xhat))`; when the floor `eps` is active `s` is constant and
//! `dw = s * (g - mean(g))`.

use super::storage::f32_slice;
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Mean and the scale `1/sqrt(max(N*var, eps))` of one row, and whether the floor was active.
fn row_stats(row: &[f32], eps: f64) -> (f32, f32, bool) {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let ss = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>();
    // N * var with var the population variance = sum of squares.
    let floored = ss <= eps;
    let scale = 1.0 / ss.max(eps).sqrt();
    (mean as f32, scale as f32, floored)
}

/// Fused forward of weight standardisation over `[O, fan_in]`.
pub fn ws_forward(w: &[f32], gain: &[f32], fan_in: usize, eps: f64) -> Vec<f32> {
    let mut out = vec![0.0f32; w.len()];
    out.par_chunks_mut(fan_in)
        .zip(w.par_chunks(fan_in))
        .zip(gain.par_iter())
        .for_each(|((o, row), &g)| {
            let (mean, scale, _) = row_stats(row, eps);
            let k = g * scale;
            for (o, &v) in o.iter_mut().zip(row) {
                *o = (v - mean) * k;
            }
        });
    out
}

/// Fused backward: returns `[dw (O*fan_in) | dgain (O)]` in one buffer.
pub fn ws_backward(w: &[f32], gain: &[f32], dy: &[f32], fan_in: usize, eps: f64) -> Vec<f32> {
    let o = gain.len();
    let mut out = vec![0.0f32; w.len() + o];
    let (dw, dgain) = out.split_at_mut(w.len());
    dw.par_chunks_mut(fan_in)
        .zip(dgain.par_iter_mut())
        .zip(w.par_chunks(fan_in).zip(dy.par_chunks(fan_in)))
        .zip(gain.par_iter())
        .for_each(|(((dw, dg), (row, dyr)), &g)| {
            let (mean, scale, floored) = row_stats(row, eps);
            let n = fan_in as f64;
            let (mut sum_dy_xhat, mut sum_dy) = (0.0f64, 0.0f64);
            for (&v, &d) in row.iter().zip(dyr) {
                let xhat = (v - mean) * scale;
                sum_dy_xhat += (d * xhat) as f64;
                sum_dy += d as f64;
            }
            *dg = sum_dy_xhat as f32;
            // g = dy * gain, so mean(g) = gain * mean(dy) and sum(g*xhat) = gain * dgain.
            let mean_g = (g as f64 * sum_dy / n) as f32;
            let proj = if floored { 0.0 } else { g * sum_dy_xhat as f32 };
            for ((o, &v), &d) in dw.iter_mut().zip(row).zip(dyr) {
                let xhat = (v - mean) * scale;
                *o = scale * (g * d - mean_g - xhat * proj);
            }
        });
    out
}

fn fan_in(l: &Layout) -> Result<(usize, usize)> {
    let dims = l.shape().dims();
    match dims {
        [o, rest @ ..] if !rest.is_empty() => Ok((*o, rest.iter().product())),
        _ => bail!("weight_standardize: kernel must have at least 2 dimensions, got {dims:?}"),
    }
}

/// `(w, gain) -> gain * standardise(w)` with a fused backward.
pub struct WsOp {
    pub eps: f64,
}

impl CustomOp2 for WsOp {
    fn name(&self) -> &'static str {
        "nf-weight-standardize"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (o, n) = fan_in(l1)?;
        if l2.shape().elem_count() != o {
            bail!(
                "weight_standardize: gain has {} elements, kernel has {o} output channels",
                l2.shape().elem_count()
            );
        }
        let w = f32_slice(s1, l1, "weight_standardize kernel")?;
        let gain = f32_slice(s2, l2, "weight_standardize gain")?;
        Ok((
            CpuStorage::F32(ws_forward(w, gain, n, self.eps)),
            l1.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        w: &Tensor,
        gain: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let packed = w.apply_op3_no_bwd(gain, &grad, &WsBackward { eps: self.eps })?;
        let n = w.elem_count();
        let dw = packed.narrow(0, 0, n)?.reshape(w.shape())?;
        let dgain = packed
            .narrow(0, n, gain.elem_count())?
            .reshape(gain.shape())?;
        Ok((Some(dw), Some(dgain)))
    }
}

/// `(w, gain, dy) -> [dw | dgain]` flattened.
struct WsBackward {
    eps: f64,
}

impl CustomOp3 for WsBackward {
    fn name(&self) -> &'static str {
        "nf-weight-standardize-backward"
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
        let (_, n) = fan_in(l1)?;
        let w = f32_slice(s1, l1, "weight_standardize kernel")?;
        let gain = f32_slice(s2, l2, "weight_standardize gain")?;
        let dy = f32_slice(s3, l3, "weight_standardize output gradient")?;
        if dy.len() != w.len() {
            bail!(
                "weight_standardize: gradient has {} elements, kernel {}",
                dy.len(),
                w.len()
            );
        }
        let out = ws_backward(w, gain, dy, n, self.eps);
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}
