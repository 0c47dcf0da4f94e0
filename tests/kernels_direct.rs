//! The shifted-frame 3x3 convolutions (stride 1 in `src/kernels/direct/`, stride 2 on phase planes in
//! `src/kernels/strided.rs`; AVX-512, or AVX2 + FMA, or AVX2 under `NFBENCH_CONV_DIRECT=avx2`) against the im2col +
//! gemm path, which `tests/kernels_conv.rs` checks against candle: forward, input gradient and weight gradient on
//! geometries chosen to hit every edge of the kernels (widths that are not a multiple of the vector width, frames
//! shorter than one tile, channel counts that are not a multiple of the register blocks, groups, every padding from
//! 0 to 2 per side, 1-pixel maps, batches that split into uneven tasks), and the fused input relu. On a CPU without
//! AVX2 + FMA, or under `NFBENCH_CONV_DIRECT=0`, the shifted-frame kernels cannot run: those tests print a
//! `skipped: ...` line and check nothing new. `scripts/test.sh` runs this file under each dispatch.

use nfbench::kernels::testing::{
    conv2d_forward_im2col, conv2d_input_grad_im2col, conv2d_shifted_frames,
    conv2d_uses_shifted_frames, conv2d_weight_grad_im2col, ConvGeom,
};
use nfbench::kernels::Padding;

/// Says on stderr, past the test harness's output capture (which takes `eprintln!`), that `what` checked nothing.
fn skipped(what: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {what}: the shifted-frame kernels do not run here (no AVX2 + FMA, or NFBENCH_CONV_DIRECT=0)"
    );
}

/// A deterministic pseudo-random sequence in [-1, 1) (xorshift), so a failure reproduces.
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// max |a - b| / max |b|.
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    let scale = b.iter().map(|y| y.abs()).fold(1e-12, f32::max);
    diff / scale
}

fn check(b: usize, c: usize, (h, w): (usize, usize), o: usize, pad: Padding, groups: usize) {
    check_strided(b, c, (h, w), o, pad, groups, 1);
}

fn check_strided(
    b: usize,
    c: usize,
    (h, w): (usize, usize),
    o: usize,
    pad: Padding,
    groups: usize,
    stride: usize,
) {
    let geo = ConvGeom::new((b, c, h, w), (o, c / groups, 3, 3), stride, pad, groups)
        .expect("valid geometry");
    let what = format!("b{b} c{c} {h}x{w} o{o} {pad:?} g{groups} s{stride}");
    let x = noise(b * c * h * w, 1 + (b * c * h * w) as u64);
    let k = noise(o * (c / groups) * 9, 7 + o as u64);
    let dy = noise(b * o * geo.ho * geo.wo, 13 + (h * w) as u64);
    // Without AVX2 + FMA (or with NFBENCH_CONV_DIRECT=0) the kernels cannot run and the convolutions never pick
    // them: nothing to compare.
    let Some((y, dx, dw)) = conv2d_shifted_frames(&x, &k, &dy, &geo) else {
        skipped(&what);
        return;
    };
    let e = rel_err(&y, &conv2d_forward_im2col(&x, &k, &geo));
    assert!(e < 1e-5, "{what}: forward rel err {e}");
    let e = rel_err(&dx, &conv2d_input_grad_im2col(&dy, &k, &geo));
    assert!(e < 1e-5, "{what}: input gradient rel err {e}");
    let e = rel_err(&dw, &conv2d_weight_grad_im2col(&x, &dy, &geo));
    assert!(e < 1e-5, "{what}: weight gradient rel err {e}");
}

/// The stride-2 kernels (phase planes): the zoo's downsampling shapes ('SAME' padding 0/1 on even inputs, 1/1 on
/// odd ones), odd sizes, every padding up to 2, groups, 1-pixel outputs, uneven task splits.
#[test]
fn phase_plane_conv_matches_im2col_on_edge_geometries() {
    let same_even = Padding {
        top: 0,
        bottom: 1,
        left: 0,
        right: 1,
    };
    check_strided(4, 16, (32, 32), 32, same_even, 1, 2);
    check_strided(5, 32, (16, 16), 64, same_even, 1, 2);
    check_strided(3, 8, (15, 15), 8, Padding::uniform(1), 1, 2);
    check_strided(2, 64, (8, 8), 64, same_even, 4, 2);
    check_strided(2, 6, (9, 14), 9, Padding::uniform(1), 3, 2);
    for (t, bt, l, r) in [(0, 0, 0, 0), (2, 2, 2, 2), (1, 0, 2, 1), (0, 2, 1, 0)] {
        let pad = Padding {
            top: t,
            bottom: bt,
            left: l,
            right: r,
        };
        check_strided(3, 5, (7, 10), 7, pad, 1, 2);
    }
    check_strided(3, 4, (3, 3), 5, Padding::uniform(0), 1, 2);
    check_strided(37, 8, (16, 16), 8, same_even, 1, 2);
}

/// The body convolutions of the default network take these paths wherever the kernels run (AVX-512 or AVX2); 2x2 maps (mostly
/// padding) do not.
#[test]
fn the_zoo_body_convs_take_the_shifted_frame_path() {
    let Some(_) = conv2d_shifted_frames(&[0.0; 9], &[0.0; 9], &[0.0; 9], &geo3x3(1, 1, 3, 1))
    else {
        skipped("the zoo's paths");
        return;
    };
    for (c, hw) in [(16, 32), (32, 16), (64, 8)] {
        assert!(
            conv2d_uses_shifted_frames(&geo3x3(64, c, hw, 1)),
            "{c} ch at {hw} px"
        );
    }
    assert!(conv2d_uses_shifted_frames(&geo3x3(64, 32, 16, 2)));
    assert!(conv2d_uses_shifted_frames(&geo3x3(64, 16, 32, 2)));
    assert!(!conv2d_uses_shifted_frames(&geo3x3(32, 256, 2, 1)));
}

fn geo3x3(b: usize, c: usize, hw: usize, stride: usize) -> ConvGeom {
    ConvGeom::new((b, c, hw, hw), (c, c, 3, 3), stride, Padding::uniform(1), 1)
        .expect("valid geometry")
}

#[test]
fn shifted_frame_conv_matches_im2col_on_edge_geometries() {
    let same = Padding::uniform(1);
    // The zoo's stride-1 3x3 shapes: CIFAR stages (16/32/64 channels at 32/16/8 px), the stem (3 channels).
    check(4, 16, (32, 32), 16, same, 1);
    check(3, 32, (16, 16), 32, same, 1);
    check(5, 64, (8, 8), 64, same, 1);
    check(2, 3, (32, 32), 16, same, 1);
    // Grouped (NFNet group width 16 and 8), channel counts off the register blocks.
    check(2, 64, (8, 8), 64, same, 4);
    check(2, 24, (7, 9), 39, same, 3);
    check(3, 7, (5, 11), 13, same, 1);
    check(2, 1, (9, 3), 1, same, 1);
    // Every padding per side, valid (0) and 'full' (2) included, asymmetric ones too.
    for (t, bt, l, r) in [
        (0, 0, 0, 0),
        (2, 2, 2, 2),
        (0, 1, 0, 1),
        (1, 0, 2, 0),
        (2, 0, 0, 1),
    ] {
        let pad = Padding {
            top: t,
            bottom: bt,
            left: l,
            right: r,
        };
        check(3, 5, (6, 10), 9, pad, 1);
        check(2, 6, (4, 4), 8, pad, 2);
    }
    // 1-pixel maps (all taps but the centre read padding) and a 1-pixel-high strip.
    check(3, 4, (1, 1), 5, same, 1);
    check(2, 4, (1, 37), 3, same, 1);
    // Wide rows (frames of many tiles) and a batch that splits into uneven tasks.
    check(1, 2, (3, 70), 7, same, 1);
    check(37, 8, (8, 8), 8, same, 1);
}

/// `conv(relu(x))` with the relu fused into the convolution (no tensor, no graph node) against candle's relu and
/// convolution: forward, input gradient (masked where `x <= 0`), kernel and bias gradient, with and without a fused
/// bias and a fused output relu, on the shifted-frame path (3x3 stride 1) and the im2col path (strided, 1x1).
#[test]
fn relu_input_fusion_matches_relu_then_conv() -> candle_core::Result<()> {
    use candle_core::{Device, Tensor, Var};
    use nfbench::kernels::{self, testing, ConvFusion};
    let dev = Device::Cpu;
    let rel = |a: &Tensor, b: &Tensor| -> candle_core::Result<f32> {
        let d = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        Ok(d / b.abs()?.max_all()?.to_scalar::<f32>()?.max(1e-12))
    };
    for (b, c, hw, o, k, stride, pad) in [
        (3, 16, 32, 16, 3, 1, 1),
        (5, 64, 8, 64, 3, 1, 1),
        (2, 8, 16, 16, 3, 2, 1),
        (2, 8, 16, 16, 1, 2, 0),
        (2, 6, 9, 4, 3, 1, 0),
    ] {
        let what = format!("b{b} c{c} {hw}px o{o} k{k} s{stride} p{pad}");
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, c, hw, hw), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (o, c, k, k), &dev)?)?;
        let bias = Var::from_tensor(&Tensor::randn(0f32, 1.0, o, &dev)?)?;
        let pad = Padding::uniform(pad);
        for (with_bias, out_relu) in [(false, false), (false, true), (true, false), (true, true)] {
            let bias = with_bias.then_some(&*bias);
            let out = ConvFusion::NONE.with_relu_output(out_relu);
            let fusion = out.with_relu_input(true);
            let ours = kernels::conv2d_fused(&x, &w, bias, stride, pad, 1, fusion)?;
            let refr = testing::conv2d_fused_reference(&x.relu()?, &w, bias, stride, pad, 1, out)?;
            let e = rel(&ours, &refr)?;
            assert!(
                e < 1e-4,
                "{what} {fusion:?} bias {with_bias}: forward rel err {e}"
            );
            let r = Tensor::randn(0f32, 1.0, refr.dims(), &dev)?;
            let g_ours = (ours * &r)?.sum_all()?.backward()?;
            let g_ref = (refr * &r)?.sum_all()?.backward()?;
            let mut vars = vec![("input", &*x), ("kernel", &*w)];
            vars.extend(bias.map(|b| ("bias", b)));
            for (name, v) in vars {
                let a = g_ours.get(v).expect("our gradient");
                let b = g_ref.get(v).expect("reference gradient");
                let e = rel(a, b)?;
                assert!(
                    e < 1e-4,
                    "{what} {fusion:?} bias {with_bias}: {name} gradient rel err {e}"
                );
            }
        }
    }
    Ok(())
}
