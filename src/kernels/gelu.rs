//! GELU (the tanh form, as `jax.nn.gelu` and the NFNet reference compute it) as a custom op with a one-pass
//! backward; and the exact erf form (`torch.nn.functional.gelu`'s default, which timm's NFNets use) next to it, so an
//! imported timm network computes timm's function.
//!
//! candle's CPU `gelu` calls the scalar libm `tanhf` per element, and its backward composes `powf`, `tanh` and five
//! element-wise ops; with the element-wise ops on one thread (see `runtime.rs`) that was 70% of an nfnet_cifar
//! training step (`expm1f` 34%, `powf` 24%, `tanhf` 12%), 0.15x PyTorch. Here `tanh` is a rational minimax
//! approximation (odd degree-13 numerator over even degree-6 denominator on [-9, 9], the form Eigen uses; max
//! absolute error ~1e-7 in f32, tested against `f32::tanh`) made of multiply-adds and one division, which the
//! compiler vectorises, and both passes run in parallel chunks.

use super::fused::grad_and_input;
use super::par_fill;
use super::storage::f32_slice;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use std::mem::MaybeUninit;

/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

/// sqrt(2 / pi).
const C0: f32 = 0.797_884_6;
/// The cubic coefficient of the tanh form.
const C1: f32 = 0.044_715;

/// `tanh(x)`, vectorisable: `x * p(x^2) / q(x^2)` on `x` clamped to [-9, 9] (beyond it tanh is +-1 in f32).
#[inline(always)]
pub fn tanh_fast(x: f32) -> f32 {
    const P: [f32; 7] = [
        4.893_524_6e-3,
        6.372_619_3e-4,
        1.485_722_4e-5,
        5.122_297e-8,
        -8.604_672e-11,
        2.000_188e-13,
        -2.760_768_5e-16,
    ];
    const Q: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347_1e-4, 1.198_258_4e-6];
    let x = x.clamp(-9.0, 9.0);
    let x2 = x * x;
    let mut p = P[6];
    // Plain multiply-adds, not `mul_add`: without FMA in the target that is a call to libm's `fmaf` per term.
    for c in P[..6].iter().rev() {
        p = p * x2 + c;
    }
    let mut q = Q[3];
    for c in Q[..3].iter().rev() {
        q = q * x2 + c;
    }
    x * p / q
}

/// `gelu(x) = x / 2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))`.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    let t = tanh_fast(C0 * x * (1.0 + C1 * x * x));
    0.5 * x * (1.0 + t)
}

/// `d gelu / dx = (1 + t) / 2 + x / 2 * (1 - t^2) * sqrt(2/pi) * (1 + 3 * 0.044715 x^2)`.
#[inline(always)]
fn gelu_slope(x: f32) -> f32 {
    let t = tanh_fast(C0 * x * (1.0 + C1 * x * x));
    let du = C0 * (1.0 + 3.0 * C1 * x * x);
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
}

#[inline(always)]
fn forward_chunk(o: &mut [MaybeUninit<f32>], x: &[f32]) {
    o.iter_mut().zip(x).for_each(|(o, x)| {
        o.write(gelu(*x));
    });
}

#[inline(always)]
fn backward_chunk(o: &mut [MaybeUninit<f32>], g: &[f32], x: &[f32]) {
    for ((o, g), x) in o.iter_mut().zip(g).zip(x) {
        o.write(g * gelu_slope(*x));
    }
}

/// Runs `f` (inlined) compiled for AVX-512 or AVX2 + FMA when the CPU has them, else for the baseline target (SSE2):
/// the polynomial and division of `tanh_fast` vectorise 16 or 8 wide instead of 4. Measured on nfnet_cifar: the
/// GELU passes ~20% of a step at SSE2 width.
#[inline(always)]
fn with_widest_vectors(f: impl FnOnce()) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn avx512(f: impl FnOnce()) {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2(f: impl FnOnce()) {
            f()
        }
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features the function is compiled for (checked just above).
            return unsafe { avx512(f) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// The GELU op: forward `gelu(x)`, backward [`GeluGrad`].
pub struct GeluOp;

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "nf-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "gelu input")?;
        // SAFETY: `forward_chunk` writes every value of its chunk.
        let out = unsafe {
            par_fill(x.len(), CHUNK, |at, o| {
                with_widest_vectors(|| forward_chunk(o, &x[at..]))
            })
        };
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            grad.contiguous()?
                .apply_op2_no_bwd(&x.contiguous()?, &GeluGrad)?,
        ))
    }
}

/// `(dy, x) -> dy * gelu'(x)`.
pub struct GeluGrad;

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "nf-gelu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (dy, x) = grad_and_input((s1, l1), (s2, l2), "gelu")?;
        // SAFETY: `backward_chunk` writes every value of its chunk.
        let out = unsafe {
            par_fill(x.len(), CHUNK, |at, o| {
                with_widest_vectors(|| backward_chunk(o, &dy[at..], &x[at..]))
            })
        };
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// 1 / sqrt(2).
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi).
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// `gelu_erf(x) = x / 2 * (1 + erf(x / sqrt 2))`.
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + candle_core::cpu::erf::erf_f32(x * FRAC_1_SQRT_2))
}

/// `d gelu_erf / dx = (1 + erf(x / sqrt 2)) / 2 + x * exp(-x^2 / 2) / sqrt(2 pi)`.
#[inline(always)]
fn gelu_erf_slope(x: f32) -> f32 {
    let cdf = 0.5 * (1.0 + candle_core::cpu::erf::erf_f32(x * FRAC_1_SQRT_2));
    cdf + x * (-0.5 * x * x).exp() * FRAC_1_SQRT_2PI
}

/// The erf GELU op: forward `gelu_erf(x)`, backward [`GeluErfGrad`]. `erf` is libm's (scalar): this form is for
/// imported timm networks, not the training hot path the tanh form is tuned for.
pub struct GeluErfOp;

impl CustomOp1 for GeluErfOp {
    fn name(&self) -> &'static str {
        "nf-gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "gelu_erf input")?;
        // SAFETY: the closure writes every value of its chunk.
        let out = unsafe {
            par_fill(x.len(), CHUNK, |at, o| {
                o.iter_mut().zip(&x[at..]).for_each(|(o, x)| {
                    o.write(gelu_erf(*x));
                })
            })
        };
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            grad.contiguous()?
                .apply_op2_no_bwd(&x.contiguous()?, &GeluErfGrad)?,
        ))
    }
}

/// `(dy, x) -> dy * gelu_erf'(x)`.
pub struct GeluErfGrad;

impl CustomOp2 for GeluErfGrad {
    fn name(&self) -> &'static str {
        "nf-gelu-erf-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (dy, x) = grad_and_input((s1, l1), (s2, l2), "gelu_erf")?;
        // SAFETY: the closure writes every value of its chunk.
        let out = unsafe {
            par_fill(x.len(), CHUNK, |at, o| {
                for ((o, g), x) in o.iter_mut().zip(&dy[at..]).zip(&x[at..]) {
                    o.write(g * gelu_erf_slope(*x));
                }
            })
        };
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod erf_tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Abramowitz & Stegun 7.1.26 is too coarse to test against; this is erf by its Taylor series in f64,
    /// converging for the |x| <= 4 used here (terms up to n = 80).
    fn erf_series(x: f64) -> f64 {
        let mut sum = 0.0;
        let mut term = x; // x^(2n+1) (-1)^n / n!
        for n in 0..80 {
            sum += term / (2 * n + 1) as f64;
            term *= -x * x / (n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    fn xs() -> Vec<f32> {
        (-40..=40).map(|i| i as f32 * 0.1 + 0.013).collect()
    }

    #[test]
    fn gelu_erf_matches_the_formula_and_its_derivative() -> Result<()> {
        let xs = xs();
        let x = Var::from_vec(xs.clone(), xs.len(), &Device::Cpu)?;
        let y = x.as_tensor().apply_op1(GeluErfOp)?;
        let grads = y.sum_all()?.backward()?;
        let dy = grads
            .get(x.as_tensor())
            .expect("gradient")
            .to_vec1::<f32>()?;
        for ((&xi, yi), di) in xs.iter().zip(y.to_vec1::<f32>()?).zip(dy) {
            let xf = f64::from(xi);
            let cdf = 0.5 * (1.0 + erf_series(xf / 2f64.sqrt()));
            let want = xf * cdf;
            let pdf = (-0.5 * xf * xf).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let want_slope = cdf + xf * pdf;
            assert!(
                (f64::from(yi) - want).abs() < 1e-6 * (1.0 + want.abs()),
                "gelu_erf({xi})"
            );
            assert!((f64::from(di) - want_slope).abs() < 1e-5, "gelu_erf'({xi})");
        }
        Ok(())
    }

    #[test]
    fn gelu_erf_differs_from_the_tanh_form() -> Result<()> {
        // The two forms differ by ~1e-4 near |x| = 2: enough to matter when matching timm's logits at 1e-4.
        let x = Tensor::new(&[2.0f32, -2.0], &Device::Cpu)?;
        let exact = x.apply_op1(GeluErfOp)?.to_vec1::<f32>()?;
        let tanh = x.apply_op1(GeluOp)?.to_vec1::<f32>()?;
        assert!(exact.iter().zip(&tanh).all(|(a, b)| (a - b).abs() > 5e-5));
        Ok(())
    }
}
