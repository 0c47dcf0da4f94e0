//! BatchNorm in training mode (the baselines' normaliser) as one custom op with its own backward.
//!
//! candle's composite (a transposed copy for the moments, broadcast products and sums, and their backward: strided
//! single-threaded reductions per op) made the BatchNorm baseline train at a quarter of the NF net's speed, which
//! would make any wall-clock comparison between them meaningless. Forward: per-channel mean and population variance
//! over (N, H, W) with f64 accumulation, then `y = (x - mean) / sqrt(var + eps) * scale + offset`. Backward, with
//! `xhat = (x - mean) / sqrt(var + eps)` and `M = N*H*W` per channel:
//! `dscale = sum(dy * xhat)`, `doffset = sum(dy)`,
//! `dx = scale / sqrt(var + eps) * (dy - doffset / M - xhat * dscale / M)`.

use super::reduce;
use super::storage::{dims4, f32_slice};
use super::storage_f32;
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Per-channel mean and population variance of an NCHW buffer, `(mean, var)`, each `[C]`.
pub fn channel_moments(x: &[f32], b: usize, c: usize, hw: usize) -> (Vec<f32>, Vec<f32>) {
    let m = (b * hw).max(1) as f64;
    let stats: Vec<(f32, f32)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let rows = (0..b).map(|n| &x[(n * c + ch) * hw..][..hw]);
            let sum: f64 = rows.clone().map(|r| f64::from(reduce::sum(r))).sum();
            let mean = sum / m;
            // Two-pass variance (sum of squared deviations): no cancellation for channels far from zero mean.
            let mf = mean as f32;
            let sq: f64 = rows.map(|r| f64::from(reduce::sum_sq_dev(r, mf))).sum();
            (mean as f32, (sq / m) as f32)
        })
        .collect();
    stats.into_iter().unzip()
}

/// `(x, scale, offset) -> y` with the batch statistics computed beforehand (they are also the running-statistics
/// update, so they are computed once and carried here).
pub struct BatchNormTrainOp {
    pub eps: f64,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    /// Apply relu to the output (the baselines always follow BatchNorm with the activation); the backward then
    /// masks the output gradient where the output is zero.
    pub relu: bool,
}

impl BatchNormTrainOp {
    fn inv_std(&self) -> Vec<f32> {
        self.var
            .iter()
            .map(|v| (1.0 / (f64::from(*v) + self.eps).sqrt()) as f32)
            .collect()
    }
}

impl CustomOp3 for BatchNormTrainOp {
    fn name(&self) -> &'static str {
        "nf-batch-norm-train"
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
        let (_, c, h, w) = dims4(l1)?;
        let hw = h * w;
        let x = f32_slice(s1, l1, "batch norm input")?;
        let scale = f32_slice(s2, l2, "batch norm scale")?;
        let offset = f32_slice(s3, l3, "batch norm offset")?;
        if scale.len() != c || offset.len() != c || self.mean.len() != c {
            bail!(
                "batch norm: {c} channels, scale {} / offset {} values",
                scale.len(),
                offset.len()
            );
        }
        let inv = self.inv_std();
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(hw.max(1))
            .zip(x.par_chunks(hw.max(1)))
            .enumerate()
            .for_each(|(p, (yr, xr))| {
                let ch = p % c;
                let a = inv[ch] * scale[ch];
                let shift = offset[ch] - self.mean[ch] * a;
                if self.relu {
                    for (yi, xi) in yr.iter_mut().zip(xr) {
                        *yi = (xi * a + shift).max(0.0);
                    }
                } else {
                    for (yi, xi) in yr.iter_mut().zip(xr) {
                        *yi = xi * a + shift;
                    }
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        offset: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, c, h, w) = x.dims4()?;
        let hw = h * w;
        let grad = grad.contiguous()?;
        let grad = if self.relu {
            grad.apply_op2_no_bwd(res, &super::fused::ReluGrad)?
        } else {
            grad
        };
        let inv = self.inv_std();
        let (xs, xl) = x.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (ss, sl) = scale.storage_and_layout();
        let xv = storage_f32(&xs, xl, "batch norm input")?;
        let gv = storage_f32(&gs, gl, "batch norm output gradient")?;
        let sv = storage_f32(&ss, sl, "batch norm scale")?;
        // Per channel: doffset = sum(dy), dscale = sum(dy * xhat).
        let sums: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mut s0, mut s1) = (0f64, 0f64);
                for n in 0..b {
                    let at = (n * c + ch) * hw;
                    let (xr, gr) = (&xv[at..at + hw], &gv[at..at + hw]);
                    let (mean, iv) = (self.mean[ch], inv[ch]);
                    s0 += f64::from(reduce::sum(gr));
                    s1 += f64::from(reduce::dot_dev(xr, mean, gr) * iv);
                }
                (s0 as f32, s1 as f32)
            })
            .collect();
        let (doffset, dscale): (Vec<f32>, Vec<f32>) = sums.into_iter().unzip();
        let m = (b * hw).max(1) as f32;
        let mut dx = vec![0f32; xv.len()];
        dx.par_chunks_mut(hw.max(1))
            .enumerate()
            .for_each(|(p, dr)| {
                let ch = p % c;
                let at = p * hw;
                let (xr, gr) = (&xv[at..at + hw], &gv[at..at + hw]);
                let (mean, iv) = (self.mean[ch], inv[ch]);
                let k = sv[ch] * iv;
                let (mo, ms) = (doffset[ch] / m, dscale[ch] / m);
                for ((d, xi), gi) in dr.iter_mut().zip(xr).zip(gr) {
                    *d = k * (gi - mo - (xi - mean) * iv * ms);
                }
            });
        let dev = x.device();
        let dx = Tensor::from_vec(dx, (b, c, h, w), dev)?;
        let dscale = scale
            .track_op()
            .then(|| Tensor::from_vec(dscale, c, dev))
            .transpose()?;
        let doffset = offset
            .track_op()
            .then(|| Tensor::from_vec(doffset, c, dev))
            .transpose()?;
        Ok((Some(dx), dscale, doffset))
    }
}
