//! The shifted-frame micro-kernels, written once over [`Isa`] and compiled per instruction set by [`compiled_for`]:
//! its entry functions carry the target features and everything below them is `#[inline(always)]`, so the
//! intrinsics inline as the wide instructions (as `gelu.rs`'s `with_widest_vectors` does). The weight gradient's
//! frame loop stays a function of its own per instruction set and tile shape, where the register allocator keeps
//! all accumulators in registers.

use super::isa::{Avx2, Avx512, Isa};
use super::layout::{place_runs, Placement};
use super::{Taps, TAPS};

/// `len` zeros from `dst`.
#[inline(always)]
unsafe fn zero<I: Isa>(dst: *mut f32, len: usize) {
    let z = I::zero();
    let mut x = 0;
    while x + I::W <= len {
        I::store(dst.add(x), z);
        x += I::W;
    }
    if x < len {
        I::store_first(dst.add(x), len - x, z);
    }
}

/// `len` floats from `src` to `dst`, through `max(., 0)` when `RELU`.
#[inline(always)]
unsafe fn copy<I: Isa, const RELU: bool>(src: *const f32, dst: *mut f32, len: usize) {
    let f = |v: I::V| if RELU { I::max(v, I::zero()) } else { v };
    let mut x = 0;
    while x + I::W <= len {
        I::store(dst.add(x), f(I::load(src.add(x))));
        x += I::W;
    }
    if x < len {
        I::store_first(dst.add(x), len - x, f(I::load_first(src.add(x), len - x)));
    }
}

/// One channel of [`super::place_planes`] (`src`: image 0's plane, the next images' `src_img` floats apart):
/// vector stores instead of a `memset` / `memmove` call per 8-64 float row (the calls cost more than the copies).
#[inline(always)]
unsafe fn place_plane<I: Isa>(
    src: *const f32,
    src_img: usize,
    p: &Placement,
    dst: *mut f32,
    relu: bool,
) {
    place_runs(
        p,
        src_img,
        |at, len| zero::<I>(dst.add(at), len),
        |to, from, len| {
            if relu {
                copy::<I, true>(src.add(from), dst.add(to), len);
            } else {
                copy::<I, false>(src.add(from), dst.add(to), len);
            }
        },
    );
}

/// All output channels of one pixel tile, `NB` at a time (the tile's inputs stay in L1 across the channel blocks).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn row_of_tiles<I: Isa, const RR: usize>(
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
    while n0 + I::NB <= nn {
        channels::<I, RR>(
            I::NB,
            a,
            ps,
            kk,
            offs,
            b.add(n0),
            nn,
            dst.add(n0 * frame),
            frame,
        );
        n0 += I::NB;
    }
    if n0 < nn {
        let (b, dst) = (b.add(n0), dst.add(n0 * frame));
        channels::<I, RR>(nn - n0, a, ps, kk, offs, b, nn, dst, frame);
    }
}

/// [`gemm_tile`] for `n` (1 to 8) output channels.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn channels<I: Isa, const RR: usize>(
    n: usize,
    a: *const f32,
    ps: usize,
    kk: usize,
    offs: &[usize],
    b: *const f32,
    nn: usize,
    dst: *mut f32,
    frame: usize,
) {
    match n {
        1 => gemm_tile::<I, RR, 1>(a, ps, kk, offs, b, nn, dst, frame),
        2 => gemm_tile::<I, RR, 2>(a, ps, kk, offs, b, nn, dst, frame),
        3 => gemm_tile::<I, RR, 3>(a, ps, kk, offs, b, nn, dst, frame),
        4 => gemm_tile::<I, RR, 4>(a, ps, kk, offs, b, nn, dst, frame),
        5 => gemm_tile::<I, RR, 5>(a, ps, kk, offs, b, nn, dst, frame),
        6 => gemm_tile::<I, RR, 6>(a, ps, kk, offs, b, nn, dst, frame),
        7 => gemm_tile::<I, RR, 7>(a, ps, kk, offs, b, nn, dst, frame),
        8 => gemm_tile::<I, RR, 8>(a, ps, kk, offs, b, nn, dst, frame),
        _ => unreachable!("forward tiles are 1 to 8 channels wide"),
    }
}

/// `RR` pixel registers x `N` output channels: `dst[n * frame + p] = sum_{t, k} b[(t * kk + k) * nn + n] *
/// a[k * ps + offs[t] + p]`.
#[inline(always)]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)] // indices into two register arrays at once
unsafe fn gemm_tile<I: Isa, const RR: usize, const N: usize>(
    a: *const f32,
    ps: usize,
    kk: usize,
    offs: &[usize],
    b: *const f32,
    nn: usize,
    dst: *mut f32,
    frame: usize,
) {
    let mut acc = [[I::zero(); N]; RR];
    for (t, &off) in offs.iter().enumerate() {
        let at = a.add(off);
        let bt = b.add(t * kk * nn);
        for k in 0..kk {
            let ap = at.add(k * ps);
            let bp = bt.add(k * nn);
            let mut x = [I::zero(); RR];
            for (r, xr) in x.iter_mut().enumerate() {
                *xr = I::load(ap.add(r * I::W));
            }
            for n in 0..N {
                let w = I::splat(bp.add(n));
                for r in 0..RR {
                    acc[r][n] = I::fma(x[r], w, acc[r][n]);
                }
            }
        }
    }
    for (r, accr) in acc.iter().enumerate() {
        for (n, v) in accr.iter().enumerate() {
            I::store(dst.add(n * frame + r * I::W), *v);
        }
    }
}

/// The weight gradient's frame loop for `N` output channels x 9 taps, the accumulators in registers throughout. Each
/// instruction set compiles it as a function of its own with one flat loop ([`compiled_for`]): with a loop over images around it in one body, the register allocator kept only
/// 16 of the 18 AVX-512 accumulators in registers and shuffled the rest through the stack every iteration.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // indices into two register arrays at once
unsafe fn dot_frame<I: Isa, const N: usize, T: Taps>(
    a: *const f32,
    taps: T,
    d: *const f32,
    frame: usize,
    acc_mem: &mut [[I::V; TAPS]; N],
) {
    let mut acc = *acc_mem;
    let mut q = 0;
    while q < frame {
        let mut dv = [I::zero(); N];
        for (n, v) in dv.iter_mut().enumerate() {
            *v = I::load(d.add(n * frame + q));
        }
        let aq = a.add(q);
        for t in 0..TAPS {
            let x = I::load(aq.add(taps.offset(t)));
            for n in 0..N {
                acc[n][t] = I::fma(dv[n], x, acc[n][t]);
            }
        }
        q += I::W;
    }
    *acc_mem = acc;
}

/// The entry functions of the micro-kernels for one instruction set, compiled with its target features (the
/// callers check the CPU has them, see [`super::simd`]), and the loops over tiles. Those loops live here, not in a
/// generic function: a `#[inline(never)]` target-feature function called from an inlined generic body was inlined
/// all the same (rustc 1.95), and the weight gradient's frame loop then spilled accumulators to the stack.
macro_rules! compiled_for {
    ($module:ident, $isa:ident, $features:literal) => {
        pub(super) mod $module {
            use super::super::layout::Placement;
            use super::super::{Taps, TAPS};
            use super::{$isa, Isa};

            #[target_feature(enable = $features)]
            pub(in super::super) unsafe fn place_plane(
                src: *const f32,
                src_img: usize,
                p: &Placement,
                dst: *mut f32,
                relu: bool,
            ) {
                super::place_plane::<$isa>(src, src_img, p, dst, relu)
            }

            /// [`super::super::shifted_gemm`]: full tiles of `R` pixel registers, then one of the remaining ones
            /// (`frame` is a multiple of 16 floats, so of `W`).
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            pub(in super::super) unsafe fn shifted_gemm(
                a: *const f32,
                ps: usize,
                kk: usize,
                offs: &[usize],
                b: *const f32,
                nn: usize,
                dst: *mut f32,
                frame: usize,
            ) {
                let (w, r) = (<$isa as Isa>::W, <$isa as Isa>::R);
                let mut q = 0;
                while q < frame {
                    let (a, dst) = (a.add(q), dst.add(q));
                    let rr = r.min((frame - q) / w);
                    match rr {
                        1 => row_of_tiles::<1>(a, ps, kk, offs, b, nn, dst, frame),
                        2 => row_of_tiles::<2>(a, ps, kk, offs, b, nn, dst, frame),
                        3 => row_of_tiles::<3>(a, ps, kk, offs, b, nn, dst, frame),
                        _ => unreachable!("forward tiles are 1 to 3 registers tall"),
                    }
                    q += rr * w;
                }
            }

            #[target_feature(enable = $features)]
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
                super::row_of_tiles::<$isa, RR>(a, ps, kk, offs, b, nn, dst, frame)
            }

            /// [`super::super::shifted_dot`]: `NB_DOT` output channels x 9 taps of one input channel at a time.
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            pub(in super::super) unsafe fn shifted_dot<T: Taps>(
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
                    let nb = <$isa as Isa>::NB_DOT.min(nn - n0);
                    for k in 0..kk {
                        let (ak, dn) = (a.add(k * ps), d.add(n0 * frame));
                        let out = dw.add(n0 * ks + k * TAPS);
                        match nb {
                            1 => dot_tile::<1, T>(ak, taps, dn, frame, out, ks),
                            2 => dot_tile::<2, T>(ak, taps, dn, frame, out, ks),
                            _ => unreachable!("weight-gradient tiles are 1 or 2 channels wide"),
                        }
                    }
                    n0 += nb;
                }
            }

            /// `N` output channels x 9 taps of one input channel over the frame:
            /// `dw[n * ks + t] += sum_q d[n * frame + q] * a[shift(t) + q]`.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn dot_tile<const N: usize, T: Taps>(
                a: *const f32,
                taps: T,
                d: *const f32,
                frame: usize,
                dw: *mut f32,
                ks: usize,
            ) {
                let mut acc = [[<$isa as Isa>::zero(); TAPS]; N];
                dot_frame::<N, T>(a, taps, d, frame, &mut acc);
                for (n, accn) in acc.iter().enumerate() {
                    for (t, v) in accn.iter().enumerate() {
                        *dw.add(n * ks + t) += <$isa as Isa>::sum(*v);
                    }
                }
            }

            /// [`super::dot_frame`], a function of its own (see there).
            #[target_feature(enable = $features)]
            #[inline(never)]
            unsafe fn dot_frame<const N: usize, T: Taps>(
                a: *const f32,
                taps: T,
                d: *const f32,
                frame: usize,
                acc: &mut [[<$isa as Isa>::V; TAPS]; N],
            ) {
                super::dot_frame::<$isa, N, T>(a, taps, d, frame, acc)
            }
        }
    };
}

compiled_for!(avx512, Avx512, "avx512f");
compiled_for!(avx2, Avx2, "avx2,fma");
