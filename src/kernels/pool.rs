//! Max pooling with overlapping windows and padding (the ResNet stem's 3x3/2), with a backward candle lacks.
//! Padded cells never win; ties go to the first cell in row-major window order, which also receives the gradient.

use super::geometry::Padding;
use super::storage::f32_slice;
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Pooling geometry.
#[derive(Clone, Copy, Debug)]
pub struct PoolGeom {
    pub b: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: Padding,
    pub ho: usize,
    pub wo: usize,
}

impl PoolGeom {
    pub fn new(
        dims: (usize, usize, usize, usize),
        kernel: usize,
        stride: usize,
        pad: Padding,
    ) -> Result<Self> {
        let (b, c, h, w) = dims;
        if kernel == 0 || stride == 0 {
            bail!("max_pool2d: kernel ({kernel}) and stride ({stride}) must be at least 1");
        }
        if pad.max_side() > kernel / 2 {
            // A window made only of padding would have no winner.
            bail!("max_pool2d: padding {pad:?} must be at most half the kernel {kernel}");
        }
        let (hp, wp) = (h + pad.top + pad.bottom, w + pad.left + pad.right);
        if hp < kernel || wp < kernel {
            bail!("max_pool2d: kernel {kernel} larger than padded input {h}x{w} (padding {pad:?})");
        }
        Ok(Self {
            b,
            c,
            h,
            w,
            kernel,
            stride,
            pad,
            ho: (hp - kernel) / stride + 1,
            wo: (wp - kernel) / stride + 1,
        })
    }

    /// Index within the plane of the winning input cell of output `(oy, ox)`.
    #[inline]
    fn argmax(&self, plane: &[f32], oy: usize, ox: usize) -> usize {
        let y0 = (oy * self.stride).saturating_sub(self.pad.top);
        let y1 = (oy * self.stride + self.kernel - self.pad.top).min(self.h);
        let x0 = (ox * self.stride).saturating_sub(self.pad.left);
        let x1 = (ox * self.stride + self.kernel - self.pad.left).min(self.w);
        let mut best = y0 * self.w + x0;
        let mut best_v = f32::NEG_INFINITY;
        for y in y0..y1 {
            for x in x0..x1 {
                let v = plane[y * self.w + x];
                // A NaN wins over numbers, so a NaN in the window propagates instead of being hidden.
                if v > best_v || (v.is_nan() && !best_v.is_nan()) {
                    best_v = v;
                    best = y * self.w + x;
                }
            }
        }
        best
    }
}

pub fn max_pool_forward(x: &[f32], geo: &PoolGeom) -> Vec<f32> {
    let (hw, howo) = (geo.h * geo.w, geo.ho * geo.wo);
    let mut out = vec![0.0f32; geo.b * geo.c * howo];
    out.par_chunks_mut(howo)
        .zip(x.par_chunks(hw))
        .for_each(|(o, plane)| {
            for oy in 0..geo.ho {
                for ox in 0..geo.wo {
                    o[oy * geo.wo + ox] = plane[geo.argmax(plane, oy, ox)];
                }
            }
        });
    out
}

pub fn max_pool_backward(x: &[f32], dy: &[f32], geo: &PoolGeom) -> Vec<f32> {
    let (hw, howo) = (geo.h * geo.w, geo.ho * geo.wo);
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut(hw)
        .zip(x.par_chunks(hw).zip(dy.par_chunks(howo)))
        .for_each(|(d, (plane, g))| {
            for oy in 0..geo.ho {
                for ox in 0..geo.wo {
                    d[geo.argmax(plane, oy, ox)] += g[oy * geo.wo + ox];
                }
            }
        });
    dx
}

/// `x -> max_pool2d(x)` with a backward.
pub struct MaxPoolOp {
    pub kernel: usize,
    pub stride: usize,
    pub pad: Padding,
}

impl CustomOp1 for MaxPoolOp {
    fn name(&self) -> &'static str {
        "nf-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let geo = PoolGeom::new(l.shape().dims4()?, self.kernel, self.stride, self.pad)?;
        let x = f32_slice(s, l, "max_pool2d input")?;
        let out = max_pool_forward(x, &geo);
        Ok((
            CpuStorage::F32(out),
            Shape::from((geo.b, geo.c, geo.ho, geo.wo)),
        ))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let geo = PoolGeom::new(x.dims4()?, self.kernel, self.stride, self.pad)?;
        let dx = x.apply_op2_no_bwd(&grad.contiguous()?, &MaxPoolBackward { geo })?;
        Ok(Some(dx))
    }
}

struct MaxPoolBackward {
    geo: PoolGeom,
}

impl CustomOp2 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "nf-max-pool2d-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let geo = &self.geo;
        let x = f32_slice(s1, l1, "max_pool2d input")?;
        let dy = f32_slice(s2, l2, "max_pool2d output gradient")?;
        if dy.len() != geo.b * geo.c * geo.ho * geo.wo || x.len() != geo.b * geo.c * geo.h * geo.w {
            bail!(
                "max_pool2d backward: gradient shape {:?} does not match the pooling",
                l2.shape()
            );
        }
        Ok((
            CpuStorage::F32(max_pool_backward(x, dy, geo)),
            l1.shape().clone(),
        ))
    }
}
