//! 2-D convolution on the CPU as custom candle ops: forward, input gradient and weight gradient each as one large
//! gemm per (batch chunk, group) over an im2col buffer, so candle's slow direct-loop `conv_transpose2d` and its
//! per-group chunk + cat never run on the training path.
//!
//! Layout: NCHW activations, OIHW kernels (what the model uses). For a chunk of `nb` images and one group the
//! im2col buffer is `[Cg*kh*kw, nb*Ho*Wo]` (rows = kernel taps, columns = output pixels of all images in the chunk),
//! so every product has a wide inner or outer dimension even on 8x8 feature maps.

use super::direct::{self, Epilogue, Fusion};
use super::fused::{keep_if_positive, ChannelSum, ReluGrad};
use super::gemm::{sgemm_serial, MatRef};
use super::geometry::{ConvGeom, Padding};
use super::reduce::sum_partials;
use super::scratch::with_scratch;
use super::storage::{dims4, f32_slice};
use super::strided;
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

impl ConvGeom {
    fn cg(&self) -> usize {
        self.c / self.groups
    }
    fn og(&self) -> usize {
        self.o / self.groups
    }
    /// Kernel taps per output channel (the gemm's inner dimension for the forward pass).
    fn kdim(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    fn howo(&self) -> usize {
        self.ho * self.wo
    }
    fn hw(&self) -> usize {
        self.h * self.w
    }
    /// Range of output positions `ox` whose input position `ox*stride + k - pad` lies inside `[0, len)`.
    fn valid_range(&self, k: usize, len: usize, out_len: usize, pad: usize) -> (usize, usize) {
        // ox*s + k - p >= 0  <=>  ox >= ceil((p - k) / s)
        let lo = if pad > k {
            (pad - k).div_ceil(self.stride)
        } else {
            0
        };
        // ox*s + k - p <= len - 1  <=>  ox <= floor((len - 1 + p - k) / s)
        let hi = if len + pad > k {
            ((len - 1 + pad - k) / self.stride + 1).min(out_len)
        } else {
            0
        };
        (lo.min(hi), hi)
    }
    fn rows(&self, ki: usize) -> (usize, usize) {
        self.valid_range(ki, self.h, self.ho, self.pad.top)
    }
    fn cols(&self, kj: usize) -> (usize, usize) {
        self.valid_range(kj, self.w, self.wo, self.pad.left)
    }
}

/// Fills columns `off..off + howo` of `col` (`[kdim, ld]`) with the patches of one image (`img`: its `[C, H, W]`
/// planes), channels of group `g`. Serial: the callers run one group of images per task.
fn im2col_image(img: &[f32], geo: &ConvGeom, g: usize, col: &mut [f32], ld: usize, off: usize) {
    let howo = geo.howo();
    let (kh, kw, cg) = (geo.kh, geo.kw, geo.cg());
    for (r, row) in col[..geo.kdim() * ld].chunks_mut(ld).enumerate() {
        let out = &mut row[off..off + howo];
        let c = g * cg + r / (kh * kw);
        let ki = (r / kw) % kh;
        let kj = r % kw;
        let (ylo, yhi) = geo.rows(ki);
        let (xlo, xhi) = geo.cols(kj);
        let plane = &img[c * geo.hw()..][..geo.hw()];
        for oy in 0..geo.ho {
            let orow = &mut out[oy * geo.wo..][..geo.wo];
            if oy < ylo || oy >= yhi {
                orow.fill(0.0);
                continue;
            }
            let iy = oy * geo.stride + ki - geo.pad.top;
            let irow = &plane[iy * geo.w..][..geo.w];
            orow[..xlo].fill(0.0);
            orow[xhi..].fill(0.0);
            if xlo < xhi {
                let ix0 = xlo * geo.stride + kj - geo.pad.left;
                if geo.stride == 1 {
                    // An element loop, not copy_from_slice: rows are 8-64 floats, where a memmove call per row
                    // cost more than the copy (15% of a step on the default network).
                    for (o, i) in orow[xlo..xhi].iter_mut().zip(&irow[ix0..]) {
                        *o = *i;
                    }
                } else {
                    for (o, i) in orow[xlo..xhi]
                        .iter_mut()
                        .zip(irow[ix0..].iter().step_by(geo.stride))
                    {
                        *o = *i;
                    }
                }
            }
        }
    }
}

/// Adds columns `off..off + howo` of `col` (`[kdim, ld]`) back into the planes of one image's `dx` (`[C, H, W]`)
/// they were taken from: the adjoint of [`im2col_image`].
fn col2im_image(col: &[f32], geo: &ConvGeom, g: usize, dx: &mut [f32], ld: usize, off: usize) {
    let howo = geo.howo();
    let (kh, kw, cg) = (geo.kh, geo.kw, geo.cg());
    for cl in 0..cg {
        let plane = &mut dx[(g * cg + cl) * geo.hw()..][..geo.hw()];
        for ki in 0..kh {
            let (ylo, yhi) = geo.rows(ki);
            for kj in 0..kw {
                let (xlo, xhi) = geo.cols(kj);
                if xlo >= xhi {
                    continue;
                }
                let r = (cl * kh + ki) * kw + kj;
                let src = &col[r * ld + off..][..howo];
                let ix0 = xlo * geo.stride + kj - geo.pad.left;
                for oy in ylo..yhi {
                    let iy = oy * geo.stride + ki - geo.pad.top;
                    let srow = &src[oy * geo.wo + xlo..oy * geo.wo + xhi];
                    let drow = &mut plane[iy * geo.w..][..geo.w];
                    if geo.stride == 1 {
                        for (d, s) in drow[ix0..ix0 + srow.len()].iter_mut().zip(srow) {
                            *d += *s;
                        }
                    } else {
                        for (d, s) in drow[ix0..].iter_mut().step_by(geo.stride).zip(srow) {
                            *d += *s;
                        }
                    }
                }
            }
        }
    }
}

impl ConvGeom {
    /// A 1x1 stride-1 unpadded conv: its im2col matrix is the input itself.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == Padding::default()
    }
}

/// Output pixels below which images are grouped into one gemm: a 2x2 or 4x4 map alone makes a product too thin
/// for the micro-kernel, so small maps go `ceil(MIN_GEMM_COLS / howo)` images at a time. Measured (nfbench bench,
/// default preset and nf_resnet26 at 64 px): 1 -> 707 / 66.5 img/s, 64 -> 724 / 90.4, 256 -> 706 / 84.4,
/// 512 -> 679 / 78.8.
const MIN_GEMM_COLS: usize = 64;

impl ConvGeom {
    /// Images per gemm.
    fn images_per_gemm(&self) -> usize {
        MIN_GEMM_COLS
            .div_ceil(self.howo().max(1))
            .clamp(1, self.b.max(1))
    }
}

/// Image groups per rayon task: a few tasks per thread, so two threads balance without a task per group.
fn groups_per_task(n_groups: usize) -> usize {
    n_groups.div_ceil(4 * rayon::current_num_threads()).max(1)
}

/// Copies group `g`'s channels of `nb` images of an NCHW slice (`src`, `ch` channels of `hw` pixels) into
/// `dst [og, nb*hw]`.
fn gather(src: &[f32], ch: usize, hw: usize, og: usize, g: usize, nb: usize, dst: &mut [f32]) {
    for o in 0..og {
        for bi in 0..nb {
            let s = &src[(bi * ch + g * og + o) * hw..][..hw];
            dst[o * nb * hw + bi * hw..][..hw].copy_from_slice(s);
        }
    }
}

/// The inverse of [`gather`].
fn scatter(src: &[f32], ch: usize, hw: usize, og: usize, g: usize, nb: usize, dst: &mut [f32]) {
    for o in 0..og {
        for bi in 0..nb {
            let s = &src[o * nb * hw + bi * hw..][..hw];
            dst[(bi * ch + g * og + o) * hw..][..hw].copy_from_slice(s);
        }
    }
}

// The three passes run one group of images per task (batch-parallel, each gemm serial): the group's im2col buffer
// stays in the core's L2, and there is one rayon join per convolution instead of one per im2col, gemm and copy.
// A group is one image when its map is large enough (then no copy between NCHW and the gemm's layout at all), else
// a few images side by side ([`ConvGeom::images_per_gemm`]).

/// Forward convolution: `out[B, O, Ho, Wo]` from contiguous `x` and `w`.
pub fn conv2d_forward(x: &[f32], w: &[f32], geo: &ConvGeom) -> Vec<f32> {
    conv2d_forward_with(x, w, geo, Fusion::NONE)
}

/// [`conv2d_forward`] of `relu(x)` when `fusion.relu_input`, then `fusion.epilogue` (bias, relu) on every output value: both
/// inside the copies into and out of the frame on the shifted-frame path, extra passes on the im2col path.
fn conv2d_forward_with(x: &[f32], w: &[f32], geo: &ConvGeom, fusion: Fusion<'_>) -> Vec<f32> {
    if direct::applies(geo) {
        return direct::forward(x, w, geo, fusion);
    }
    if strided::applies(geo) {
        return strided::forward(x, w, geo, fusion);
    }
    let xr;
    let x = if fusion.relu_input {
        xr = relu_copy(x);
        &xr
    } else {
        x
    };
    let mut out = conv2d_forward_im2col(x, w, geo);
    let ep = fusion.epilogue;
    if ep.bias.is_some() || ep.relu {
        apply_epilogue(&mut out, geo, ep);
    }
    out
}

/// `max(x, 0)` into a new buffer (the im2col path's pre-activation, which the shifted frames apply while copying).
fn relu_copy(x: &[f32]) -> Vec<f32> {
    // Collected, not written into a zero-filled buffer: no memset of an activation.
    let mut out = Vec::with_capacity(x.len());
    x.par_iter()
        .with_min_len(1 << 14)
        .map(|v| v.max(0.0))
        .collect_into_vec(&mut out);
    out
}

/// `dx` where `mask > 0`, else zero (the gradient through a pre-activation relu), in place.
fn mask_by_positive(dx: &mut [f32], mask: &[f32]) {
    dx.par_chunks_mut(1 << 14)
        .zip(mask.par_chunks(1 << 14))
        .for_each(|(d, m)| {
            for (d, m) in d.iter_mut().zip(m) {
                *d = keep_if_positive(*d, *m);
            }
        });
}

/// Adds the per-channel bias and applies the relu, one pass over `out[B, O, Ho, Wo]`.
fn apply_epilogue(out: &mut [f32], geo: &ConvGeom, ep: Epilogue<'_>) {
    let plane = geo.howo().max(1);
    out.par_chunks_mut(plane).enumerate().for_each(|(p, ys)| {
        let bv = ep.bias.map_or(0.0, |b| b[p % geo.o]);
        if ep.relu {
            ys.iter_mut().for_each(|y| *y = (*y + bv).max(0.0));
        } else {
            ys.iter_mut().for_each(|y| *y += bv);
        }
    });
}

/// [`conv2d_forward`] as im2col + gemm, for every geometry.
pub fn conv2d_forward_im2col(x: &[f32], w: &[f32], geo: &ConvGeom) -> Vec<f32> {
    let (kdim, howo, og) = (geo.kdim(), geo.howo(), geo.og());
    let chw = geo.c * geo.hw();
    let mut out = vec![0.0f32; geo.b * geo.o * howo];
    if geo.b == 0 {
        return out;
    }
    let nb = geo.images_per_gemm();
    let per_task = groups_per_task(geo.b.div_ceil(nb));
    out.par_chunks_mut(nb * geo.o * howo)
        .enumerate()
        .with_min_len(per_task)
        .for_each(|(t, ob)| {
            let b0 = t * nb;
            let nbt = ob.len() / (geo.o * howo);
            let n = nbt * howo;
            let imgs = &x[b0 * chw..][..nbt * chw];
            with_scratch(kdim * n, og * n, |col, tmp| {
                for g in 0..geo.groups {
                    let wg = MatRef::row_major(&w[g * og * kdim..][..og * kdim], og, kdim);
                    if nbt == 1 {
                        let dst = &mut ob[g * og * howo..][..og * howo];
                        let cols = if geo.is_pointwise() {
                            &imgs[g * kdim * howo..][..kdim * howo]
                        } else {
                            im2col_image(imgs, geo, g, col, howo, 0);
                            &col[..kdim * howo]
                        };
                        sgemm_serial(dst, wg, MatRef::row_major(cols, kdim, howo), false);
                    } else {
                        for bi in 0..nbt {
                            im2col_image(&imgs[bi * chw..][..chw], geo, g, col, n, bi * howo);
                        }
                        let cols = MatRef::row_major(&col[..kdim * n], kdim, n);
                        sgemm_serial(&mut tmp[..og * n], wg, cols, false);
                        scatter(tmp, geo.o, howo, og, g, nbt, ob);
                    }
                }
            });
        });
    out
}

/// Input gradient: `dx[B, C, H, W]` from the output gradient `dy[B, O, Ho, Wo]` and the kernel.
pub fn conv2d_input_grad(dy: &[f32], w: &[f32], geo: &ConvGeom) -> Vec<f32> {
    input_grad_masked(dy, w, geo, None)
}

/// [`conv2d_input_grad`], zero where `mask` (the input of a convolution of `relu(x)`) is not positive.
fn input_grad_masked(dy: &[f32], w: &[f32], geo: &ConvGeom, mask: Option<&[f32]>) -> Vec<f32> {
    if direct::applies(geo) {
        return direct::input_grad(dy, w, geo, mask);
    }
    if strided::applies(geo) {
        return strided::input_grad(dy, w, geo, mask);
    }
    let mut dx = conv2d_input_grad_im2col(dy, w, geo);
    if let Some(m) = mask {
        mask_by_positive(&mut dx, m);
    }
    dx
}

/// [`conv2d_input_grad`] as gemm + col2im, for every geometry.
pub fn conv2d_input_grad_im2col(dy: &[f32], w: &[f32], geo: &ConvGeom) -> Vec<f32> {
    let (kdim, howo, og) = (geo.kdim(), geo.howo(), geo.og());
    let chw = geo.c * geo.hw();
    let mut dx = vec![0.0f32; geo.b * chw];
    if geo.b == 0 {
        return dx;
    }
    let nb = geo.images_per_gemm();
    let per_task = groups_per_task(geo.b.div_ceil(nb));
    dx.par_chunks_mut(nb * chw)
        .enumerate()
        .with_min_len(per_task)
        .for_each(|(t, dxb)| {
            let b0 = t * nb;
            let nbt = dxb.len() / chw;
            let n = nbt * howo;
            let dyb = &dy[b0 * geo.o * howo..][..nbt * geo.o * howo];
            with_scratch(kdim * n, og * n, |col, dyg| {
                for g in 0..geo.groups {
                    let wgt = MatRef::row_major(&w[g * og * kdim..][..og * kdim], og, kdim).t();
                    if nbt == 1 {
                        let dyg = MatRef::row_major(&dyb[g * og * howo..][..og * howo], og, howo);
                        if geo.is_pointwise() {
                            sgemm_serial(
                                &mut dxb[g * kdim * howo..][..kdim * howo],
                                wgt,
                                dyg,
                                false,
                            );
                        } else {
                            sgemm_serial(&mut col[..kdim * howo], wgt, dyg, false);
                            col2im_image(col, geo, g, dxb, howo, 0);
                        }
                    } else {
                        gather(dyb, geo.o, howo, og, g, nbt, dyg);
                        let dygm = MatRef::row_major(&dyg[..og * n], og, n);
                        sgemm_serial(&mut col[..kdim * n], wgt, dygm, false);
                        for bi in 0..nbt {
                            col2im_image(col, geo, g, &mut dxb[bi * chw..][..chw], n, bi * howo);
                        }
                    }
                }
            });
        });
    dx
}

/// Output channels per group up to which the weight gradient is formed transposed (see [`conv2d_weight_grad`]).
const WEIGHT_GRAD_TRANSPOSED_MAX_OG: usize = 64;

/// Weight gradient: `dw[O, C/groups, kh, kw]` from the input and the output gradient.
pub fn conv2d_weight_grad(x: &[f32], dy: &[f32], geo: &ConvGeom) -> Vec<f32> {
    weight_grad_with(x, dy, geo, false)
}

/// [`conv2d_weight_grad`] of a convolution of `relu(x)` when `relu_input`.
fn weight_grad_with(x: &[f32], dy: &[f32], geo: &ConvGeom, relu_input: bool) -> Vec<f32> {
    if direct::applies(geo) {
        return direct::weight_grad(x, dy, geo, relu_input);
    }
    if strided::applies(geo) {
        return strided::weight_grad(x, dy, geo, relu_input);
    }
    if relu_input {
        return conv2d_weight_grad_im2col(&relu_copy(x), dy, geo);
    }
    conv2d_weight_grad_im2col(x, dy, geo)
}

/// [`conv2d_weight_grad`] as im2col + gemm, for every geometry.
pub fn conv2d_weight_grad_im2col(x: &[f32], dy: &[f32], geo: &ConvGeom) -> Vec<f32> {
    let (kdim, howo, og) = (geo.kdim(), geo.howo(), geo.og());
    let chw = geo.c * geo.hw();
    let per_group = kdim * og;
    let nb = geo.images_per_gemm();
    let n_groups = geo.b.div_ceil(nb);
    // Each task accumulates `dW` per group over its images and the partial sums are added at the end. With few
    // output channels as `dW^T [kdim, og] = col [kdim, n] x dY^T [n, og]`, so that gemm packs only the small `dY`
    // panel and reads the im2col buffer in place (packing the buffer cost twice the multiply-adds at og = 16).
    // Which operand gemm packs: the transposed product packs the `dY` panel (og x n), the direct one the im2col
    // buffer (kdim x n). Few output channels favour the first: measured (nfbench bench, default preset / nf_resnet26
    // at 64 px), transposed up to og 16: 845 / 115 img/s, up to 32: 912 / 112, up to 64: 899 / 117; never: 630 / 114.
    let transposed = og <= WEIGHT_GRAD_TRANSPOSED_MAX_OG;
    let dwt = sum_partials(n_groups, geo.groups * per_group, |acc, t| {
        let b0 = t * nb;
        let nbt = nb.min(geo.b - b0);
        let n = nbt * howo;
        let imgs = &x[b0 * chw..][..nbt * chw];
        let dyb = &dy[b0 * geo.o * howo..][..nbt * geo.o * howo];
        with_scratch(kdim * n, og * n, |col, dyg| {
            for g in 0..geo.groups {
                let (cols, dygt) = if nbt == 1 {
                    let cols = if geo.is_pointwise() {
                        &imgs[g * kdim * howo..][..kdim * howo]
                    } else {
                        im2col_image(imgs, geo, g, col, howo, 0);
                        &col[..kdim * howo]
                    };
                    (cols, &dyb[g * og * howo..][..og * howo])
                } else {
                    for bi in 0..nbt {
                        im2col_image(&imgs[bi * chw..][..chw], geo, g, col, n, bi * howo);
                    }
                    gather(dyb, geo.o, howo, og, g, nbt, dyg);
                    (&col[..kdim * n], &dyg[..og * n])
                };
                let dst = &mut acc[g * per_group..][..per_group];
                let colm = MatRef::row_major(cols, kdim, n);
                let dym = MatRef::row_major(dygt, og, n);
                if transposed {
                    sgemm_serial(dst, colm, dym.t(), true);
                } else {
                    sgemm_serial(dst, dym, colm.t(), true);
                }
            }
        });
    });
    if !transposed {
        return dwt;
    }
    let mut dw = vec![0.0f32; geo.o * kdim];
    for g in 0..geo.groups {
        let src = &dwt[g * per_group..][..per_group];
        for (o, row) in dw[g * og * kdim..][..og * kdim]
            .chunks_mut(kdim)
            .enumerate()
        {
            for (k, v) in row.iter_mut().enumerate() {
                *v = src[k * og + o];
            }
        }
    }
    dw
}

/// `conv2d(x, w)` with its own backward (both gradients through [`ConvInputGrad`] / [`ConvWeightGrad`]).
pub struct Conv2dOp {
    pub stride: usize,
    pub pad: Padding,
    pub groups: usize,
    /// Convolve `relu(x)` instead of `x`: a block's pre-activation applied while the input is copied into the
    /// kernel's buffers, so it is neither a tensor nor a graph node (its gradient mask is applied to `dx`).
    pub relu_input: bool,
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "nf-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let geo = ConvGeom::new(dims4(l1)?, dims4(l2)?, self.stride, self.pad, self.groups)?;
        let x = f32_slice(s1, l1, "conv2d input")?;
        let w = f32_slice(s2, l2, "conv2d kernel")?;
        let fusion = Fusion {
            relu_input: self.relu_input,
            epilogue: Epilogue::NONE,
        };
        let out = conv2d_forward_with(x, w, &geo, fusion);
        Ok((CpuStorage::F32(out), Shape::from(geo.out_dims())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let geo = ConvGeom::new(x.dims4()?, w.dims4()?, self.stride, self.pad, self.groups)?;
        let (dx, dw) = conv_grads(x, w, &grad.contiguous()?, geo, self.relu_input)?;
        Ok((dx, Some(dw)))
    }
}

/// The input gradient (when `x` needs one) and the kernel gradient of a convolution of `x` (of `relu(x)` when
/// `relu_input`), from the contiguous output gradient `g`.
fn conv_grads(
    x: &Tensor,
    w: &Tensor,
    g: &Tensor,
    geo: ConvGeom,
    relu_input: bool,
) -> Result<(Option<Tensor>, Tensor)> {
    // A network input (neither a variable nor computed) needs no gradient: skip the whole input-gradient gemm.
    let dx = if x.track_op() {
        Some(g.apply_op3_no_bwd(w, x, &ConvInputGrad { geo, relu_input })?)
    } else {
        None
    };
    let dw = x.apply_op2_no_bwd(g, &ConvWeightGrad { geo, relu_input })?;
    Ok((dx, dw))
}

/// `conv2d(x, w) + b` per output channel, then `relu` when asked: one graph node (and one pass over the output)
/// instead of three. Backward: the relu mask from the op's own output (`y > 0` exactly where the pre-activation is),
/// then the convolution's two gradients and the bias's per-channel sum.
pub struct Conv2dBiasActOp {
    pub stride: usize,
    pub pad: Padding,
    pub groups: usize,
    pub relu: bool,
    /// Convolve `relu(x)` instead of `x` (see [`Conv2dOp::relu_input`]).
    pub relu_input: bool,
}

impl CustomOp3 for Conv2dBiasActOp {
    fn name(&self) -> &'static str {
        "nf-conv2d-bias-act"
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
        let geo = ConvGeom::new(dims4(l1)?, dims4(l2)?, self.stride, self.pad, self.groups)?;
        if l3.shape().dims() != [geo.o] {
            bail!(
                "conv2d bias: shape {:?}, expected [{}]",
                l3.shape().dims(),
                geo.o
            );
        }
        let x = f32_slice(s1, l1, "conv2d input")?;
        let w = f32_slice(s2, l2, "conv2d kernel")?;
        let b = f32_slice(s3, l3, "conv2d bias")?;
        let fusion = Fusion {
            relu_input: self.relu_input,
            epilogue: Epilogue {
                bias: Some(b),
                relu: self.relu,
            },
        };
        let out = conv2d_forward_with(x, w, &geo, fusion);
        Ok((CpuStorage::F32(out), Shape::from(geo.out_dims())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let geo = ConvGeom::new(x.dims4()?, w.dims4()?, self.stride, self.pad, self.groups)?;
        let grad = grad.contiguous()?;
        let g = if self.relu {
            grad.apply_op2_no_bwd(res, &ReluGrad)?
        } else {
            grad
        };
        let (dx, dw) = conv_grads(x, w, &g, geo, self.relu_input)?;
        let db = if b.track_op() {
            Some(g.apply_op1_no_bwd(&ChannelSum)?)
        } else {
            None
        };
        Ok((dx, Some(dw), db))
    }
}

/// `(dy, w, x) -> dx` for a convolution of geometry `geo` (`x` read only for the mask when `relu_input`).
pub struct ConvInputGrad {
    pub geo: ConvGeom,
    pub relu_input: bool,
}

impl CustomOp3 for ConvInputGrad {
    fn name(&self) -> &'static str {
        "nf-conv2d-input-grad"
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
        let geo = &self.geo;
        check_dims(l1, geo.out_dims(), "conv2d output gradient")?;
        check_dims(l2, (geo.o, geo.cg(), geo.kh, geo.kw), "conv2d kernel")?;
        let dy = f32_slice(s1, l1, "conv2d output gradient")?;
        let w = f32_slice(s2, l2, "conv2d kernel")?;
        let mask = if self.relu_input {
            check_dims(l3, (geo.b, geo.c, geo.h, geo.w), "conv2d input")?;
            Some(f32_slice(s3, l3, "conv2d input")?)
        } else {
            None
        };
        let dx = input_grad_masked(dy, w, geo, mask);
        Ok((
            CpuStorage::F32(dx),
            Shape::from((geo.b, geo.c, geo.h, geo.w)),
        ))
    }
}

/// `(x, dy) -> dw` for a convolution of geometry `geo` (of `relu(x)` when `relu_input`).
pub struct ConvWeightGrad {
    pub geo: ConvGeom,
    pub relu_input: bool,
}

impl CustomOp2 for ConvWeightGrad {
    fn name(&self) -> &'static str {
        "nf-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let geo = &self.geo;
        check_dims(l1, (geo.b, geo.c, geo.h, geo.w), "conv2d input")?;
        check_dims(l2, geo.out_dims(), "conv2d output gradient")?;
        let x = f32_slice(s1, l1, "conv2d input")?;
        let dy = f32_slice(s2, l2, "conv2d output gradient")?;
        let dw = weight_grad_with(x, dy, geo, self.relu_input);
        Ok((
            CpuStorage::F32(dw),
            Shape::from((geo.o, geo.cg(), geo.kh, geo.kw)),
        ))
    }
}

fn check_dims(l: &Layout, want: (usize, usize, usize, usize), what: &str) -> Result<()> {
    let got = dims4(l)?;
    if got != want {
        bail!("{what}: shape {got:?}, expected {want:?}");
    }
    Ok(())
}
