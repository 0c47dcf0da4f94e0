//! The two instruction sets the shifted-frame micro-kernels run on, as one interface ([`Isa`]): a vector type, its
//! width, the handful of operations the kernels use, and the tile sizes that fit its register file. The kernels
//! (`microkernels.rs`) are written once over it; each instruction set's entry functions are compiled with its
//! target features and inline everything below them, so these methods become single instructions.

use std::arch::x86_64::*;

/// An instruction set's f32 vectors and the micro-kernels' tile sizes for its register file.
///
/// # Safety
/// Every method runs the instruction set's intrinsics: call them only from code inlined into a function compiled
/// with its target features, on a CPU that has them. Pointers must be valid for the lanes read or written.
pub(super) trait Isa: Copy {
    /// One register of `W` f32 lanes.
    type V: Copy;
    /// f32 lanes per register.
    const W: usize;
    /// Pixel registers per forward tile (`R x NB` accumulators + `R` inputs + 1 weight fit the register file).
    const R: usize;
    /// Output channels per forward tile.
    const NB: usize;
    /// Output channels per weight-gradient tile (`NB_DOT x 9` accumulators + `NB_DOT` output gradients + 1 input).
    const NB_DOT: usize;

    unsafe fn zero() -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Lanes `0..n` (`n < W`) from `p`, zeros in the others (which are not read).
    unsafe fn load_first(p: *const f32, n: usize) -> Self::V;
    /// Lanes `0..n` (`n < W`) of `v` to `p` (the floats after them untouched).
    unsafe fn store_first(p: *mut f32, n: usize, v: Self::V);
    /// `*p` in every lane.
    unsafe fn splat(p: *const f32) -> Self::V;
    /// `a * b + c`, fused.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    /// The sum of the lanes.
    unsafe fn sum(v: Self::V) -> f32;
}

/// AVX-512: 16 lanes, 32 registers.
#[derive(Clone, Copy)]
pub(super) struct Avx512;

/// Lanes `0..n` (n < 16) of an AVX-512 vector.
#[inline(always)]
fn mask16(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

impl Isa for Avx512 {
    type V = __m512;
    const W: usize = 16;
    /// 3 x 8 accumulators + 3 inputs + 1 weight <= 32 registers. 8 channels divide every width of the zoo; measured
    /// against 4 x 6: default +1-4% in 3 alternating pairs, nf_resnet26 within noise.
    const R: usize = 3;
    const NB: usize = 8;
    /// At 3 (31 registers) the compiler spilled accumulators to the stack and the pass ran ~2x slower per
    /// multiply-add.
    const NB_DOT: usize = 2;

    #[inline(always)]
    unsafe fn zero() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        _mm512_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, n: usize) -> __m512 {
        _mm512_maskz_loadu_ps(mask16(n), p)
    }
    #[inline(always)]
    unsafe fn store_first(p: *mut f32, n: usize, v: __m512) {
        _mm512_mask_storeu_ps(p, mask16(n), v)
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> __m512 {
        _mm512_set1_ps(*p)
    }
    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn max(a: __m512, b: __m512) -> __m512 {
        _mm512_max_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sum(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }
}

/// AVX2 + FMA (most laptops): 8 lanes, 16 registers, so smaller tiles (2 x 8 pixels x 6 channels forward, 1
/// channel x 9 taps x 8 pixels for the weight gradient). Frames stay multiples of 16 floats, so every loop runs
/// over whole registers.
#[derive(Clone, Copy)]
pub(super) struct Avx2;

/// Lanes `0..n` (n < 8) as a mask for `maskload` / `maskstore`.
#[inline(always)]
unsafe fn mask8(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(n as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

impl Isa for Avx2 {
    type V = __m256;
    const W: usize = 8;
    /// 2 x 6 accumulators + 2 inputs + 1 weight of the 16 registers.
    const R: usize = 2;
    const NB: usize = 6;
    const NB_DOT: usize = 1;

    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, n: usize) -> __m256 {
        _mm256_maskload_ps(p, mask8(n))
    }
    #[inline(always)]
    unsafe fn store_first(p: *mut f32, n: usize, v: __m256) {
        _mm256_maskstore_ps(p, mask8(n), v)
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> __m256 {
        _mm256_broadcast_ss(&*p)
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn max(a: __m256, b: __m256) -> __m256 {
        _mm256_max_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
        _mm_cvtss_f32(s)
    }
}
