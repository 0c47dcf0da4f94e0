//! Stride-1 3x3 convolutions without an im2col buffer ("shifted frames"), on CPUs with AVX-512 or AVX2 + FMA.
//!
//! Pad each input plane once into an `hp x wp` buffer. The input under tap `(ki, kj)` of output pixel `(oy, ox)` then
//! sits at `(oy + ki) * wp + ox + kj`: the *frame position* `q = oy * wp + ox` plus a shift `ki * wp + kj` that is the
//! same for every pixel. Over frame positions (the output rows laid out at the padded width, the last `wp - wo`
//! columns of each row garbage) every tap is a contiguous view of the padded plane at a constant offset, so the
//! convolution is nine shifted products that read the padded input in place:
//!
//! - forward: `out[n][q] = sum_{t, k} W[n][k][t] * xp[k][q + shift(t)]`, then the valid columns are copied out
//!   (bias and relu applied on the way);
//! - input gradient: the same kernel on the output gradient padded by `2 - pad` (a stride-1 convolution's adjoint is
//!   the correlation with the flipped, transposed kernel);
//! - weight gradient: `dW[n][k][t] = sum_q dy[n][q] * xp[k][q + shift(t)]` with the garbage columns of `dy`'s frame
//!   zeroed, a dot product along the frame.
//!
//! What that saves against im2col + gemm: the 9x copy of the input in the forward and weight-gradient passes and the
//! 9x scatter-add of the input gradient (together a quarter of a training step on the default network), and the
//! gemm's packing of the copied buffer. What it costs: the garbage columns between images (small maps sit several
//! to a frame row, so 5% at 32 px, 14% at 8 px). The AVX-512 micro-kernels keep 3 x 16 pixels x 8 output channels
//! (forward) or 2 output channels x 9 taps x 16 pixels (weight gradient) in the 32 vector registers; the AVX2 ones
//! 2 x 8 pixels x 6 channels and 1 channel x 9 taps x 8 pixels in 16.

use super::fused::keep_if_positive;
use super::geometry::{ConvGeom, Padding};
use super::reduce::sum_partials;
use super::scratch::with_scratch;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Kernel side and taps: this path is for 3x3 kernels only (the bulk of every ResNet's multiply-adds).
pub(super) const KS: usize = 3;
pub(super) const TAPS: usize = KS * KS;
/// f32 lanes of one AVX-512 register.
pub(super) const LANES: usize = 16;

/// True when the convolutions use this path for `geo`: [`supports`] it and the frame has little garbage
/// ([`MIN_FRAME_EFFICIENCY`]).
pub(crate) fn applies(geo: &ConvGeom) -> bool {
    supports(geo) && pays(geo)
}

/// True when `geo` can run here: a 3x3 stride-1 convolution with at most 2 pixels of padding per side, on a CPU with
/// AVX-512 or AVX2 + FMA.
pub(crate) fn supports(geo: &ConvGeom) -> bool {
    let p = geo.pad;
    geo.kh == KS
        && geo.kw == KS
        && geo.stride == 1
        && p.top < KS
        && p.bottom < KS
        && p.left < KS
        && p.right < KS
        && geo.b > 0
        && simd_available()
}

/// Smallest share of useful frame positions (outputs over the frame rounded up to whole vectors) for which this
/// path beats im2col + gemm. With one image per frame row (measured, `nfbench bench`, default preset / nf_resnet26
/// at 64 px, batch 32): every map on this path 1170 / 95.5 img/s; maps at >= 0.75 (32, 16 and 8 px, one image per
/// row) 1170 / 123.7; at >= 0.85 (32 and 16 px) 1228 / 123.7; none 940 / 119.4. Images side by side lift 8 px maps
/// to 0.86 and 4 px ones to 0.79; on 2x2 maps most of a frame is padding.
pub(super) const MIN_FRAME_EFFICIENCY: f64 = 0.85;

/// Frame rows narrower than this get more images side by side (so 8 px maps make 73-float rows, not 10).
const MIN_ROW: usize = 64;

/// Images per task and frame row for `geo`: enough for [`MIN_ROW`], at most a share of the batch that leaves each
/// thread two tasks.
fn images_per_row(geo: &ConvGeom) -> usize {
    images_per_row_of(geo.w + geo.pad.left.max(geo.pad.right), geo.b)
}

/// Images per frame row of `col_step` floats each, out of a batch of `b` (see [`images_per_row`]).
pub(super) fn images_per_row_of(col_step: usize, b: usize) -> usize {
    let per_thread = b.div_ceil(2 * rayon::current_num_threads()).max(1);
    MIN_ROW
        .div_ceil(col_step.max(1))
        .min(per_thread)
        .clamp(1, b.max(1))
}

/// True when the frame's garbage leaves enough useful work, see [`MIN_FRAME_EFFICIENCY`].
fn pays(geo: &ConvGeom) -> bool {
    let imgs = images_per_row(geo);
    let l = RowLayout::new(geo.h, geo.w, geo.pad, imgs);
    let useful = (imgs * l.ho * l.wo) as f64 / l.frame as f64;
    useful >= MIN_FRAME_EFFICIENCY
}

/// The vector instructions the kernels run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Simd {
    Avx512,
    Avx2,
}

/// The widest [`Simd`] this CPU has, `None` without AVX2 + FMA (then the convolutions take im2col + gemm).
/// `NFBENCH_CONV_DIRECT=0` turns these kernels off and `=avx2` holds them to AVX2 (for A/B measurements and for
/// testing the AVX2 kernels on an AVX-512 machine).
pub(super) fn simd() -> Option<Simd> {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<Option<Simd>> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let choice = std::env::var("NFBENCH_CONV_DIRECT").unwrap_or_default();
        detect()
            .filter(|_| choice != "0")
            .map(|level| match choice.as_str() {
                "avx2" => Simd::Avx2,
                _ => level,
            })
    })
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Option<Simd> {
    use std::is_x86_feature_detected as has;
    if has!("avx512f") && has!("avx2") && has!("fma") {
        Some(Simd::Avx512)
    } else if has!("avx2") && has!("fma") {
        Some(Simd::Avx2)
    } else {
        None
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Option<Simd> {
    None
}

/// True when the shifted-frame kernels can run on this CPU.
pub(super) fn simd_available() -> bool {
    simd().is_some()
}

pub(super) fn round_up(n: usize, m: usize) -> usize {
    n.div_ceil(m) * m
}

/// Floats read past the last padded plane by the shifted views: the largest shift plus a frame rounded up to whole
/// vectors.
pub(super) fn slack(wp: usize, frame: usize) -> usize {
    (KS - 1) * wp + KS + round_up(frame, LANES)
}

/// Where a task's planes go in a padded buffer: per channel one plane `wp` wide, `stride` floats apart, holding
/// `imgs` images' `h x w` planes side by side, image `j` at row `top`, column `left + j * col_step`; zeros elsewhere.
#[derive(Clone, Copy, Debug)]
pub(super) struct Placement {
    pub imgs: usize,
    pub h: usize,
    pub w: usize,
    pub top: usize,
    pub left: usize,
    pub col_step: usize,
    pub wp: usize,
    pub stride: usize,
}

/// Where a frame's outputs are: image `j`'s `rows x cols` at position `y * wp + j * col_step + x` of each channel's
/// frame (`frame` floats apart).
#[derive(Clone, Copy, Debug)]
pub(super) struct FrameShape {
    pub imgs: usize,
    pub wp: usize,
    pub col_step: usize,
    pub rows: usize,
    pub cols: usize,
    pub frame: usize,
}

/// A task's images side by side in one zero-padded plane per channel, and the frame over it.
///
/// `col_step = w + max(left, right)`: one run of zeros between neighbours serves as the right padding of one image
/// and the left padding of the next (a 3x3 tap reaches at most `pad` columns past an edge). Output pixel `(oy, ox)`
/// of image `j` is frame position `oy * wp + j * col_step + ox`; the `col_step - wo` positions after each image's
/// outputs and the frame's rounding are garbage. For 8x8 maps with padding 1, 8 images make a 73-float row and a
/// frame 86% useful, where one image per row is 80%.
#[derive(Clone, Copy, Debug)]
struct RowLayout {
    input: Placement,
    ho: usize,
    wo: usize,
    /// Frame positions per channel: `ho * wp` rounded up to whole vectors.
    frame: usize,
}

impl RowLayout {
    /// `imgs` images of `h x w` with zero padding `pad` (each side < 3).
    fn new(h: usize, w: usize, pad: Padding, imgs: usize) -> Self {
        let sep = pad.left.max(pad.right);
        let col_step = w + sep;
        let wp = pad.left + imgs * col_step - sep + pad.right;
        let hp = h + pad.top + pad.bottom;
        let (ho, wo) = (hp + 1 - KS, w + pad.left + pad.right + 1 - KS);
        Self {
            input: Placement {
                imgs,
                h,
                w,
                top: pad.top,
                left: pad.left,
                col_step,
                wp,
                stride: hp * wp,
            },
            ho,
            wo,
            frame: round_up(ho * wp, LANES),
        }
    }

    fn wp(&self) -> usize {
        self.input.wp
    }

    fn shape(&self) -> FrameShape {
        FrameShape {
            imgs: self.input.imgs,
            wp: self.input.wp,
            col_step: self.input.col_step,
            rows: self.ho,
            cols: self.wo,
            frame: self.frame,
        }
    }

    /// Floats of a buffer holding `planes` padded planes and the slack the shifted views read past them.
    fn buffer_len(&self, planes: usize) -> usize {
        planes * self.input.stride + slack(self.wp(), self.frame)
    }

    /// The outputs' positions in the frame, as a placement (the weight gradient lays the output gradient out so).
    fn output(&self) -> Placement {
        Placement {
            imgs: self.input.imgs,
            h: self.ho,
            w: self.wo,
            top: 0,
            left: 0,
            col_step: self.input.col_step,
            wp: self.input.wp,
            stride: self.frame,
        }
    }
}

/// Copies `chans` channels of `p.imgs` NCHW images (`src`) into `dst` as laid out by `p`, zeros everywhere else
/// (borders, gaps between images, each plane's tail and whatever of `dst` follows the last plane); `max(v, 0)` of
/// each value when `relu` (a block's pre-activation, applied here instead of as a tensor of its own).
pub(super) fn place_planes(src: &[f32], chans: usize, p: &Placement, dst: &mut [f32], relu: bool) {
    let hw = p.h * p.w;
    assert!(src.len() >= p.imgs * chans * hw && dst.len() >= chans * p.stride);
    assert!(p.imgs == 0 || p.left + (p.imgs - 1) * p.col_step + p.w <= p.wp);
    assert!((p.top + p.h) * p.wp <= p.stride);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: every row written lies inside its plane (checked above), every plane inside `dst`, every source plane
    // inside `src`; `simd()` found the instructions the kernel is compiled for.
    unsafe {
        for k in 0..chans {
            let (s, d) = (src.as_ptr().add(k * hw), dst.as_mut_ptr().add(k * p.stride));
            match simd() {
                Some(Simd::Avx512) => avx512::place_plane(s, chans * hw, p, d, relu),
                Some(Simd::Avx2) => avx2::place_plane(s, chans * hw, p, d, relu),
                None => unreachable!(
                    "the shifted-frame kernels run only where `simd()` found AVX2 or AVX-512"
                ),
            }
        }
    }
    dst[chans * p.stride..].fill(0.0);
}

/// The writes that place one channel as laid out by `p`: `zero(at, len)` for every run no value goes to (the rows
/// above and below, and per row the gaps around each image: zeroing the whole plane and then copying cost a third
/// more), `copy(to, from, len)` for every row of every image (`from` counted from image 0's plane, the next images'
/// `src_img` floats apart). Inlined into each instruction set's `place_plane`.
#[inline(always)]
fn place_runs(
    p: &Placement,
    src_img: usize,
    mut zero: impl FnMut(usize, usize),
    mut copy: impl FnMut(usize, usize, usize),
) {
    zero(0, p.top * p.wp);
    let tail = (p.top + p.h) * p.wp;
    zero(tail, p.stride - tail);
    for y in 0..p.h {
        let row = (p.top + y) * p.wp;
        let mut filled = 0;
        for j in 0..p.imgs {
            let at = p.left + j * p.col_step;
            zero(row + filled, at - filled);
            copy(row + at, j * src_img + y * p.w, p.w);
            filled = at + p.w;
        }
        zero(row + filled, p.wp - filled);
    }
}

/// What the forward pass applies to each output value on its way out of the frame.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    /// Per output channel, added first.
    pub bias: Option<&'a [f32]>,
    /// `max(., 0)` after the bias.
    pub relu: bool,
}

impl Epilogue<'_> {
    pub(crate) const NONE: Epilogue<'static> = Epilogue {
        bias: None,
        relu: false,
    };
}

/// Copies the outputs of `n` channels' frames (`l.frame` floats apart) into NCHW `dst` (the task's images, `img`
/// floats apart; written, never read, so it may be uninitialised), channel `c0 + i` of each image, with the epilogue's bias `bias[c0 + i]` and relu, and zero where
/// `mask` (laid out like `dst`) is not positive: the gradient through a pre-activation relu.
#[allow(clippy::too_many_arguments)]
pub(super) fn compact(
    frames: &[f32],
    l: &FrameShape,
    n: usize,
    dst: &mut [MaybeUninit<f32>],
    img: usize,
    c0: usize,
    ep: Epilogue<'_>,
    mask: Option<&[f32]>,
) {
    let (wp, step) = (l.wp, l.col_step);
    let plane = l.rows * l.cols;
    for i in 0..n {
        let src = &frames[i * l.frame..][..l.frame];
        let b = ep.bias.map_or(0.0, |b| b[c0 + i]);
        for j in 0..l.imgs {
            let at = j * img + (c0 + i) * plane;
            let out = &mut dst[at..][..plane];
            for y in 0..l.rows {
                let s = &src[y * wp + j * step..][..l.cols];
                let d = &mut out[y * l.cols..][..l.cols];
                if let Some(m) = mask {
                    let m = &m[at + y * l.cols..][..l.cols];
                    for ((d, s), m) in d.iter_mut().zip(s).zip(m) {
                        d.write(keep_if_positive(*s, *m));
                    }
                    continue;
                }
                match (ep.bias.is_some(), ep.relu) {
                    (false, false) => d.iter_mut().zip(s).for_each(|(d, s)| {
                        d.write(*s);
                    }),
                    (_, false) => d.iter_mut().zip(s).for_each(|(d, s)| {
                        d.write(s + b);
                    }),
                    (_, true) => d.iter_mut().zip(s).for_each(|(d, s)| {
                        d.write((s + b).max(0.0));
                    }),
                }
            }
        }
    }
}

/// Forward pass `out[B, O, Ho, Wo]` of `relu(x)` when `relu_input`, else of `x` (`supports(geo)` must hold), with
/// the epilogue applied.
pub(crate) fn forward(
    x: &[f32],
    w: &[f32],
    geo: &ConvGeom,
    ep: Epilogue<'_>,
    relu_input: bool,
) -> Vec<f32> {
    let (cg, og) = (geo.c / geo.groups, geo.o / geo.groups);
    let packed = pack_forward(w, geo);
    let imgs = images_per_row(geo);
    let (chw, out_img) = (geo.c * geo.h * geo.w, geo.o * geo.ho * geo.wo);
    // Every output value is written by `compact` (each task: all its images, every group's channels, every row),
    // so the buffer is not zero-filled first (a memset of every activation, ~2% of a step).
    let mut out: Vec<f32> = Vec::with_capacity(geo.b * out_img);
    out.spare_capacity_mut()[..geo.b * out_img]
        .par_chunks_mut(imgs * out_img)
        .enumerate()
        .for_each(|(t, ob)| {
            let n = ob.len() / out_img;
            let l = RowLayout::new(geo.h, geo.w, geo.pad, n);
            with_scratch(l.buffer_len(geo.c), og * l.frame, |xp, fr| {
                place_planes(
                    &x[t * imgs * chw..][..n * chw],
                    geo.c,
                    &l.input,
                    xp,
                    relu_input,
                );
                for g in 0..geo.groups {
                    shifted_gemm(
                        &xp[g * cg * l.input.stride..],
                        l.input.stride,
                        cg,
                        &stride1_taps(l.wp()),
                        &packed[g * TAPS * cg * og..][..TAPS * cg * og],
                        og,
                        fr,
                        l.frame,
                    );
                    compact(fr, &l.shape(), og, ob, out_img, g * og, ep, None);
                }
            });
        });
    // SAFETY: the loop above wrote all `b * out_img` values (see the comment at the allocation).
    unsafe { out.set_len(geo.b * out_img) };
    out
}

/// Input gradient `dx[B, C, H, W]` (`supports(geo)` must hold), zero where `mask` (`[B, C, H, W]`, the input of a
/// convolution of `relu(x)`) is not positive.
pub(crate) fn input_grad(dy: &[f32], w: &[f32], geo: &ConvGeom, mask: Option<&[f32]>) -> Vec<f32> {
    let (cg, og) = (geo.c / geo.groups, geo.o / geo.groups);
    let packed = pack_input_grad(w, geo);
    let imgs = images_per_row(geo);
    let (chw, ohw) = (geo.c * geo.h * geo.w, geo.o * geo.ho * geo.wo);
    // The adjoint reads the output gradient padded so that every input pixel sees all nine taps: `2 - pad` on each
    // side, which gives back `H x W` outputs.
    let p = geo.pad;
    let adj_pad = Padding {
        top: KS - 1 - p.top,
        bottom: KS - 1 - p.bottom,
        left: KS - 1 - p.left,
        right: KS - 1 - p.right,
    };
    // Every value is written by `compact`, as in `forward`.
    let mut dx: Vec<f32> = Vec::with_capacity(geo.b * chw);
    dx.spare_capacity_mut()[..geo.b * chw]
        .par_chunks_mut(imgs * chw)
        .enumerate()
        .for_each(|(t, dxb)| {
            let n = dxb.len() / chw;
            let l = RowLayout::new(geo.ho, geo.wo, adj_pad, n);
            debug_assert_eq!((l.ho, l.wo), (geo.h, geo.w));
            with_scratch(l.buffer_len(geo.o), cg * l.frame, |dyp, fr| {
                place_planes(
                    &dy[t * imgs * ohw..][..n * ohw],
                    geo.o,
                    &l.input,
                    dyp,
                    false,
                );
                let mask = mask.map(|m| &m[t * imgs * chw..][..n * chw]);
                for g in 0..geo.groups {
                    shifted_gemm(
                        &dyp[g * og * l.input.stride..],
                        l.input.stride,
                        og,
                        &stride1_taps(l.wp()),
                        &packed[g * TAPS * og * cg..][..TAPS * og * cg],
                        cg,
                        fr,
                        l.frame,
                    );
                    compact(fr, &l.shape(), cg, dxb, chw, g * cg, Epilogue::NONE, mask);
                }
            });
        });
    // SAFETY: the loop above wrote all `b * chw` values.
    unsafe { dx.set_len(geo.b * chw) };
    dx
}

/// Weight gradient `dw[O, C/groups, 3, 3]` of a convolution of `relu(x)` when `relu_input`, else of `x`
/// (`supports(geo)` must hold).
pub(crate) fn weight_grad(x: &[f32], dy: &[f32], geo: &ConvGeom, relu_input: bool) -> Vec<f32> {
    let (cg, og) = (geo.c / geo.groups, geo.o / geo.groups);
    let imgs = images_per_row(geo);
    let (chw, ohw) = (geo.c * geo.h * geo.w, geo.o * geo.ho * geo.wo);
    let n_tasks = geo.b.div_ceil(imgs);
    let dw_len = geo.o * cg * TAPS;
    sum_partials(n_tasks, dw_len, |acc, t| {
        let n = imgs.min(geo.b - t * imgs);
        let l = RowLayout::new(geo.h, geo.w, geo.pad, n);
        // The output gradient in the frame's layout, garbage positions zero so they add nothing.
        let dy_place = l.output();
        with_scratch(l.buffer_len(geo.c), geo.o * l.frame, |xp, dyf| {
            place_planes(
                &x[t * imgs * chw..][..n * chw],
                geo.c,
                &l.input,
                xp,
                relu_input,
            );
            place_planes(
                &dy[t * imgs * ohw..][..n * ohw],
                geo.o,
                &dy_place,
                dyf,
                false,
            );
            for g in 0..geo.groups {
                shifted_dot(
                    &xp[g * cg * l.input.stride..],
                    l.input.stride,
                    cg,
                    Stride1 { wp: l.wp() },
                    &dyf[g * og * l.frame..],
                    og,
                    l.frame,
                    &mut acc[g * og * cg * TAPS..][..og * cg * TAPS],
                );
            }
        });
    })
}

/// Forward kernel packed per group as `[tap][k][n]` (`n` fastest: the micro-kernel broadcasts consecutive `n`).
pub(super) fn pack_forward(w: &[f32], geo: &ConvGeom) -> Vec<f32> {
    let (cg, og) = (geo.c / geo.groups, geo.o / geo.groups);
    let mut p = vec![0.0f32; w.len()];
    for g in 0..geo.groups {
        let dst = &mut p[g * TAPS * cg * og..][..TAPS * cg * og];
        for n in 0..og {
            for k in 0..cg {
                for t in 0..TAPS {
                    dst[(t * cg + k) * og + n] = w[((g * og + n) * cg + k) * TAPS + t];
                }
            }
        }
    }
    p
}

/// Input-gradient kernel per group as `[tap][o][c]`, flipped: tap `t` of the adjoint is tap `8 - t` of the kernel.
fn pack_input_grad(w: &[f32], geo: &ConvGeom) -> Vec<f32> {
    let (cg, og) = (geo.c / geo.groups, geo.o / geo.groups);
    let mut p = vec![0.0f32; w.len()];
    for g in 0..geo.groups {
        let dst = &mut p[g * TAPS * og * cg..][..TAPS * og * cg];
        for o in 0..og {
            for c in 0..cg {
                for t in 0..TAPS {
                    dst[(t * og + o) * cg + c] = w[((g * og + o) * cg + c) * TAPS + (TAPS - 1 - t)];
                }
            }
        }
    }
    p
}

/// Where the nine taps of a 3x3 kernel read, relative to a frame position: arithmetic the weight-gradient kernel
/// inlines (its tap loop is innermost, where a table lookup per load would compete with the vector loads).
pub(super) trait Taps: Copy {
    fn offset(&self, t: usize) -> usize;
}

/// Stride 1: tap `(ki, kj)` at `ki * wp + kj` of one padded plane `wp` wide.
#[derive(Clone, Copy)]
pub(super) struct Stride1 {
    pub wp: usize,
}

impl Taps for Stride1 {
    #[inline(always)]
    fn offset(&self, t: usize) -> usize {
        (t / KS) * self.wp + t % KS
    }
}

/// The nine taps of a stride-1 3x3 kernel over a plane `wp` wide: tap `(ki, kj)` at `ki * wp + kj`.
pub(super) fn stride1_taps(wp: usize) -> [usize; TAPS] {
    std::array::from_fn(|t| (t / KS) * wp + t % KS)
}

/// `dst[n * frame + q] = sum_{t, k} b[(t * kk + k) * nn + n] * a[k * ps + offs[t] + q]` for `n < nn`,
/// `q < frame` (a multiple of 16): a product over `offs.len()` taps, each a view of `a` at a constant offset.
#[allow(clippy::too_many_arguments)]
pub(super) fn shifted_gemm(
    a: &[f32],
    ps: usize,
    kk: usize,
    offs: &[usize],
    b: &[f32],
    nn: usize,
    dst: &mut [f32],
    frame: usize,
) {
    assert!(frame.is_multiple_of(LANES) && kk > 0 && nn > 0 && !offs.is_empty());
    let reach = offs.iter().copied().max().unwrap_or(0);
    assert!(a.len() >= (kk - 1) * ps + reach + frame);
    assert!(b.len() >= offs.len() * kk * nn && dst.len() >= nn * frame);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the extents were checked above; `simd()` found the instructions the kernel is compiled for.
    unsafe {
        let (a, b, d) = (a.as_ptr(), b.as_ptr(), dst.as_mut_ptr());
        match simd() {
            Some(Simd::Avx512) => avx512::shifted_gemm(a, ps, kk, offs, b, nn, d, frame),
            Some(Simd::Avx2) => avx2::shifted_gemm(a, ps, kk, offs, b, nn, d, frame),
            None => unreachable!(
                "the shifted-frame kernels run only where `simd()` found AVX2 or AVX-512"
            ),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the shifted-frame convolution runs on x86-64 only");
}

/// `dw[(n * kk + k) * 9 + t] += sum_{q < frame} d[n * frame + q] * a[k * ps + taps.offset(t) + q]` for `n < nn`,
/// `k < kk`.
#[allow(clippy::too_many_arguments)]
pub(super) fn shifted_dot<T: Taps>(
    a: &[f32],
    ps: usize,
    kk: usize,
    taps: T,
    d: &[f32],
    nn: usize,
    frame: usize,
    dw: &mut [f32],
) {
    assert!(frame.is_multiple_of(LANES) && kk > 0 && nn > 0);
    let reach = (0..TAPS).map(|t| taps.offset(t)).max().unwrap_or(0);
    assert!(a.len() >= (kk - 1) * ps + reach + frame);
    assert!(d.len() >= nn * frame && dw.len() >= nn * kk * TAPS);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the extents were checked above; `simd()` found the instructions the kernel is compiled for.
    unsafe {
        let (a, d, dw) = (a.as_ptr(), d.as_ptr(), dw.as_mut_ptr());
        match simd() {
            Some(Simd::Avx512) => avx512::shifted_dot(a, ps, kk, taps, d, nn, frame, dw),
            Some(Simd::Avx2) => avx2::shifted_dot(a, ps, kk, taps, d, nn, frame, dw),
            None => unreachable!(
                "the shifted-frame kernels run only where `simd()` found AVX2 or AVX-512"
            ),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the shifted-frame convolution runs on x86-64 only");
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Placement, Taps, LANES, TAPS};
    use std::arch::x86_64::*;

    /// Lanes `0..n` (n < 16) of a vector.
    fn tail_mask(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    /// `len` zeros from `dst`.
    #[target_feature(enable = "avx512f")]
    unsafe fn zero(dst: *mut f32, len: usize) {
        let z = _mm512_setzero_ps();
        let mut x = 0;
        while x + LANES <= len {
            _mm512_storeu_ps(dst.add(x), z);
            x += LANES;
        }
        if x < len {
            _mm512_mask_storeu_ps(dst.add(x), tail_mask(len - x), z);
        }
    }

    /// `len` floats from `src` to `dst`, through `max(., 0)` when `RELU`.
    #[target_feature(enable = "avx512f")]
    unsafe fn copy<const RELU: bool>(src: *const f32, dst: *mut f32, len: usize) {
        let z = _mm512_setzero_ps();
        let f = |v: __m512| if RELU { _mm512_max_ps(v, z) } else { v };
        let mut x = 0;
        while x + LANES <= len {
            _mm512_storeu_ps(dst.add(x), f(_mm512_loadu_ps(src.add(x))));
            x += LANES;
        }
        if x < len {
            let m = tail_mask(len - x);
            _mm512_mask_storeu_ps(dst.add(x), m, f(_mm512_maskz_loadu_ps(m, src.add(x))));
        }
    }

    /// One channel of [`super::place_planes`] (`src`: image 0's plane, the next images' `src_img` floats apart):
    /// vector stores instead of a `memset` / `memmove` call per 8-64 float row (the calls cost more than the copies).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn place_plane(
        src: *const f32,
        src_img: usize,
        p: &Placement,
        dst: *mut f32,
        relu: bool,
    ) {
        super::place_runs(
            p,
            src_img,
            |at, len| zero(dst.add(at), len),
            |to, from, len| {
                if relu {
                    copy::<true>(src.add(from), dst.add(to), len);
                } else {
                    copy::<false>(src.add(from), dst.add(to), len);
                }
            },
        );
    }

    /// Pixel vectors per forward tile.
    const R: usize = 3;
    /// Output channels per forward tile (R x NB accumulators + R inputs + 1 weight <= 32 registers). 8 divides
    /// every width of the zoo; measured against 4 x 6: default +1-4% in 3 alternating pairs, nf_resnet26 within noise.
    const NB: usize = 8;
    /// Output channels per weight-gradient tile: NB_DOT x 9 accumulators + NB_DOT output gradients + 1 input. At 3
    /// (31 registers) the compiler spilled accumulators to the stack and the pass ran ~2x slower per multiply-add.
    const NB_DOT: usize = 2;

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn shifted_gemm(
        a: *const f32,
        ps: usize,
        kk: usize,
        offs: &[usize],
        b: *const f32,
        nn: usize,
        dst: *mut f32,
        frame: usize,
    ) {
        let vectors = frame / LANES;
        let mut q = 0;
        // Full tiles of R vectors, then one tile of the remaining 1-3.
        while q + R * LANES <= frame {
            row_of_tiles::<R>(a.add(q), ps, kk, offs, b, nn, dst.add(q), frame);
            q += R * LANES;
        }
        match vectors % R {
            0 => {}
            1 => row_of_tiles::<1>(a.add(q), ps, kk, offs, b, nn, dst.add(q), frame),
            _ => row_of_tiles::<2>(a.add(q), ps, kk, offs, b, nn, dst.add(q), frame),
        }
    }

    /// All output channels of one pixel tile, NB at a time (the tile's inputs stay in L1 across the channel blocks).
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn row_of_tiles<const RR: usize>(
        a: *const f32,
        ps: usize,
        kk: usize,
        offs: &[usize],
        b: *const f32,
        nn: usize,
        dst: *mut f32,
        frame: usize,
    ) {
        let mut n0 = 0;
        while n0 + NB <= nn {
            gemm_tile::<RR, NB>(a, ps, kk, offs, b.add(n0), nn, dst.add(n0 * frame), frame);
            n0 += NB;
        }
        let (b, dst) = (b.add(n0), dst.add(n0 * frame));
        match nn - n0 {
            0 => {}
            1 => gemm_tile::<RR, 1>(a, ps, kk, offs, b, nn, dst, frame),
            2 => gemm_tile::<RR, 2>(a, ps, kk, offs, b, nn, dst, frame),
            3 => gemm_tile::<RR, 3>(a, ps, kk, offs, b, nn, dst, frame),
            4 => gemm_tile::<RR, 4>(a, ps, kk, offs, b, nn, dst, frame),
            5 => gemm_tile::<RR, 5>(a, ps, kk, offs, b, nn, dst, frame),
            6 => gemm_tile::<RR, 6>(a, ps, kk, offs, b, nn, dst, frame),
            _ => gemm_tile::<RR, 7>(a, ps, kk, offs, b, nn, dst, frame),
        }
    }

    /// `RR` pixel vectors x `N` output channels: `dst[n * frame + p] = sum_{t, k} b[(t * kk + k) * nn + n] *
    /// a[k * ps + offs[t] + p]`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)] // indices into two register arrays at once
    unsafe fn gemm_tile<const RR: usize, const N: usize>(
        a: *const f32,
        ps: usize,
        kk: usize,
        offs: &[usize],
        b: *const f32,
        nn: usize,
        dst: *mut f32,
        frame: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); N]; RR];
        for (t, &off) in offs.iter().enumerate() {
            let at = a.add(off);
            let bt = b.add(t * kk * nn);
            for k in 0..kk {
                let ap = at.add(k * ps);
                let bp = bt.add(k * nn);
                let mut x = [_mm512_setzero_ps(); RR];
                for (r, xr) in x.iter_mut().enumerate() {
                    *xr = _mm512_loadu_ps(ap.add(r * LANES));
                }
                for n in 0..N {
                    let w = _mm512_set1_ps(*bp.add(n));
                    for r in 0..RR {
                        acc[r][n] = _mm512_fmadd_ps(x[r], w, acc[r][n]);
                    }
                }
            }
        }
        for (r, accr) in acc.iter().enumerate() {
            for (n, v) in accr.iter().enumerate() {
                _mm512_storeu_ps(dst.add(n * frame + r * LANES), *v);
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn shifted_dot<T: Taps>(
        a: *const f32,
        ps: usize,
        kk: usize,
        taps: T,
        d: *const f32,
        nn: usize,
        frame: usize,
        dw: *mut f32,
    ) {
        let ks = kk * TAPS;
        let mut n0 = 0;
        while n0 < nn {
            let nb = NB_DOT.min(nn - n0);
            for k in 0..kk {
                let (ak, dn, out) = (a.add(k * ps), d.add(n0 * frame), dw.add(n0 * ks + k * TAPS));
                match nb {
                    2 => dot_tile::<2, T>(ak, taps, dn, frame, out, ks),
                    _ => dot_tile::<1, T>(ak, taps, dn, frame, out, ks),
                }
            }
            n0 += nb;
        }
    }

    /// `N` output channels x 9 taps of one input channel over the frame:
    /// `dw[n * ks + t] += sum_q d[n * frame + q] * a[shift(t) + q]`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn dot_tile<const N: usize, T: Taps>(
        a: *const f32,
        taps: T,
        d: *const f32,
        frame: usize,
        dw: *mut f32,
        ks: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); TAPS]; N];
        dot_frame::<N, T>(a, taps, d, frame, &mut acc);
        for (n, accn) in acc.iter().enumerate() {
            for (t, v) in accn.iter().enumerate() {
                *dw.add(n * ks + t) += _mm512_reduce_add_ps(*v);
            }
        }
    }

    /// The frame loop of [`dot_tile`], the accumulators in registers throughout. A separate function with one flat
    /// loop: with a loop over images around it in one body, the register allocator kept only 16 of the 18
    /// accumulators in registers and shuffled the rest through the stack every iteration.
    #[target_feature(enable = "avx512f")]
    #[inline(never)]
    #[allow(clippy::needless_range_loop)] // indices into two register arrays at once
    unsafe fn dot_frame<const N: usize, T: Taps>(
        a: *const f32,
        taps: T,
        d: *const f32,
        frame: usize,
        acc_mem: &mut [[__m512; TAPS]; N],
    ) {
        let mut acc = *acc_mem;
        let mut q = 0;
        while q < frame {
            let mut dv = [_mm512_setzero_ps(); N];
            for (n, v) in dv.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(d.add(n * frame + q));
            }
            let aq = a.add(q);
            for t in 0..TAPS {
                let x = _mm512_loadu_ps(aq.add(taps.offset(t)));
                for n in 0..N {
                    acc[n][t] = _mm512_fmadd_ps(dv[n], x, acc[n][t]);
                }
            }
            q += LANES;
        }
        *acc_mem = acc;
    }
}

/// The same kernels for CPUs with AVX2 + FMA but not AVX-512 (most laptops): 8-lane registers and half the
/// register file, so smaller tiles (2 x 8 pixels x 6 channels forward, 1 channel x 9 taps x 8 pixels for the weight
/// gradient). Frames stay multiples of 16 floats, so every loop runs over whole registers.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Placement, Taps, TAPS};
    use std::arch::x86_64::*;

    const W: usize = 8;
    /// Pixel registers per forward tile and output channels per tile: 2 x 6 accumulators + 2 inputs + 1 weight
    /// of the 16 registers.
    const R: usize = 2;
    const NB: usize = 6;

    /// Lanes `0..n` (n < 8) as a mask for `maskload` / `maskstore`.
    #[target_feature(enable = "avx2,fma")]
    fn tail_mask(n: usize) -> __m256i {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn zero(dst: *mut f32, len: usize) {
        let z = _mm256_setzero_ps();
        let mut x = 0;
        while x + W <= len {
            _mm256_storeu_ps(dst.add(x), z);
            x += W;
        }
        if x < len {
            _mm256_maskstore_ps(dst.add(x), tail_mask(len - x), z);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn copy<const RELU: bool>(src: *const f32, dst: *mut f32, len: usize) {
        let z = _mm256_setzero_ps();
        let f = |v: __m256| if RELU { _mm256_max_ps(v, z) } else { v };
        let mut x = 0;
        while x + W <= len {
            _mm256_storeu_ps(dst.add(x), f(_mm256_loadu_ps(src.add(x))));
            x += W;
        }
        if x < len {
            let m = tail_mask(len - x);
            _mm256_maskstore_ps(dst.add(x), m, f(_mm256_maskload_ps(src.add(x), m)));
        }
    }

    /// As `avx512::place_plane`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn place_plane(
        src: *const f32,
        src_img: usize,
        p: &Placement,
        dst: *mut f32,
        relu: bool,
    ) {
        super::place_runs(
            p,
            src_img,
            |at, len| zero(dst.add(at), len),
            |to, from, len| {
                if relu {
                    copy::<true>(src.add(from), dst.add(to), len);
                } else {
                    copy::<false>(src.add(from), dst.add(to), len);
                }
            },
        );
    }

    /// As `avx512::shifted_gemm` (`frame` a multiple of 16, so of `R * W`).
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn shifted_gemm(
        a: *const f32,
        ps: usize,
        kk: usize,
        offs: &[usize],
        b: *const f32,
        nn: usize,
        dst: *mut f32,
        frame: usize,
    ) {
        let mut q = 0;
        while q + R * W <= frame {
            let (a, dst) = (a.add(q), dst.add(q));
            let mut n0 = 0;
            while n0 + NB <= nn {
                gemm_tile::<NB>(a, ps, kk, offs, b.add(n0), nn, dst.add(n0 * frame), frame);
                n0 += NB;
            }
            let (b, dst) = (b.add(n0), dst.add(n0 * frame));
            match nn - n0 {
                0 => {}
                1 => gemm_tile::<1>(a, ps, kk, offs, b, nn, dst, frame),
                2 => gemm_tile::<2>(a, ps, kk, offs, b, nn, dst, frame),
                3 => gemm_tile::<3>(a, ps, kk, offs, b, nn, dst, frame),
                4 => gemm_tile::<4>(a, ps, kk, offs, b, nn, dst, frame),
                _ => gemm_tile::<5>(a, ps, kk, offs, b, nn, dst, frame),
            }
            q += R * W;
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)] // indices into two register arrays at once
    unsafe fn gemm_tile<const N: usize>(
        a: *const f32,
        ps: usize,
        kk: usize,
        offs: &[usize],
        b: *const f32,
        nn: usize,
        dst: *mut f32,
        frame: usize,
    ) {
        let mut acc = [[_mm256_setzero_ps(); N]; R];
        for (t, &off) in offs.iter().enumerate() {
            let at = a.add(off);
            let bt = b.add(t * kk * nn);
            for k in 0..kk {
                let ap = at.add(k * ps);
                let bp = bt.add(k * nn);
                let x = [_mm256_loadu_ps(ap), _mm256_loadu_ps(ap.add(W))];
                for n in 0..N {
                    let w = _mm256_broadcast_ss(&*bp.add(n));
                    for r in 0..R {
                        acc[r][n] = _mm256_fmadd_ps(x[r], w, acc[r][n]);
                    }
                }
            }
        }
        for (r, accr) in acc.iter().enumerate() {
            for (n, v) in accr.iter().enumerate() {
                _mm256_storeu_ps(dst.add(n * frame + r * W), *v);
            }
        }
    }

    /// As `avx512::shifted_dot`, one output channel at a time.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn shifted_dot<T: Taps>(
        a: *const f32,
        ps: usize,
        kk: usize,
        taps: T,
        d: *const f32,
        nn: usize,
        frame: usize,
        dw: *mut f32,
    ) {
        for n in 0..nn {
            for k in 0..kk {
                let out = dw.add((n * kk + k) * TAPS);
                dot_frame(a.add(k * ps), taps, d.add(n * frame), frame, out);
            }
        }
    }

    /// `out[t] += sum_q d[q] * a[taps.offset(t) + q]` for the nine taps, nine accumulators in registers.
    #[target_feature(enable = "avx2,fma")]
    #[inline(never)]
    unsafe fn dot_frame<T: Taps>(
        a: *const f32,
        taps: T,
        d: *const f32,
        frame: usize,
        out: *mut f32,
    ) {
        let mut acc = [_mm256_setzero_ps(); TAPS];
        let mut q = 0;
        while q < frame {
            let dv = _mm256_loadu_ps(d.add(q));
            let aq = a.add(q);
            for (t, acc_t) in acc.iter_mut().enumerate() {
                *acc_t = _mm256_fmadd_ps(dv, _mm256_loadu_ps(aq.add(taps.offset(t))), *acc_t);
            }
            q += W;
        }
        for (t, v) in acc.iter().enumerate() {
            let s = _mm_add_ps(_mm256_castps256_ps128(*v), _mm256_extractf128_ps::<1>(*v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
            *out.add(t) += _mm_cvtss_f32(s);
        }
    }
}
