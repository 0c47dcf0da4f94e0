//! The custom convolution against candle's own conv2d: forward, input gradient and weight gradient, for every conv
//! shape the model zoo uses (1x1 and 3x3, stride 1 and 2, stems, grouped, with and without padding).

use candle_core::{DType, Device, Result, Tensor, Var};
use nfbench::kernels::{self, testing};

/// max |a - b| / max |b|: the relative error the acceptance criterion bounds.
fn rel_err(a: &Tensor, b: &Tensor) -> Result<f32> {
    assert_eq!(a.dims(), b.dims());
    let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let scale = b.abs()?.max_all()?.to_scalar::<f32>()?.max(1e-12);
    Ok(diff / scale)
}

struct Case {
    b: usize,
    c: usize,
    hw: usize,
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
    groups: usize,
}

fn check(case: &Case) -> Result<()> {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(
        0f32,
        1.0,
        (case.b, case.c, case.hw, case.hw),
        &dev,
    )?)?;
    let w = Var::from_tensor(&Tensor::randn(
        0f32,
        1.0,
        (case.o, case.c / case.groups, case.k, case.k),
        &dev,
    )?)?;
    let ours = kernels::conv2d(&x, &w, case.stride, case.pad, case.groups)?;
    let refr = testing::conv2d_reference(&x, &w, case.stride, case.pad, case.groups)?;
    let what = format!(
        "b{} c{} {}px o{} k{} s{} p{} g{}",
        case.b, case.c, case.hw, case.o, case.k, case.stride, case.pad, case.groups
    );
    let e = rel_err(&ours, &refr)?;
    assert!(e < 1e-4, "{what}: forward rel err {e}");
    // A random projection of the output as the loss, so every output element gets a distinct gradient.
    let r = Tensor::randn(0f32, 1.0, refr.dims(), &dev)?;
    let g_ours = (ours * &r)?.sum_all()?.backward()?;
    let g_ref = (refr * &r)?.sum_all()?.backward()?;
    for (name, v) in [("input", &x), ("kernel", &w)] {
        let a = g_ours.get(v).expect("our gradient");
        let b = g_ref.get(v).expect("reference gradient");
        let e = rel_err(a, b)?;
        assert!(e < 1e-4, "{what}: {name} gradient rel err {e}");
    }
    Ok(())
}

#[test]
fn conv_matches_candle_on_zoo_shapes() -> Result<()> {
    let cases = [
        // stride-1 3x3 body convs
        Case {
            b: 2,
            c: 8,
            hw: 8,
            o: 8,
            k: 3,
            stride: 1,
            pad: 1,
            groups: 1,
        },
        // stride-2 3x3 (transition), odd size
        Case {
            b: 2,
            c: 8,
            hw: 9,
            o: 16,
            k: 3,
            stride: 2,
            pad: 1,
            groups: 1,
        },
        Case {
            b: 3,
            c: 4,
            hw: 8,
            o: 6,
            k: 3,
            stride: 2,
            pad: 1,
            groups: 1,
        },
        // 1x1 bottleneck / head and strided 1x1 shortcut
        Case {
            b: 2,
            c: 8,
            hw: 6,
            o: 16,
            k: 1,
            stride: 1,
            pad: 0,
            groups: 1,
        },
        Case {
            b: 2,
            c: 8,
            hw: 8,
            o: 16,
            k: 1,
            stride: 2,
            pad: 0,
            groups: 1,
        },
        Case {
            b: 2,
            c: 8,
            hw: 7,
            o: 4,
            k: 1,
            stride: 2,
            pad: 0,
            groups: 1,
        },
        // stems: 3x3/2 from RGB (NFNet), 7x7/2 (NF-ResNet)
        Case {
            b: 2,
            c: 3,
            hw: 16,
            o: 8,
            k: 3,
            stride: 2,
            pad: 1,
            groups: 1,
        },
        Case {
            b: 2,
            c: 3,
            hw: 17,
            o: 8,
            k: 7,
            stride: 2,
            pad: 3,
            groups: 1,
        },
        // grouped 3x3 (NFNet group width), stride 1 and 2, and depthwise
        Case {
            b: 2,
            c: 8,
            hw: 8,
            o: 8,
            k: 3,
            stride: 1,
            pad: 1,
            groups: 2,
        },
        Case {
            b: 2,
            c: 12,
            hw: 8,
            o: 12,
            k: 3,
            stride: 2,
            pad: 1,
            groups: 3,
        },
        Case {
            b: 2,
            c: 4,
            hw: 5,
            o: 4,
            k: 3,
            stride: 1,
            pad: 1,
            groups: 4,
        },
        // no padding
        Case {
            b: 2,
            c: 4,
            hw: 7,
            o: 5,
            k: 3,
            stride: 1,
            pad: 0,
            groups: 1,
        },
    ];
    for case in &cases {
        check(case)?;
    }
    Ok(())
}

#[test]
fn conv_batch_larger_than_one_chunk() -> Result<()> {
    // 64x64 maps with 144 taps per pixel: 3 images fill one im2col chunk, so 3 chunks accumulate the weight gradient.
    check(&Case {
        b: 7,
        c: 16,
        hw: 64,
        o: 8,
        k: 3,
        stride: 1,
        pad: 1,
        groups: 1,
    })
}

#[test]
fn conv_input_without_gradient_still_gives_kernel_gradient() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev)?;
    let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 3, 3, 3), &dev)?)?;
    let g = kernels::conv2d(&x, &w, 1, 1, 1)?.sum_all()?.backward()?;
    let g_ref = testing::conv2d_reference(&x, &w, 1, 1, 1)?
        .sum_all()?
        .backward()?;
    assert!(g.get(&x).is_none());
    assert!(
        rel_err(
            g.get(&w).expect("kernel grad"),
            g_ref.get(&w).expect("ref grad")
        )? < 1e-4
    );
    Ok(())
}

#[test]
fn conv_rejects_mismatched_shapes_and_falls_back_for_f64() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::zeros((1, 4, 8, 8), DType::F32, &dev)?;
    let w = Tensor::zeros((4, 3, 3, 3), DType::F32, &dev)?;
    assert!(kernels::conv2d(&x, &w, 1, 1, 1).is_err());
    let x = Tensor::ones((1, 2, 4, 4), DType::F64, &dev)?;
    let w = Tensor::ones((1, 2, 3, 3), DType::F64, &dev)?;
    let y = kernels::conv2d(&x, &w, 1, 1, 1)?;
    assert_eq!(y.dims(), &[1, 1, 4, 4]);
    Ok(())
}

#[test]
fn conv_asymmetric_same_padding_matches_explicit_padding() -> Result<()> {
    use kernels::Padding;
    let dev = Device::Cpu;
    // TF 'SAME' for a strided 3x3 on an even input pads 0 before and 1 after.
    for (k, pad) in [
        (
            3,
            Padding {
                top: 0,
                bottom: 1,
                left: 0,
                right: 1,
            },
        ),
        (
            3,
            Padding {
                top: 1,
                bottom: 2,
                left: 0,
                right: 1,
            },
        ),
        (
            1,
            Padding {
                top: 0,
                bottom: 0,
                left: 0,
                right: 0,
            },
        ),
    ] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 4, 8, 8), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (6, 4, k, k), &dev)?)?;
        let ours = kernels::conv2d_padded(&x, &w, 2, pad, 1)?;
        let refr = testing::conv2d_padded_reference(&x, &w, 2, pad, 1)?;
        assert!(rel_err(&ours, &refr)? < 1e-4, "{pad:?}");
        let r = Tensor::randn(0f32, 1.0, refr.dims(), &dev)?;
        let g_ours = (ours * &r)?.sum_all()?.backward()?;
        let g_ref = (refr * &r)?.sum_all()?.backward()?;
        for v in [&x, &w] {
            let e = rel_err(g_ours.get(v).expect("ours"), g_ref.get(v).expect("ref"))?;
            assert!(e < 1e-4, "{pad:?}: gradient rel err {e}");
        }
    }
    Ok(())
}
