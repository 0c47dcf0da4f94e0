//! Convolution micro-benchmark: forward, input gradient and weight gradient of the custom op against candle's,
//! per conv shape of the zoo, in GFLOP/s (best of N, so a busy shared machine disturbs it less).
//!
//! `cargo bench --bench conv [-- FILTER]`

use candle_core::{Device, Tensor, Var};
use nfbench::kernels::{self, testing};
use std::time::Instant;

struct Shape {
    name: &'static str,
    b: usize,
    c: usize,
    hw: usize,
    o: usize,
    k: usize,
    s: usize,
    p: usize,
    g: usize,
}

fn best_of<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() -> candle_core::Result<()> {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let shapes = [
        Shape {
            name: "cifar s1 16->16 32px",
            b: 64,
            c: 16,
            hw: 32,
            o: 16,
            k: 3,
            s: 1,
            p: 1,
            g: 1,
        },
        Shape {
            name: "cifar s1 64->64 8px",
            b: 64,
            c: 64,
            hw: 8,
            o: 64,
            k: 3,
            s: 1,
            p: 1,
            g: 1,
        },
        Shape {
            name: "3x3 s1 64->64 32px",
            b: 64,
            c: 64,
            hw: 32,
            o: 64,
            k: 3,
            s: 1,
            p: 1,
            g: 1,
        },
        Shape {
            name: "3x3 s1 256->256 8px",
            b: 64,
            c: 256,
            hw: 8,
            o: 256,
            k: 3,
            s: 1,
            p: 1,
            g: 1,
        },
        Shape {
            name: "3x3 s2 64->128 32px",
            b: 64,
            c: 64,
            hw: 32,
            o: 128,
            k: 3,
            s: 2,
            p: 1,
            g: 1,
        },
        Shape {
            name: "1x1 s1 256->64 16px",
            b: 32,
            c: 256,
            hw: 16,
            o: 64,
            k: 1,
            s: 1,
            p: 0,
            g: 1,
        },
        Shape {
            name: "1x1 s2 64->128 32px",
            b: 64,
            c: 64,
            hw: 32,
            o: 128,
            k: 1,
            s: 2,
            p: 0,
            g: 1,
        },
        Shape {
            name: "7x7 s2 3->64 64px",
            b: 32,
            c: 3,
            hw: 64,
            o: 64,
            k: 7,
            s: 2,
            p: 3,
            g: 1,
        },
        Shape {
            name: "3x3 g2 256->256 8px",
            b: 32,
            c: 256,
            hw: 8,
            o: 256,
            k: 3,
            s: 1,
            p: 1,
            g: 2,
        },
    ];
    let dev = Device::Cpu;
    println!(
        "{:<24} {:>8} {:>8} {:>8} | candle {:>8} {:>8}  (GFLOP/s fwd dx dw | fwd bwd)",
        "shape", "fwd", "dx", "dw", "fwd", "bwd"
    );
    for s in &shapes {
        if let Some(f) = &filter {
            if !s.name.contains(f.as_str()) {
                continue;
            }
        }
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (s.b, s.c, s.hw, s.hw), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (s.o, s.c / s.g, s.k, s.k), &dev)?)?;
        let geo = testing::ConvGeom::new(
            x.dims4()?,
            w.dims4()?,
            s.s,
            kernels::Padding::uniform(s.p),
            s.g,
        )?;
        let (_, _, ho, wo) = geo.out_dims();
        let flop = 2.0 * (s.b * s.o * ho * wo * (s.c / s.g) * s.k * s.k) as f64 / 1e9;
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let ws = w.flatten_all()?.to_vec1::<f32>()?;
        let dy: Vec<f32> = (0..s.b * s.o * ho * wo)
            .map(|i| ((i % 7) as f32) * 0.1)
            .collect();
        let reps = 5;
        let tf = best_of(reps, || drop(testing::conv2d_forward(&xs, &ws, &geo)));
        let tx = best_of(reps, || drop(testing::conv2d_input_grad(&dy, &ws, &geo)));
        let tw = best_of(reps, || drop(testing::conv2d_weight_grad(&xs, &dy, &geo)));
        let cf = best_of(2, || drop(testing::conv2d_reference(&x, &w, s.s, s.p, s.g)));
        let cb = best_of(2, || {
            let y = testing::conv2d_reference(&x, &w, s.s, s.p, s.g).expect("conv");
            drop(y.sum_all().expect("sum").backward().expect("backward"))
        }) - cf;
        println!(
            "{:<24} {:>8.1} {:>8.1} {:>8.1} | candle {:>8.1} {:>8.1}",
            s.name,
            flop / tf,
            flop / tx,
            flop / tw,
            flop / cf,
            2.0 * flop / cb
        );
    }
    Ok(())
}
