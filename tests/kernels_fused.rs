//! The fused residual-block ops (relu, scaled residual, conv + bias + relu, BatchNorm) against candle's composites: values and every
//! gradient within 1e-4 relative, on the shapes the model zoo produces (and odd ones).

use candle_core::{Device, Result, Tensor, Var};
use nfbench::kernels::{self, testing};

fn rel_err(a: &Tensor, b: &Tensor) -> Result<f32> {
    assert_eq!(a.dims(), b.dims());
    let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let scale = b.abs()?.max_all()?.to_scalar::<f32>()?.max(1e-12);
    Ok(diff / scale)
}

fn var(shape: &[usize]) -> Result<Var> {
    Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &Device::Cpu)?)
}

/// Runs `ours` and `reference` on the same variables with the same random cotangent and compares the value and the
/// gradient of each variable.
fn compare(
    what: &str,
    vars: &[&Var],
    ours: impl Fn() -> Result<Tensor>,
    reference: impl Fn() -> Result<Tensor>,
) -> Result<()> {
    let a = ours()?;
    let b = reference()?;
    let e = rel_err(&a, &b)?;
    assert!(e < 1e-4, "{what}: forward rel err {e}");
    let r = Tensor::randn(0f32, 1.0, a.shape(), &Device::Cpu)?;
    let ga = (a * &r)?.sum_all()?.backward()?;
    let gb = (b * &r)?.sum_all()?.backward()?;
    for (i, v) in vars.iter().enumerate() {
        let e = rel_err(
            ga.get(v).expect("our gradient"),
            gb.get(v).expect("reference gradient"),
        )?;
        assert!(e < 1e-4, "{what}: gradient of argument {i} rel err {e}");
    }
    Ok(())
}

#[test]
fn relu_matches_candle_away_from_zero() -> Result<()> {
    // candle's relu passes the gradient at exactly 0 (x >= 0), ours does not (x > 0, as PyTorch); random inputs are
    // never exactly 0.
    for shape in [vec![64, 16, 32, 32], vec![3, 5, 7], vec![1]] {
        let x = var(&shape)?;
        compare(
            &format!("relu {shape:?}"),
            &[&x],
            || kernels::relu(&x),
            || x.relu(),
        )?;
    }
    Ok(())
}

#[test]
fn relu_gradient_is_zero_at_zero() -> Result<()> {
    let x = Var::from_tensor(&Tensor::new(&[-1f32, 0.0, 2.0], &Device::Cpu)?)?;
    let g = kernels::relu(&x)?.sum_all()?.backward()?;
    assert_eq!(g.get(&x).unwrap().to_vec1::<f32>()?, vec![0.0, 0.0, 1.0]);
    Ok(())
}

#[test]
fn scaled_residual_matches_composite_for_every_factor_shape() -> Result<()> {
    for shape in [[64, 16, 32, 32], [8, 64, 8, 8], [3, 5, 7, 9]] {
        let b = shape[0];
        for factor_shape in [vec![], vec![1], vec![b, 1, 1, 1], vec![b]] {
            let s = var(&shape)?;
            let x = var(&shape)?;
            let f = var(&factor_shape)?;
            let what = format!("scaled residual {shape:?} factor {factor_shape:?}");
            compare(
                &what,
                &[&s, &x],
                || kernels::scaled_residual(&s, &x, &f),
                || testing::scaled_residual_reference(&s, &x, &f),
            )?;
            factor_gradient_agrees(&what, &s, &x, &f)?;
        }
    }
    Ok(())
}

/// The factor's gradient is a sum of up to a million products `x * dy` (one per element its value scales), which
/// cancel: measured against the size of the sum itself, two correct f32 summations in different orders differ by
/// up to ~4e-4 (a flaky 1e-4 bound). The error of a sum is bounded by the sum of its terms' magnitudes, so the
/// difference is measured against `sum |x * dy|` over the elements each factor value scales.
fn factor_gradient_agrees(what: &str, s: &Var, x: &Var, f: &Var) -> Result<()> {
    let a = kernels::scaled_residual(s, x, f)?;
    let dy = Tensor::randn(0f32, 1.0, a.shape(), &Device::Cpu)?;
    let ga = (a * &dy)?.sum_all()?.backward()?;
    let gb = (testing::scaled_residual_reference(s, x, f)? * &dy)?
        .sum_all()?
        .backward()?;
    let diff = (ga.get(f).expect("our gradient") - gb.get(f).expect("reference gradient"))?
        .abs()?
        .flatten_all()?;
    let terms = (x.as_tensor() * &dy)?.abs()?;
    let magnitude = if f.elem_count() == 1 {
        terms.sum_all()?.reshape(1)?
    } else {
        terms.flatten_from(1)?.sum(1)?
    };
    let worst = (diff / magnitude)?.max_all()?.to_scalar::<f32>()?;
    assert!(
        worst < 1e-5,
        "{what}: factor gradient differs by {worst} of the sum of its terms' magnitudes"
    );
    Ok(())
}

#[test]
fn scaled_residual_rejects_a_factor_of_the_wrong_length() -> Result<()> {
    let s = Tensor::zeros((4, 2, 3, 3), candle_core::DType::F32, &Device::Cpu)?;
    let f = Tensor::ones(3, candle_core::DType::F32, &Device::Cpu)?;
    let err = kernels::scaled_residual(&s, &s, &f)
        .unwrap_err()
        .to_string();
    assert!(err.contains("factor has 3 values"), "{err}");
    Ok(())
}

#[test]
fn a_constant_factor_gets_no_gradient_and_the_shortcut_gets_the_output_gradient() -> Result<()> {
    let s = var(&[2, 3, 4, 4])?;
    let x = var(&[2, 3, 4, 4])?;
    let f = Tensor::new(0.5f32, &Device::Cpu)?;
    let y = kernels::scaled_residual(&s, &x, &f)?;
    let g = y.sum_all()?.backward()?;
    let ones = Tensor::ones((2, 3, 4, 4), candle_core::DType::F32, &Device::Cpu)?;
    assert_eq!(rel_err(g.get(&s).unwrap(), &ones)?, 0.0);
    assert_eq!(rel_err(g.get(&x).unwrap(), &(ones * 0.5)?)?, 0.0);
    assert!(g.get(&f).is_none());
    Ok(())
}

/// (input shape, kernel shape, stride, padding, groups).
type ConvCase = ([usize; 4], [usize; 4], usize, kernels::Padding, usize);

#[test]
fn conv_bias_act_matches_composite_for_the_zoo_shapes() -> Result<()> {
    use kernels::Padding;
    // (x shape, kernel shape, stride, padding, groups): 3x3 stride 1 and 2 with 'SAME' asymmetric padding, 1x1
    // shortcuts, grouped convs, the stem.
    let cases: Vec<ConvCase> = vec![
        ([4, 16, 8, 8], [16, 16, 3, 3], 1, Padding::uniform(1), 1),
        (
            [3, 8, 9, 8],
            [16, 8, 3, 3],
            2,
            Padding {
                top: 1,
                bottom: 1,
                left: 0,
                right: 1,
            },
            1,
        ),
        ([2, 16, 6, 6], [32, 16, 1, 1], 2, Padding::uniform(0), 1),
        ([2, 16, 7, 7], [16, 2, 3, 3], 1, Padding::uniform(1), 8),
        ([2, 3, 16, 16], [8, 3, 3, 3], 2, Padding::uniform(1), 1),
        // More than 64 output channels per group: the weight gradient's direct (untransposed) product.
        ([2, 8, 5, 5], [96, 8, 3, 3], 1, Padding::uniform(1), 1),
        ([2, 16, 4, 4], [160, 8, 3, 3], 1, Padding::uniform(1), 2),
        // Maps small enough that several images share one gemm (4x4 and 2x2 outputs, a batch of 9).
        ([9, 16, 4, 4], [80, 16, 3, 3], 2, Padding::uniform(1), 1),
        ([9, 32, 2, 2], [24, 32, 1, 1], 1, Padding::uniform(0), 1),
    ];
    for (xs, ws, stride, pad, groups) in cases {
        for relu in [false, true] {
            let fusion = kernels::ConvFusion::NONE.with_relu_output(relu);
            let x = var(&xs)?;
            let w = var(&ws)?;
            let b = var(&[ws[0]])?;
            compare(
                &format!("conv bias act {xs:?} {ws:?} stride {stride} groups {groups} relu {relu}"),
                &[&x, &w, &b],
                || kernels::conv2d_fused(&x, &w, Some(&*b), stride, pad, groups, fusion),
                || testing::conv2d_fused_reference(&x, &w, Some(&*b), stride, pad, groups, fusion),
            )?;
        }
    }
    Ok(())
}

/// BatchNorm with batch statistics as candle ops: the reference for the fused op.
fn batch_norm_reference(x: &Tensor, scale: &Tensor, offset: &Tensor, eps: f64) -> Result<Tensor> {
    let c = x.dim(1)?;
    let (mean, var) = nfbench::model::layers::channel_moments(x)?;
    let inv = (var + eps)?.sqrt()?.recip()?;
    let a = (inv * scale)?.reshape((1, c, 1, 1))?;
    x.broadcast_sub(&mean.reshape((1, c, 1, 1))?)?
        .broadcast_mul(&a)?
        .broadcast_add(&offset.reshape((1, c, 1, 1))?)
}

#[test]
fn batch_norm_train_matches_composite() -> Result<()> {
    for shape in [[8, 16, 8, 8], [3, 5, 7, 9], [64, 4, 2, 2]] {
        // Channels far from zero mean test the variance's numerics.
        let x = Var::from_tensor(&Tensor::randn(2f32, 3.0, &shape, &Device::Cpu)?)?;
        let scale = Var::from_tensor(&Tensor::randn(1f32, 0.3, shape[1], &Device::Cpu)?)?;
        let offset = var(&[shape[1]])?;
        let eps = 1e-5;
        compare(
            &format!("batch norm {shape:?}"),
            &[&x, &scale, &offset],
            || {
                Ok(kernels::batch_norm_train(&x, &scale, &offset, eps)?
                    .expect("cpu f32")
                    .0)
            },
            || batch_norm_reference(&x, &scale, &offset, eps),
        )?;
        let (_, mean, var) = kernels::batch_norm_train(&x, &scale, &offset, eps)?.unwrap();
        let (rmean, rvar) = nfbench::model::layers::channel_moments(&x)?;
        assert!(rel_err(&mean, &rmean)? < 1e-5);
        assert!(rel_err(&var, &rvar)? < 1e-4);
        assert!(
            !mean.track_op() && !var.track_op(),
            "statistics are detached"
        );
    }
    Ok(())
}

#[test]
fn batch_norm_relu_matches_composite() -> Result<()> {
    for shape in [[8, 16, 8, 8], [3, 5, 7, 9]] {
        let x = var(&shape)?;
        let scale = Var::from_tensor(&Tensor::randn(1f32, 0.3, shape[1], &Device::Cpu)?)?;
        let offset = var(&[shape[1]])?;
        compare(
            &format!("batch norm + relu {shape:?}"),
            &[&x, &scale, &offset],
            || {
                Ok(
                    kernels::batch_norm_train_act(&x, &scale, &offset, 1e-5, true)?
                        .expect("cpu f32")
                        .0,
                )
            },
            || batch_norm_reference(&x, &scale, &offset, 1e-5)?.relu(),
        )?;
    }
    Ok(())
}

/// The vectorised tanh against `f32::tanh` on a dense grid over [-20, 20] (clamped beyond 9) and at the extremes.
#[test]
fn fast_tanh_matches_libm() {
    let mut worst = 0f32;
    for i in -200_000..=200_000 {
        let x = i as f32 * 1e-4;
        worst = worst.max((kernels::tanh_fast(x) - x.tanh()).abs());
    }
    for x in [f32::MAX, f32::MIN, 1e30, -1e30, 0.0, -0.0, 1e-30] {
        worst = worst.max((kernels::tanh_fast(x) - x.tanh()).abs());
    }
    assert!(worst < 5e-7, "max abs error {worst}");
}

/// The GELU op (tanh form) against candle's `gelu`, value and gradient, over a wide range of inputs.
#[test]
fn gelu_matches_candle() -> Result<()> {
    for shape in [&[64, 32, 8, 8][..], &[3, 5], &[40_000]] {
        let x = Var::from_tensor(&(Tensor::randn(0f32, 1.0, shape, &Device::Cpu)? * 4.0)?)?;
        compare(
            &format!("gelu {shape:?}"),
            &[&x],
            || kernels::gelu(&x),
            || x.gelu(),
        )?;
    }
    Ok(())
}
