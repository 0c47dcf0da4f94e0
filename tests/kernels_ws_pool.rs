//! Fused weight standardisation and the stem max pool against candle-op references, values and gradients.

use candle_core::{Device, Result, Tensor, Var};
use nfbench::kernels::{self, testing};

fn rel_err(a: &Tensor, b: &Tensor) -> Result<f32> {
    assert_eq!(a.dims(), b.dims());
    let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let scale = b.abs()?.max_all()?.to_scalar::<f32>()?.max(1e-12);
    Ok(diff / scale)
}

fn check_ws(shape: (usize, usize, usize, usize), w_std: f64, eps: f64) -> Result<()> {
    // An offset tests the centring, but only where the f32 reference itself does not cancel catastrophically.
    let offset = if w_std > 1e-2 { 0.3 } else { 0.0 };
    let dev = Device::Cpu;
    let w =
        Var::from_tensor(&(Tensor::randn(0f32, 1.0, shape, &dev)? * w_std)?.affine(1.0, offset)?)?;
    let gain = Var::from_tensor(&Tensor::randn(1f32, 0.2, shape.0, &dev)?)?;
    let ours = kernels::weight_standardize(&w, &gain, eps)?;
    let refr = testing::weight_standardize_reference(&w, &gain, eps)?;
    let e = rel_err(&ours, &refr)?;
    assert!(e < 1e-4, "{shape:?} std {w_std}: forward rel err {e}");
    let r = Tensor::randn(0f32, 1.0, shape, &dev)?;
    let g_ours = (ours * &r)?.sum_all()?.backward()?;
    let g_ref = (refr * &r)?.sum_all()?.backward()?;
    for (name, v) in [("kernel", &w), ("gain", &gain)] {
        let e = rel_err(
            g_ours.get(v).expect("our gradient"),
            g_ref.get(v).expect("reference gradient"),
        )?;
        assert!(
            e < 1e-4,
            "{shape:?} std {w_std}: {name} gradient rel err {e}"
        );
    }
    Ok(())
}

#[test]
fn weight_standardize_matches_composite() -> Result<()> {
    check_ws((8, 4, 3, 3), 1.0, 1e-4)?;
    check_ws((16, 8, 1, 1), 0.5, 1e-4)?;
    check_ws((4, 3, 7, 7), 2.0, 1e-4)?;
    check_ws((6, 2, 3, 3), 1.0, 1e-4)?;
    Ok(())
}

#[test]
fn weight_standardize_floor_matches_composite() -> Result<()> {
    // Tiny weights: N * var falls below eps, the scale is the constant 1/sqrt(eps).
    check_ws((8, 4, 3, 3), 1e-4, 1e-4)
}

#[test]
fn weight_standardize_rows_have_zero_mean_and_unit_fan_in_variance() -> Result<()> {
    let dev = Device::Cpu;
    let w = Tensor::randn(0f32, 3.0, (5, 4, 3, 3), &dev)?;
    let gain = Tensor::ones(5, candle_core::DType::F32, &dev)?;
    let y = kernels::weight_standardize(&w, &gain, 1e-4)?.reshape((5, 36))?;
    let mean = y.mean_keepdim(1)?;
    let var = y.broadcast_sub(&mean)?.sqr()?.sum_keepdim(1)?; // N * var = sum of squares
    for v in mean.flatten_all()?.to_vec1::<f32>()? {
        assert!(v.abs() < 1e-5);
    }
    for v in var.flatten_all()?.to_vec1::<f32>()? {
        assert!((v - 1.0).abs() < 1e-4, "sum of squares {v}");
    }
    Ok(())
}

fn check_pool(shape: (usize, usize, usize, usize), k: usize, s: usize, p: usize) -> Result<()> {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &dev)?)?;
    let ours = kernels::max_pool2d(&x, k, s, p)?;
    let refr = testing::max_pool2d_reference(&x, k, s, p)?;
    let e = rel_err(&ours, &refr)?;
    assert!(e < 1e-6, "{shape:?} k{k} s{s} p{p}: forward rel err {e}");
    let r = Tensor::randn(0f32, 1.0, refr.dims(), &dev)?;
    let g_ours = (ours * &r)?.sum_all()?.backward()?;
    let g_ref = (refr * &r)?.sum_all()?.backward()?;
    let e = rel_err(
        g_ours.get(&x).expect("our gradient"),
        g_ref.get(&x).expect("reference gradient"),
    )?;
    assert!(e < 1e-4, "{shape:?} k{k} s{s} p{p}: gradient rel err {e}");
    Ok(())
}

#[test]
fn max_pool_matches_reference() -> Result<()> {
    check_pool((2, 3, 8, 8), 3, 2, 1)?; // the stem
    check_pool((2, 3, 9, 7), 3, 2, 1)?; // odd sizes
    check_pool((1, 2, 8, 8), 2, 2, 0)?; // non-overlapping
    check_pool((1, 2, 6, 6), 3, 1, 1)?; // stride 1
    Ok(())
}

#[test]
fn max_pool_reference_matches_candle_without_padding() -> Result<()> {
    let x = Tensor::randn(0f32, 1.0, (2, 3, 9, 9), &Device::Cpu)?;
    let candle = x.max_pool2d_with_stride(3, 2)?;
    assert!(rel_err(&testing::max_pool2d_reference(&x, 3, 2, 0)?, &candle)? < 1e-7);
    assert!(rel_err(&kernels::max_pool2d(&x, 3, 2, 0)?, &candle)? < 1e-7);
    Ok(())
}

#[test]
fn max_pool_overlapping_windows_sum_gradients_and_ignore_padding() -> Result<()> {
    // A single large value wins every window containing it: its gradient is the number of such windows.
    let mut data = vec![0f32; 25];
    data[6] = 10.0; // (1, 1): rows and columns 1 lie in windows 0 (-1..=1) and 1 (1..=3)
    let x = Var::from_tensor(&Tensor::from_vec(data, (1, 1, 5, 5), &Device::Cpu)?)?;
    let y = kernels::max_pool2d(&x, 3, 2, 1)?;
    assert_eq!(y.dims(), &[1, 1, 3, 3]);
    let g = y.sum_all()?.backward()?;
    let gx = g
        .get(&x)
        .expect("gradient")
        .flatten_all()?
        .to_vec1::<f32>()?;
    assert_eq!(gx[6], 4.0);
    assert_eq!(gx.iter().sum::<f32>(), 9.0); // every window routes its gradient to exactly one input cell
    Ok(())
}

#[test]
fn max_pool_rejects_bad_geometry() {
    let x = Tensor::zeros((1, 1, 4, 4), candle_core::DType::F32, &Device::Cpu).expect("tensor");
    assert!(kernels::max_pool2d(&x, 3, 0, 1).is_err());
    assert!(kernels::max_pool2d(&x, 3, 2, 2).is_err());
    assert!(kernels::max_pool2d(&x, 9, 2, 1).is_err());
}

#[test]
fn max_pool_same_padding_matches_reference() -> Result<()> {
    let pad = kernels::Padding {
        top: 0,
        bottom: 1,
        left: 0,
        right: 1,
    };
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev)?)?;
    let ours = kernels::max_pool2d_padded(&x, 3, 2, pad)?;
    let refr = testing::max_pool2d_padded_reference(&x, 3, 2, pad)?;
    assert_eq!(ours.dims(), &[2, 3, 4, 4]);
    assert!(rel_err(&ours, &refr)? < 1e-7);
    let g_ours = ours.sum_all()?.backward()?;
    let g_ref = refr.sum_all()?.backward()?;
    assert!(rel_err(g_ours.get(&x).expect("ours"), g_ref.get(&x).expect("ref"))? < 1e-6);
    Ok(())
}
