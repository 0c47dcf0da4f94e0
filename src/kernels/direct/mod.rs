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
//!
//! Files: this one decides where the path applies, picks the instruction set ([`simd`]) and runs the three passes;
//! `layout.rs` places images in the padded planes and copies outputs out of the frame; `isa.rs` is the interface
//! over AVX-512 and AVX2 that `microkernels.rs` writes the kernels against once.

#[cfg(target_arch = "x86_64")]
mod isa;
mod layout;
#[cfg(target_arch = "x86_64")]
mod microkernels;

use self::layout::RowLayout;
pub(super) use self::layout::{compact, round_up, Epilogue, FrameShape, Fusion, Placement};
use super::geometry::{ConvGeom, Padding};
use super::par_fill;
use super::reduce::sum_partials;
use super::scratch::with_scratch;

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
    supports_stride(geo, 1)
}

/// True when the shifted-frame kernels can run `geo`, a 3x3 convolution of stride `stride` (1 here, 2 on phase planes
/// in `strided.rs`) with at most 2 pixels of padding per side (a tap reaches at most that far past an edge), on a
/// CPU with AVX-512 or AVX2 + FMA.
pub(super) fn supports_stride(geo: &ConvGeom, stride: usize) -> bool {
    geo.kh == KS
        && geo.kw == KS
        && geo.stride == stride
        && geo.pad.max_side() < KS
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
fn simd_available() -> bool {
    simd().is_some()
}

/// Calls the micro-kernel entry `$f` (`microkernels.rs`) compiled for the instruction set [`simd`] picked. Unsafe:
/// the caller checks the extents `$f` reads and writes.
#[cfg(target_arch = "x86_64")]
macro_rules! on_simd {
    ($f:ident($($arg:expr),*)) => {
        match simd() {
            Some(Simd::Avx512) => microkernels::avx512::$f($($arg),*),
            Some(Simd::Avx2) => microkernels::avx2::$f($($arg),*),
            None => unreachable!("the shifted-frame kernels run only where `simd()` found AVX2 or AVX-512"),
        }
    };
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
            on_simd!(place_plane(s, chans * hw, p, d, relu));
        }
    }
    dst[chans * p.stride..].fill(0.0);
}

/// Forward pass `out[B, O, Ho, Wo]` of `relu(x)` when `fusion.relu_input`, else of `x` (`supports(geo)` must hold), with
/// `fusion.epilogue` applied.
pub(crate) fn forward(x: &[f32], w: &[f32], geo: &ConvGeom, fusion: Fusion<'_>) -> Vec<f32> {
    let (cg, og) = (geo.c / geo.groups, geo.o / geo.groups);
    let packed = pack_forward(w, geo);
    let imgs = images_per_row(geo);
    let (chw, out_img) = (geo.c * geo.h * geo.w, geo.o * geo.ho * geo.wo);
    // Every output value is written by `compact` (each task: all its images, every group's channels, every row),
    // so the buffer is not zero-filled first (a memset of every activation, ~2% of a step).
    // SAFETY: the tasks write all `b * out_img` values (see the comment above).
    unsafe {
        par_fill(geo.b * out_img, imgs * out_img, |at, ob| {
            let t = at / (imgs * out_img);
            let n = ob.len() / out_img;
            let l = RowLayout::new(geo.h, geo.w, geo.pad, n);
            with_scratch(l.buffer_len(geo.c), og * l.frame, |xp, fr| {
                place_planes(
                    &x[t * imgs * chw..][..n * chw],
                    geo.c,
                    &l.input,
                    xp,
                    fusion.relu_input,
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
                    compact(
                        fr,
                        &l.shape(),
                        og,
                        ob,
                        out_img,
                        g * og,
                        fusion.epilogue,
                        None,
                    );
                }
            });
        })
    }
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
    // SAFETY: the tasks write all `b * chw` values.
    unsafe {
        par_fill(geo.b * chw, imgs * chw, |at, dxb| {
            let t = at / (imgs * chw);
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
        })
    }
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
        on_simd!(shifted_gemm(a, ps, kk, offs, b, nn, d, frame));
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
        on_simd!(shifted_dot(a, ps, kk, taps, d, nn, frame, dw));
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the shifted-frame convolution runs on x86-64 only");
}
