//! 2-D convolution on the CPU as custom candle ops: forward, input gradient and weight gradient each as one large
//! gemm per (batch chunk, group) over an im2col buffer, so candle's slow direct-loop `conv_transpose2d` and its
//! per-group chunk + cat never run on the training path.
//!
//! Layout: NCHW activations, OIHW kernels (what the model uses). For a chunk of `nb` images and one group the
//! im2col buffer is `[Cg*kh*kw, nb*Ho*Wo]` (rows = kernel taps, columns = output pixels of all images in the chunk),
//! so every product has a wide inner or outer dimension even on 8x8 feature maps.

use super::gemm::{sgemm, MatRef};
use super::scratch::with_scratch;
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Floats of im2col buffer per chunk: big enough for wide gemms, small enough to stay in the last-level cache.
const COL_BUDGET: usize = 1 << 21;

/// The geometry of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub b: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    /// Zero padding before and after the rows (top, bottom) and the columns (left, right).
    pub pad: Padding,
    pub groups: usize,
    pub ho: usize,
    pub wo: usize,
}

/// Zero padding on each side, in pixels (asymmetric for TF-style 'SAME' strided convs on even inputs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Padding {
    pub top: usize,
    pub bottom: usize,
    pub left: usize,
    pub right: usize,
}

impl Padding {
    /// The same padding on all four sides.
    pub fn uniform(p: usize) -> Self {
        Self {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }
}

impl ConvGeom {
    /// Checks the shapes of input `[B, C, H, W]` and kernel `[O, C/groups, kh, kw]`.
    pub fn new(
        x: (usize, usize, usize, usize),
        k: (usize, usize, usize, usize),
        stride: usize,
        pad: Padding,
        groups: usize,
    ) -> Result<Self> {
        let (b, c, h, w) = x;
        let (o, cg, kh, kw) = k;
        if stride == 0 || groups == 0 {
            bail!("conv2d: stride ({stride}) and groups ({groups}) must be at least 1");
        }
        if c != cg * groups || o % groups != 0 {
            bail!("conv2d: input has {c} channels, kernel {o}x{cg}x{kh}x{kw} with {groups} groups does not fit");
        }
        let (hp, wp) = (h + pad.top + pad.bottom, w + pad.left + pad.right);
        if hp < kh || wp < kw || kh == 0 || kw == 0 {
            bail!("conv2d: kernel {kh}x{kw} larger than padded input {h}x{w} (padding {pad:?})");
        }
        let ho = (hp - kh) / stride + 1;
        let wo = (wp - kw) / stride + 1;
        Ok(Self {
            b,
            c,
            h,
            w,
            o,
            kh,
            kw,
            stride,
            pad,
            groups,
            ho,
            wo,
        })
    }

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
    fn out_view(&self) -> GroupView {
        GroupView {
            ch: self.o,
            hw: self.howo(),
            og: self.og(),
        }
    }
    pub fn out_dims(&self) -> (usize, usize, usize, usize) {
        (self.b, self.o, self.ho, self.wo)
    }
    /// Images per chunk so that the im2col buffer stays within [`COL_BUDGET`].
    fn chunk(&self) -> usize {
        (COL_BUDGET / (self.kdim() * self.howo()).max(1)).clamp(1, self.b.max(1))
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

/// Fills `col` (`[kdim, nb*howo]`) with the patches of images `b0..b0+nb`, channels of group `g`.
fn im2col(x: &[f32], geo: &ConvGeom, b0: usize, nb: usize, g: usize, col: &mut [f32]) {
    let n = nb * geo.howo();
    let (kh, kw, cg) = (geo.kh, geo.kw, geo.cg());
    col[..geo.kdim() * n]
        .par_chunks_mut(n)
        .enumerate()
        .for_each(|(r, row)| {
            let c = g * cg + r / (kh * kw);
            let ki = (r / kw) % kh;
            let kj = r % kw;
            let (ylo, yhi) = geo.rows(ki);
            let (xlo, xhi) = geo.cols(kj);
            for bi in 0..nb {
                let plane = &x[((b0 + bi) * geo.c + c) * geo.hw()..][..geo.hw()];
                let out = &mut row[bi * geo.howo()..][..geo.howo()];
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
                            // An element loop, not copy_from_slice: rows are 8-64 floats, where a memmove call
                            // per row cost more than the copy (15% of a step on the default network).
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
        });
}

/// Adds the columns of `col` (`[kdim, nb*howo]`) back into the planes of `dx` they were taken from: the adjoint of
/// [`im2col`]. `dx` holds images `b0..b0+nb` only.
fn col2im(col: &[f32], geo: &ConvGeom, nb: usize, g: usize, dx: &mut [f32]) {
    let n = nb * geo.howo();
    let (kh, kw, cg) = (geo.kh, geo.kw, geo.cg());
    dx[..nb * geo.c * geo.hw()]
        .par_chunks_mut(geo.hw())
        .enumerate()
        .filter(|(p, _)| (p % geo.c) / cg == g)
        .for_each(|(p, plane)| {
            let bi = p / geo.c;
            let cl = p % geo.c - g * cg;
            for ki in 0..kh {
                let (ylo, yhi) = geo.rows(ki);
                for kj in 0..kw {
                    let (xlo, xhi) = geo.cols(kj);
                    if xlo >= xhi {
                        continue;
                    }
                    let r = (cl * kh + ki) * kw + kj;
                    let src = &col[r * n + bi * geo.howo()..][..geo.howo()];
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
        });
}

/// How the channels of an NCHW tensor split into groups: `ch` channels of `hw` pixels, `og` per group.
#[derive(Clone, Copy)]
struct GroupView {
    ch: usize,
    hw: usize,
    og: usize,
}

/// Copies the channels of group `g` of images `b0..b0+nb` into a `[og, nb*hw]` matrix.
fn gather_group(src: &[f32], v: GroupView, b0: usize, nb: usize, g: usize, dst: &mut [f32]) {
    let n = nb * v.hw;
    dst[..v.og * n]
        .par_chunks_mut(n)
        .enumerate()
        .for_each(|(o, row)| {
            for bi in 0..nb {
                let s = &src[((b0 + bi) * v.ch + g * v.og + o) * v.hw..][..v.hw];
                row[bi * v.hw..][..v.hw].copy_from_slice(s);
            }
        });
}

/// The inverse of [`gather_group`]: writes a `[og, nb*hw]` matrix into the group's channels of an NCHW buffer
/// holding images `b0..b0+nb` at its start.
fn scatter_group(src: &[f32], v: GroupView, nb: usize, g: usize, dst: &mut [f32]) {
    let n = nb * v.hw;
    dst[..nb * v.ch * v.hw]
        .par_chunks_mut(v.hw)
        .enumerate()
        .filter(|(p, _)| (p % v.ch) / v.og == g)
        .for_each(|(p, plane)| {
            let bi = p / v.ch;
            let o = p % v.ch - g * v.og;
            plane.copy_from_slice(&src[o * n + bi * v.hw..][..v.hw]);
        });
}

/// Forward convolution: `out[B, O, Ho, Wo]` from contiguous `x` and `w`.
pub fn conv2d_forward(x: &[f32], w: &[f32], geo: &ConvGeom) -> Vec<f32> {
    let (kdim, howo, og) = (geo.kdim(), geo.howo(), geo.og());
    let mut out = vec![0.0f32; geo.b * geo.o * howo];
    let chunk = geo.chunk();
    with_scratch(kdim * chunk * howo, og * chunk * howo, |col, tmp| {
        for b0 in (0..geo.b).step_by(chunk) {
            let nb = chunk.min(geo.b - b0);
            let n = nb * howo;
            let out_chunk = &mut out[b0 * geo.o * howo..(b0 + nb) * geo.o * howo];
            for g in 0..geo.groups {
                im2col(x, geo, b0, nb, g, col);
                let wg = MatRef::row_major(&w[g * og * kdim..(g + 1) * og * kdim], og, kdim);
                sgemm(tmp, wg, MatRef::row_major(&col[..kdim * n], kdim, n), false);
                scatter_group(tmp, geo.out_view(), nb, g, out_chunk);
            }
        }
    });
    out
}

/// Input gradient: `dx[B, C, H, W]` from the output gradient `dy[B, O, Ho, Wo]` and the kernel.
pub fn conv2d_input_grad(dy: &[f32], w: &[f32], geo: &ConvGeom) -> Vec<f32> {
    let (kdim, howo, og) = (geo.kdim(), geo.howo(), geo.og());
    let mut dx = vec![0.0f32; geo.b * geo.c * geo.hw()];
    let chunk = geo.chunk();
    with_scratch(kdim * chunk * howo, og * chunk * howo, |col, dyg| {
        for b0 in (0..geo.b).step_by(chunk) {
            let nb = chunk.min(geo.b - b0);
            let n = nb * howo;
            let dx_chunk = &mut dx[b0 * geo.c * geo.hw()..(b0 + nb) * geo.c * geo.hw()];
            for g in 0..geo.groups {
                gather_group(dy, geo.out_view(), b0, nb, g, dyg);
                let wg = MatRef::row_major(&w[g * og * kdim..(g + 1) * og * kdim], og, kdim);
                sgemm(col, wg.t(), MatRef::row_major(&dyg[..og * n], og, n), false);
                col2im(col, geo, nb, g, dx_chunk);
            }
        }
    });
    dx
}

/// Weight gradient: `dw[O, C/groups, kh, kw]` from the input and the output gradient.
pub fn conv2d_weight_grad(x: &[f32], dy: &[f32], geo: &ConvGeom) -> Vec<f32> {
    let (kdim, howo, og) = (geo.kdim(), geo.howo(), geo.og());
    let mut dw = vec![0.0f32; geo.o * kdim];
    let chunk = geo.chunk();
    // The product is formed transposed, `dW^T [kdim, og] = col [kdim, n] x dY^T [n, og]`, then transposed into `dw`:
    // gemm then packs only the small `dY` panel (og x n) instead of the whole im2col buffer (kdim x n), which cost
    // twice the multiply-adds themselves when og is small (16 output channels: 16 MACs per packed float).
    let mut dwt = vec![0.0f32; kdim * og];
    with_scratch(kdim * chunk * howo, og * chunk * howo, |col, dyg| {
        for b0 in (0..geo.b).step_by(chunk) {
            let nb = chunk.min(geo.b - b0);
            let n = nb * howo;
            for g in 0..geo.groups {
                im2col(x, geo, b0, nb, g, col);
                gather_group(dy, geo.out_view(), b0, nb, g, dyg);
                let colm = MatRef::row_major(&col[..kdim * n], kdim, n);
                let dygt = MatRef::row_major(&dyg[..og * n], og, n).t();
                sgemm(&mut dwt, colm, dygt, false);
                let dwg = &mut dw[g * og * kdim..(g + 1) * og * kdim];
                for (o, row) in dwg.chunks_mut(kdim).enumerate() {
                    for (k, v) in row.iter_mut().enumerate() {
                        *v += dwt[k * og + o];
                    }
                }
            }
        }
    });
    dw
}

/// Borrows the f32 data of a contiguous CPU tensor argument.
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        other => bail!("{what}: expected f32, got {:?}", other.dtype()),
    };
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{what}: argument is not contiguous"),
    }
}

fn dims4(l: &Layout) -> Result<(usize, usize, usize, usize)> {
    l.shape().dims4()
}

/// `conv2d(x, w)` with its own backward (both gradients through [`ConvInputGrad`] / [`ConvWeightGrad`]).
pub struct Conv2dOp {
    pub stride: usize,
    pub pad: Padding,
    pub groups: usize,
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
        let out = conv2d_forward(x, w, &geo);
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
        let grad = grad.contiguous()?;
        // A network input (neither a variable nor computed) needs no gradient: skip the whole input-gradient gemm.
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(w, &ConvInputGrad { geo })?)
        } else {
            None
        };
        let dw = x.apply_op2_no_bwd(&grad, &ConvWeightGrad { geo })?;
        Ok((dx, Some(dw)))
    }
}

/// `(dy, w) -> dx` for a convolution of geometry `geo`.
pub struct ConvInputGrad {
    pub geo: ConvGeom,
}

impl CustomOp2 for ConvInputGrad {
    fn name(&self) -> &'static str {
        "nf-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let geo = &self.geo;
        check_dims(l1, geo.out_dims(), "conv2d output gradient")?;
        check_dims(l2, (geo.o, geo.cg(), geo.kh, geo.kw), "conv2d kernel")?;
        let dy = f32_slice(s1, l1, "conv2d output gradient")?;
        let w = f32_slice(s2, l2, "conv2d kernel")?;
        let dx = conv2d_input_grad(dy, w, geo);
        Ok((
            CpuStorage::F32(dx),
            Shape::from((geo.b, geo.c, geo.h, geo.w)),
        ))
    }
}

/// `(x, dy) -> dw` for a convolution of geometry `geo`.
pub struct ConvWeightGrad {
    pub geo: ConvGeom,
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
        let dw = conv2d_weight_grad(x, dy, geo);
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

/// True when the fast CPU path applies: both tensors f32 on the CPU.
pub(crate) fn cpu_f32(ts: &[&Tensor]) -> bool {
    ts.iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}
