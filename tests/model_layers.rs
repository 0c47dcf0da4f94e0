//! Scaled Weight Standardisation and the activation table: numbers against their formulas.

use candle_core::{Device, Tensor, Var};
use nfbench::model::activation::{Activation, ACTIVATIONS};
use nfbench::model::layers::{normal_vec, param_rng, Conv};
use nfbench::model::plan::ConvPlan;

fn ws_plan(in_ch: usize, out_ch: usize, kernel: usize, stride: usize, groups: usize) -> ConvPlan {
    ConvPlan {
        name: "c".into(),
        in_ch,
        out_ch,
        kernel,
        stride,
        groups,
        ws: true,
        bias: true,
        init_gain: 1.0,
        padding: Default::default(),
    }
}

fn conv(plan: &ConvPlan, seed: u64) -> Conv {
    let mut params = Vec::new();
    Conv::new(plan, seed, &Device::Cpu, &mut params).expect("build conv")
}

#[test]
fn ws_weights_have_zero_mean_and_unit_fan_in_variance_per_output_channel() {
    for (plan, seed) in [
        (ws_plan(5, 7, 3, 1, 1), 1),
        (ws_plan(8, 6, 3, 2, 2), 2),
        (ws_plan(16, 4, 1, 1, 1), 3),
    ] {
        let c = conv(&plan, seed);
        // Move the raw weights far from standardised so the check is not trivially true.
        let raw = (c.w.as_tensor() * 3.0).unwrap().affine(1.0, 0.5).unwrap();
        c.w.set(&raw).unwrap();
        let w = c.effective_weight().unwrap();
        let n = plan.fan_in();
        let rows = w
            .reshape((plan.out_ch, n))
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (o, row) in rows.iter().enumerate() {
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
            let var = row
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n as f64;
            assert!(mean.abs() < 1e-6, "channel {o}: mean {mean}");
            assert!(
                (n as f64 * var - 1.0).abs() < 1e-4,
                "channel {o}: N*var {}",
                n as f64 * var
            );
        }
    }
}

#[test]
fn ws_gain_scales_each_output_channel() {
    let plan = ws_plan(3, 4, 3, 1, 1);
    let c = conv(&plan, 5);
    let before = c.effective_weight().unwrap();
    let gain = Tensor::new(&[1.0f32, 2.0, 0.5, -1.0], &Device::Cpu).unwrap();
    c.gain.as_ref().unwrap().set(&gain).unwrap();
    let after = c.effective_weight().unwrap();
    let expected = before
        .broadcast_mul(&gain.reshape((4, 1, 1, 1)).unwrap())
        .unwrap();
    let diff = (after - expected)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-6, "{diff}");
}

/// sum(conv(x) * r) as a function of the raw weights, in f64 on the host.
fn loss(c: &Conv, x: &Tensor, r: &Tensor) -> f64 {
    let y = c.forward(x).unwrap();
    f64::from(
        (y * r)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
    )
}

#[test]
fn ws_conv_gradients_match_finite_differences() {
    let dev = Device::Cpu;
    // Grouped and strided (asymmetric 'SAME' padding) to cover the awkward paths.
    for plan in [ws_plan(4, 6, 3, 1, 2), ws_plan(3, 4, 3, 2, 1)] {
        let c = conv(&plan, 11);
        let x = Tensor::from_vec(
            normal_vec(&mut param_rng(1, "x"), 2 * plan.in_ch * 36, 1.0, false),
            (2, plan.in_ch, 6, 6),
            &dev,
        )
        .unwrap();
        let y = c.forward(&x).unwrap();
        let r = Tensor::from_vec(
            normal_vec(&mut param_rng(2, "r"), y.elem_count(), 1.0, false),
            y.dims(),
            &dev,
        )
        .unwrap();
        let grads = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let check = |var: &Var, what: &str| {
            let g = grads
                .get(var)
                .expect("gradient present")
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let base = var
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let h = 1e-2f32;
            for i in (0..base.len()).step_by((base.len() / 12).max(1)) {
                let mut plus = base.clone();
                plus[i] += h;
                var.set(&Tensor::from_vec(plus, var.dims(), &dev).unwrap())
                    .unwrap();
                let lp = loss(&c, &x, &r);
                let mut minus = base.clone();
                minus[i] -= h;
                var.set(&Tensor::from_vec(minus, var.dims(), &dev).unwrap())
                    .unwrap();
                let lm = loss(&c, &x, &r);
                var.set(&Tensor::from_vec(base.clone(), var.dims(), &dev).unwrap())
                    .unwrap();
                let fd = (lp - lm) / (2.0 * f64::from(h));
                let an = f64::from(g[i]);
                let tol = 2e-2 * an.abs().max(fd.abs()) + 5e-3;
                assert!(
                    (fd - an).abs() <= tol,
                    "{what}[{i}] ({:?}): finite difference {fd}, autograd {an}",
                    plan.weight_shape()
                );
            }
        };
        check(&c.w, "w");
        check(c.gain.as_ref().unwrap(), "gain");
        check(c.b.as_ref().unwrap(), "b");
    }
}

#[test]
fn gamma_makes_unit_gaussian_outputs_unit_variance() {
    // gamma = 1 / std(act(z)), z ~ N(0, 1): check with a large sample.
    let z = Tensor::from_vec(
        normal_vec(&mut param_rng(3, "z"), 200_000, 1.0, false),
        200_000,
        &Device::Cpu,
    )
    .unwrap();
    for row in ACTIVATIONS {
        let y = row.kind.apply_scaled(&z).unwrap().to_vec1::<f32>().unwrap();
        let mean = y.iter().map(|&v| f64::from(v)).sum::<f64>() / y.len() as f64;
        let var = y
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / y.len() as f64;
        assert!((var - 1.0).abs() < 0.02, "{}: var {var}", row.name);
    }
}

#[test]
fn activations_have_gradients() {
    let x = Var::new(&[-3.0f32, -0.5, 0.25, 2.0, 7.0], &Device::Cpu).unwrap();
    for row in ACTIVATIONS {
        let y = row
            .kind
            .apply_scaled(x.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap();
        let g = y.backward().unwrap();
        let g = g.get(&x).expect("gradient").to_vec1::<f32>().unwrap();
        if row.kind != Activation::Relu && row.kind != Activation::Relu6 {
            assert!(g.iter().all(|v| v.abs() > 0.0), "{}: {g:?}", row.name);
        }
        assert!(g.iter().any(|v| v.abs() > 0.0), "{}: {g:?}", row.name);
    }
}
