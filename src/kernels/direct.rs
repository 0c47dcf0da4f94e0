//! Stride-1 3x3 convolutions without an im2col buffer ("shifted frames"), on CPUs with AVX-512.
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
//! gemm's packing of the copied buffer. What it costs: the garbage columns, `(wp - wo) / wo` extra multiply-adds
//! (6% at 32 px, 25% at 8 px). The micro-kernels keep 4 x 16 pixels x 6 output channels (forward) or 3 output
//! channels x 9 taps x 16 pixels (weight gradient) in the 32 vector registers.

use super::conv::ConvGeom;
use super::scratch::with_scratch;
use rayon::prelude::*;

/// Kernel side and taps: this path is for 3x3 kernels only (the bulk of every ResNet's multiply-adds).
const KS: usize = 3;
const TAPS: usize = KS * KS;
/// f32 lanes of one AVX-512 register.
const LANES: usize = 16;

/// True when `geo` can run here: a 3x3 stride-1 convolution with at most 2 pixels of padding per side, and a CPU
/// with AVX-512F.
pub(crate) fn applies(geo: &ConvGeom) -> bool {
    let p = geo.pad;
    geo.kh == KS
        && geo.kw == KS
        && geo.stride == 1
        && p.top < KS
        && p.bottom < KS
        && p.left < KS
        && p.right < KS
        && geo.b > 0
        && avx512_available()
}

#[cfg(target_arch = "x86_64")]
fn avx512_available() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| std::is_x86_feature_detected!("avx512f") && !forced_off())
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_available() -> bool {
    false
}

/// `NFBENCH_CONV_DIRECT=0` turns this path off (for A/B measurements against im2col + gemm).
#[cfg(target_arch = "x86_64")]
fn forced_off() -> bool {
    std::env::var("NFBENCH_CONV_DIRECT").is_ok_and(|v| v == "0")
}

fn round_up(n: usize, m: usize) -> usize {
    n.div_ceil(m) * m
}

/// Floats read past the last padded plane by the shifted views: the largest shift plus a frame rounded up to whole
/// vectors.
fn slack(wp: usize, frame: usize) -> usize {
    (KS - 1) * wp + KS + round_up(frame, LANES)
}

/// A plane placed in a larger zero-bordered buffer: `h x w` values at row `top`, column `left` of a plane `wp` wide,
/// planes `stride` floats apart (everything around the values zero).
#[derive(Clone, Copy)]
struct Placement {
    h: usize,
    w: usize,
    top: usize,
    left: usize,
    wp: usize,
    stride: usize,
}

/// Copies `n` contiguous `h x w` planes from `src` into `dst` as laid out by `p`, zeros everywhere else (the borders,
/// each plane's tail and whatever of `dst` follows the last plane).
fn place_planes(src: &[f32], n: usize, p: &Placement, dst: &mut [f32]) {
    assert!(src.len() >= n * p.h * p.w && dst.len() >= n * p.stride);
    assert!(p.left + p.w <= p.wp && (p.top + p.h) * p.wp <= p.stride);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: every row written lies inside its plane (checked above), every plane inside `dst`; the callers run
    // only where `applies` found AVX-512F.
    unsafe {
        for i in 0..n {
            avx512::place_plane(src.as_ptr().add(i * p.h * p.w), p, dst.as_mut_ptr().add(i * p.stride));
        }
    }
    dst[n * p.stride..].fill(0.0);
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

/// Copies the valid `rows x cols` of `n` frames (`frame` floats apart, rows `wf` apart) into contiguous planes of
/// `dst`, channel `c0 + i` getting bias `bias[c0 + i]` and the relu when asked.
fn compact(
    frames: &[f32],
    frame: usize,
    wf: usize,
    n: usize,
    (rows, cols): (usize, usize),
    dst: &mut [f32],
    c0: usize,
    ep: Epilogue<'_>,
) {
    let plane = rows * cols;
    for i in 0..n {
        let src = &frames[i * frame..];
        let out = &mut dst[i * plane..][..plane];
        let b = ep.bias.map_or(0.0, |b| b[c0 + i]);
        for y in 0..rows {
            let s = &src[y * wf..][..cols];
            let d = &mut out[y * cols..][..cols];
            match (ep.bias.is_some(), ep.relu) {
                (false, false) => d.copy_from_slice(s),
                (_, false) => d.iter_mut().zip(s).for_each(|(d, s)| *d = s + b),
                (_, true) => d.iter_mut().zip(s).for_each(|(d, s)| *d = (s + b).max(0.0)),
            }
        }
    }
}

/// Forward pass `out[B, O, Ho, Wo]` (`applies(geo)` must hold), with the epilogue applied.
pub(crate) fn forward(x: &[f32], w: &[f32], geo: &ConvGeom, ep: Epilogue<'_>) -> Vec<f32> {
    let (cg, og) = (geo.c / geo.groups, geo.o / geo.groups);
    let (hp, wp) = (geo.h + geo.pad.top + geo.pad.bottom, geo.w + geo.pad.left + geo.pad.right);
    let place = Placement {
        h: geo.h,
        w: geo.w,
        top: geo.pad.top,
        left: geo.pad.left,
        wp,
        stride: hp * wp,
    };
    let frame = round_up(geo.ho * wp, LANES);
    let packed = pack_forward(w, geo);
    let chw = geo.c * geo.h * geo.w;
    let out_img = geo.o * geo.ho * geo.wo;
    let mut out = vec![0.0f32; geo.b * out_img];
    let xp_len = geo.c * place.stride + slack(wp, frame);
    out.par_chunks_mut(out_img)
        .with_min_len(tasks_min_len(geo.b))
        .enumerate()
        .for_each(|(i, ob)| {
            with_scratch(xp_len, og * frame, |xp, fr| {
                place_planes(&x[i * chw..][..chw], geo.c, &place, xp);
                for g in 0..geo.groups {
                    shifted_gemm(
                        &xp[g * cg * place.stride..],
                        place.stride,
                        cg,
                        wp,
                        &packed[g * TAPS * cg * og..][..TAPS * cg * og],
                        og,
                        fr,
                        frame,
                    );
                    let plane = geo.ho * geo.wo;
                    compact(
                        fr,
                        frame,
                        wp,
                        og,
                        (geo.ho, geo.wo),
                        &mut ob[g * og * plane..][..og * plane],
                        g * og,
                        ep,
                    );
                }
            });
        });
    out
}

/// Input gradient `dx[B, C, H, W]` (`applies(geo)` must hold).
pub(crate) fn input_grad(dy: &[f32], w: &[f32], geo: &ConvGeom) -> Vec<f32> {
    let (cg, og) = (geo.c / geo.groups, geo.o / geo.groups);
    // The adjoint reads the output gradient padded so that every input pixel sees all nine taps: `2 - pad` on each
    // side, which makes the padded plane `(H + 2) x (W + 2)`.
    let place = Placement {
        h: geo.ho,
        w: geo.wo,
        top: KS - 1 - geo.pad.top,
        left: KS - 1 - geo.pad.left,
        wp: geo.w + KS - 1,
        stride: (geo.h + KS - 1) * (geo.w + KS - 1),
    };
    let wq = place.wp;
    let frame = round_up(geo.h * wq, LANES);
    let packed = pack_input_grad(w, geo);
    let chw = geo.c * geo.h * geo.w;
    let ohw = geo.o * geo.ho * geo.wo;
    let mut dx = vec![0.0f32; geo.b * chw];
    let dyp_len = geo.o * place.stride + slack(wq, frame);
    dx.par_chunks_mut(chw)
        .with_min_len(tasks_min_len(geo.b))
        .enumerate()
        .for_each(|(i, dxb)| {
            with_scratch(dyp_len, cg * frame, |dyp, fr| {
                place_planes(&dy[i * ohw..][..ohw], geo.o, &place, dyp);
                for g in 0..geo.groups {
                    shifted_gemm(
                        &dyp[g * og * place.stride..],
                        place.stride,
                        og,
                        wq,
                        &packed[g * TAPS * og * cg..][..TAPS * og * cg],
                        cg,
                        fr,
                        frame,
                    );
                    let plane = geo.h * geo.w;
                    compact(
                        fr,
                        frame,
                        wq,
                        cg,
                        (geo.h, geo.w),
                        &mut dxb[g * cg * plane..][..cg * plane],
                        g * cg,
                        Epilogue::NONE,
                    );
                }
            });
        });
    dx
}

/// Weight gradient `dw[O, C/groups, 3, 3]` (`applies(geo)` must hold).
pub(crate) fn weight_grad(x: &[f32], dy: &[f32], geo: &ConvGeom) -> Vec<f32> {
    let (cg, og) = (geo.c / geo.groups, geo.o / geo.groups);
    let (hp, wp) = (geo.h + geo.pad.top + geo.pad.bottom, geo.w + geo.pad.left + geo.pad.right);
    let place_x = Placement {
        h: geo.h,
        w: geo.w,
        top: geo.pad.top,
        left: geo.pad.left,
        wp,
        stride: hp * wp,
    };
    let frame = round_up(geo.ho * wp, LANES);
    // The output gradient in the forward pass's frame layout, garbage columns zero so they add nothing.
    let place_dy = Placement {
        h: geo.ho,
        w: geo.wo,
        top: 0,
        left: 0,
        wp,
        stride: frame,
    };
    let chw = geo.c * geo.h * geo.w;
    let ohw = geo.o * geo.ho * geo.wo;
    let (x_img, dy_img) = (geo.c * place_x.stride, geo.o * frame);
    let nb = images_per_dot_task(frame, x_img + dy_img, geo.b);
    let n_tasks = geo.b.div_ceil(nb);
    let dw_len = geo.o * cg * TAPS;
    (0..n_tasks)
        .into_par_iter()
        .with_min_len(tasks_min_len(n_tasks))
        .fold(
            || vec![0.0f32; dw_len],
            |mut acc, t| {
                let b0 = t * nb;
                let n = nb.min(geo.b - b0);
                let xp_len = n * x_img + slack(wp, frame);
                with_scratch(xp_len, n * dy_img, |xp, dyf| {
                    place_planes(&x[b0 * chw..][..n * chw], n * geo.c, &place_x, xp);
                    place_planes(&dy[b0 * ohw..][..n * ohw], n * geo.o, &place_dy, dyf);
                    for g in 0..geo.groups {
                        shifted_dot(
                            &xp[g * cg * place_x.stride..],
                            x_img,
                            place_x.stride,
                            cg,
                            wp,
                            &dyf[g * og * frame..],
                            dy_img,
                            og,
                            n,
                            frame,
                            &mut acc[g * og * cg * TAPS..][..og * cg * TAPS],
                        );
                    }
                });
                acc
            },
        )
        .reduce(
            || vec![0.0f32; dw_len],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        )
}

/// Images per weight-gradient task: enough frame positions (>= 512) that the per-task horizontal sums of the
/// accumulators are small next to the multiply-adds, few enough that the task's buffers stay in L2 (~512 KiB).
fn images_per_dot_task(frame: usize, floats_per_image: usize, b: usize) -> usize {
    let for_sums = 512usize.div_ceil(frame.max(1));
    let for_cache = ((512 << 10) / 4 / floats_per_image.max(1)).max(1);
    for_sums.min(for_cache).clamp(1, b.max(1))
}

/// Minimum items per rayon task: a few tasks per thread.
fn tasks_min_len(n: usize) -> usize {
    n.div_ceil(4 * rayon::current_num_threads()).max(1)
}

/// Forward kernel packed per group as `[tap][k][n]` (`n` fastest: the micro-kernel broadcasts consecutive `n`).
fn pack_forward(w: &[f32], geo: &ConvGeom) -> Vec<f32> {
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

/// `dst[n * frame + q] = sum_{t, k} b[(t * kk + k) * nn + n] * a[k * ps + shift(t) + q]` for `n < nn`,
/// `q < frame` (a multiple of 16), with `shift(t) = (t / 3) * wp + t % 3`.
#[allow(clippy::too_many_arguments)]
fn shifted_gemm(
    a: &[f32],
    ps: usize,
    kk: usize,
    wp: usize,
    b: &[f32],
    nn: usize,
    dst: &mut [f32],
    frame: usize,
) {
    assert!(frame % LANES == 0 && kk > 0 && nn > 0);
    assert!(a.len() >= (kk - 1) * ps + (KS - 1) * wp + KS - 1 + frame);
    assert!(b.len() >= TAPS * kk * nn && dst.len() >= nn * frame);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the extents were checked above; `applies` (every caller's precondition) checked for AVX-512F.
    unsafe {
        avx512::shifted_gemm(a.as_ptr(), ps, kk, wp, b.as_ptr(), nn, dst.as_mut_ptr(), frame);
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the shifted-frame convolution runs on x86-64 only");
}

/// `dw[(n * kk + k) * 9 + t] += sum_{i < nimg, q < frame} d[i * di + n * frame + q] * a[i * ai + k * ps + shift(t) + q]`
/// for `n < nn`, `k < kk`.
#[allow(clippy::too_many_arguments)]
fn shifted_dot(
    a: &[f32],
    ai: usize,
    ps: usize,
    kk: usize,
    wp: usize,
    d: &[f32],
    di: usize,
    nn: usize,
    nimg: usize,
    frame: usize,
    dw: &mut [f32],
) {
    assert!(frame % LANES == 0 && kk > 0 && nn > 0 && nimg > 0);
    assert!(a.len() >= (nimg - 1) * ai + (kk - 1) * ps + (KS - 1) * wp + KS - 1 + frame);
    assert!(d.len() >= (nimg - 1) * di + nn * frame && dw.len() >= nn * kk * TAPS);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the extents were checked above; `applies` (every caller's precondition) checked for AVX-512F.
    unsafe {
        avx512::shifted_dot(
            a.as_ptr(),
            ai,
            ps,
            kk,
            wp,
            d.as_ptr(),
            di,
            nn,
            nimg,
            frame,
            dw.as_mut_ptr(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the shifted-frame convolution runs on x86-64 only");
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Placement, KS, LANES, TAPS};
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

    /// `len` floats from `src` to `dst`.
    #[target_feature(enable = "avx512f")]
    unsafe fn copy(src: *const f32, dst: *mut f32, len: usize) {
        let mut x = 0;
        while x + LANES <= len {
            _mm512_storeu_ps(dst.add(x), _mm512_loadu_ps(src.add(x)));
            x += LANES;
        }
        if x < len {
            let m = tail_mask(len - x);
            _mm512_mask_storeu_ps(dst.add(x), m, _mm512_maskz_loadu_ps(m, src.add(x)));
        }
    }

    /// One plane of [`super::place_planes`]: vector stores instead of a `memset` / `memmove` call per 8-64 float
    /// row (the calls cost more than the copies).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn place_plane(src: *const f32, p: &Placement, dst: *mut f32) {
        zero(dst, p.stride);
        for y in 0..p.h {
            copy(src.add(y * p.w), dst.add((p.top + y) * p.wp + p.left), p.w);
        }
    }

    /// Pixel vectors per forward tile.
    const R: usize = 4;
    /// Output channels per forward tile (R x NB accumulators + R inputs + 1 weight <= 32 registers).
    const NB: usize = 6;
    /// Output channels per weight-gradient tile: NB_DOT x 9 accumulators + NB_DOT output gradients + 1 input. At 3
    /// (31 registers) the compiler spilled accumulators to the stack and the pass ran ~2x slower per multiply-add.
    const NB_DOT: usize = 2;

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn shifted_gemm(
        a: *const f32,
        ps: usize,
        kk: usize,
        wp: usize,
        b: *const f32,
        nn: usize,
        dst: *mut f32,
        frame: usize,
    ) {
        let vectors = frame / LANES;
        let mut q = 0;
        // Full tiles of R vectors, then one tile of the remaining 1-3.
        while q + R * LANES <= frame {
            row_of_tiles::<R>(a.add(q), ps, kk, wp, b, nn, dst.add(q), frame);
            q += R * LANES;
        }
        match vectors % R {
            0 => {}
            1 => row_of_tiles::<1>(a.add(q), ps, kk, wp, b, nn, dst.add(q), frame),
            2 => row_of_tiles::<2>(a.add(q), ps, kk, wp, b, nn, dst.add(q), frame),
            _ => row_of_tiles::<3>(a.add(q), ps, kk, wp, b, nn, dst.add(q), frame),
        }
    }

    /// All output channels of one pixel tile, NB at a time (the tile's inputs stay in L1 across the channel blocks).
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn row_of_tiles<const RR: usize>(
        a: *const f32,
        ps: usize,
        kk: usize,
        wp: usize,
        b: *const f32,
        nn: usize,
        dst: *mut f32,
        frame: usize,
    ) {
        let mut n0 = 0;
        while n0 + NB <= nn {
            gemm_tile::<RR, NB>(a, ps, kk, wp, b.add(n0), nn, dst.add(n0 * frame), frame);
            n0 += NB;
        }
        let (b, dst) = (b.add(n0), dst.add(n0 * frame));
        match nn - n0 {
            0 => {}
            1 => gemm_tile::<RR, 1>(a, ps, kk, wp, b, nn, dst, frame),
            2 => gemm_tile::<RR, 2>(a, ps, kk, wp, b, nn, dst, frame),
            3 => gemm_tile::<RR, 3>(a, ps, kk, wp, b, nn, dst, frame),
            4 => gemm_tile::<RR, 4>(a, ps, kk, wp, b, nn, dst, frame),
            _ => gemm_tile::<RR, 5>(a, ps, kk, wp, b, nn, dst, frame),
        }
    }

    /// `RR` pixel vectors x `N` output channels: `dst[n * frame + p] = sum_{t, k} b[(t * kk + k) * nn + n] *
    /// a[k * ps + shift(t) + p]`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_tile<const RR: usize, const N: usize>(
        a: *const f32,
        ps: usize,
        kk: usize,
        wp: usize,
        b: *const f32,
        nn: usize,
        dst: *mut f32,
        frame: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); N]; RR];
        for t in 0..TAPS {
            let at = a.add((t / KS) * wp + t % KS);
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
    pub(super) unsafe fn shifted_dot(
        a: *const f32,
        ai: usize,
        ps: usize,
        kk: usize,
        wp: usize,
        d: *const f32,
        di: usize,
        nn: usize,
        nimg: usize,
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
                    2 => dot_tile::<2>(ak, ai, wp, dn, di, nimg, frame, out, ks),
                    _ => dot_tile::<1>(ak, ai, wp, dn, di, nimg, frame, out, ks),
                }
            }
            n0 += nb;
        }
    }

    /// `N` output channels x 9 taps of one input channel, summed over `nimg` images' frames:
    /// `dw[n * ks + t] += sum_{i, q} d[i * di + n * frame + q] * a[i * ai + shift(t) + q]`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn dot_tile<const N: usize>(
        a: *const f32,
        ai: usize,
        wp: usize,
        d: *const f32,
        di: usize,
        nimg: usize,
        frame: usize,
        dw: *mut f32,
        ks: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); TAPS]; N];
        for i in 0..nimg {
            dot_frame::<N>(a.add(i * ai), wp, d.add(i * di), frame, &mut acc);
        }
        for (n, accn) in acc.iter().enumerate() {
            for (t, v) in accn.iter().enumerate() {
                *dw.add(n * ks + t) += _mm512_reduce_add_ps(*v);
            }
        }
    }

    /// One image's frame of [`dot_tile`], the accumulators in registers for the whole loop. A separate function with
    /// one flat loop: with the image loop around it in one body, the register allocator kept only 16 of the 18
    /// accumulators in registers and shuffled the rest through the stack every iteration.
    #[target_feature(enable = "avx512f")]
    #[inline(never)]
    unsafe fn dot_frame<const N: usize>(
        a: *const f32,
        wp: usize,
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
                let x = _mm512_loadu_ps(aq.add((t / KS) * wp + t % KS));
                for n in 0..N {
                    acc[n][t] = _mm512_fmadd_ps(dv[n], x, acc[n][t]);
                }
            }
            q += LANES;
        }
        *acc_mem = acc;
    }
}
