//! SGD Nesterov against hand-computed updates, decay exclusions, the schedule, label smoothing, top-k and EMA.

use candle_core::{Device, Tensor, Var};
use nfbench::optim::{loss, Ema, LrSchedule, Sgd, SgdConfig};

fn var(v: &[f32]) -> Var {
    Var::from_tensor(&Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap()).unwrap()
}

fn t(v: &[f32]) -> Tensor {
    Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap()
}

fn vals(v: &Var) -> Vec<f32> {
    v.as_tensor().to_vec1::<f32>().unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

#[test]
fn nesterov_two_steps_with_coupled_decay() {
    let cfg = SgdConfig {
        momentum: 0.9,
        nesterov: true,
        weight_decay: 0.1,
    };
    let mut sgd = Sgd::new(1, cfg);
    let p = var(&[1.0, -2.0]);
    // Step 1: d = g + 0.1 p = (0.5 + 0.1, 1.0 - 0.2) = (0.6, 0.8); buf = d; update = d + 0.9 buf = 1.9 d
    // p = p - 0.5 * 1.9 d = (1 - 0.57, -2 - 0.76) = (0.43, -2.76).
    sgd.update(0, &p, true, &t(&[0.5, 1.0]), 0.5).unwrap();
    let got = vals(&p);
    assert!(
        close(got[0] as f64, 0.43, 1e-6) && close(got[1] as f64, -2.76, 1e-6),
        "{got:?}"
    );
    // Step 2: g = (0, 0): d = 0.1 p = (0.043, -0.276); buf = 0.9 (0.6, 0.8) + d = (0.583, 0.444);
    // update = d + 0.9 buf = (0.5677, 0.1236); p = p - 0.5 update = (0.14615, -2.8218).
    sgd.update(0, &p, true, &t(&[0.0, 0.0]), 0.5).unwrap();
    let got = vals(&p);
    assert!(close(got[0] as f64, 0.14615, 1e-5), "{got:?}");
    assert!(close(got[1] as f64, -2.8218, 1e-5), "{got:?}");
    let buf = sgd.buffer(0).unwrap().to_vec1::<f32>().unwrap();
    assert!(close(buf[0] as f64, 0.583, 1e-5) && close(buf[1] as f64, 0.444, 1e-5));
}

#[test]
fn heavy_ball_and_no_decay_for_excluded_kinds() {
    let cfg = SgdConfig {
        momentum: 0.5,
        nesterov: false,
        weight_decay: 0.1,
    };
    let mut sgd = Sgd::new(2, cfg);
    let gain = var(&[1.0]);
    let weight = var(&[1.0]);
    // Gain: no decay. buf = 1, p = 1 - 0.1 = 0.9; then buf = 0.5 + 1 = 1.5, p = 0.9 - 0.15 = 0.75.
    sgd.update(0, &gain, false, &t(&[1.0]), 0.1).unwrap();
    sgd.update(0, &gain, false, &t(&[1.0]), 0.1).unwrap();
    assert!(close(vals(&gain)[0] as f64, 0.75, 1e-6));
    // Weight: decayed. d = 1 + 0.1 = 1.1, p = 1 - 0.11 = 0.89.
    sgd.update(1, &weight, true, &t(&[1.0]), 0.1).unwrap();
    assert!(close(vals(&weight)[0] as f64, 0.89, 1e-6));
    assert!(nfbench::model::ParamKind::ConvWeight.decays());
    assert!(nfbench::model::ParamKind::LinearWeight.decays());
    assert!(!nfbench::model::ParamKind::Gain.decays());
    assert!(!nfbench::model::ParamKind::Bias.decays());
    assert!(!nfbench::model::ParamKind::SkipGain.decays());
}

#[test]
fn schedule_warmup_and_cosine() {
    let peak = LrSchedule::peak_lr(0.1, 512);
    assert!(close(peak, 0.2, 1e-12));
    // 5 epochs of 8000 images at batch 64 = 625 steps.
    assert_eq!(LrSchedule::warmup_steps(5.0, 8000, 64), 625);
    let s = LrSchedule::new(0.2, 100, 1100);
    assert_eq!(s.at(0), 0.0);
    assert!(close(s.at(50), 0.1, 1e-12));
    // End of warm-up is the peak.
    assert!(close(s.at(100), 0.2, 1e-12));
    // Mid-cosine: half the peak.
    assert!(close(s.at(600), 0.1, 1e-12));
    // A quarter into the cosine: 0.5 * (1 + cos(pi/4)) * peak.
    let q = 0.2 * 0.5 * (1.0 + std::f64::consts::FRAC_1_SQRT_2);
    assert!(close(s.at(350), q, 1e-12));
    assert!(s.at(1100).abs() < 1e-12);
    assert!(s.at(5000).abs() < 1e-12);
}

#[test]
fn label_smoothing_matches_formula() {
    let logits =
        Tensor::from_slice(&[2.0f32, 0.0, -1.0, 0.5, 0.5, 0.5], (2, 3), &Device::Cpu).unwrap();
    let labels = Tensor::from_slice(&[0u32, 2], 2, &Device::Cpu).unwrap();
    // Hand computation in f64.
    let rows = [[2.0f64, 0.0, -1.0], [0.5, 0.5, 0.5]];
    let lab = [0usize, 2];
    let s = 0.1;
    let mut want = 0.0;
    for (r, &l) in rows.iter().zip(&lab) {
        let lse = r.iter().map(|x| x.exp()).sum::<f64>().ln();
        let logp: Vec<f64> = r.iter().map(|x| x - lse).collect();
        let q: Vec<f64> = (0..3)
            .map(|k| if k == l { 1.0 - s + s / 3.0 } else { s / 3.0 })
            .collect();
        want -= q.iter().zip(&logp).map(|(q, lp)| q * lp).sum::<f64>();
    }
    want /= 2.0;
    let got = loss::smoothed_cross_entropy(&logits, &labels, s)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(close(got as f64, want, 1e-6), "{got} vs {want}");
    // s = 0 is the plain cross-entropy.
    let plain = loss::smoothed_cross_entropy(&logits, &labels, 0.0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let lse0 = (2f64.exp() + 1.0 + (-1f64).exp()).ln();
    let want_plain = ((lse0 - 2.0) + (3f64.ln())) / 2.0;
    assert!(close(plain as f64, want_plain, 1e-6));
}

#[test]
fn loss_has_gradient() {
    let w = Var::from_tensor(
        &Tensor::from_slice(&[0.1f32, 0.2, 0.3, 0.4], (2, 2), &Device::Cpu).unwrap(),
    )
    .unwrap();
    let labels = Tensor::from_slice(&[1u32, 0], 2, &Device::Cpu).unwrap();
    let l = loss::smoothed_cross_entropy(w.as_tensor(), &labels, 0.1).unwrap();
    let grads = l.backward().unwrap();
    let g = grads
        .get(w.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    // d loss / d logits = (softmax - q) / B; each row sums to 0.
    assert!((g[0] + g[1]).abs() < 1e-6 && (g[2] + g[3]).abs() < 1e-6);
    assert!(g[1] < 0.0 && g[2] < 0.0);
}

#[test]
fn top_k_counts() {
    let logits = Tensor::from_slice(
        &[3.0f32, 1.0, 2.0, 0.0, 0.0, 5.0, 4.0, 3.0],
        (2, 4),
        &Device::Cpu,
    )
    .unwrap();
    let labels = Tensor::from_slice(&[0u32, 3], 2, &Device::Cpu).unwrap();
    let top1 = loss::top_k_correct(&logits, &labels, 1)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let top2 = loss::top_k_correct(&logits, &labels, 2)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let top3 = loss::top_k_correct(&logits, &labels, 3)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!((top1, top2, top3), (1.0, 1.0, 2.0));
}

#[test]
fn ema_follows_formula() {
    let p = var(&[0.0]);
    let mut ema = Ema::new(0.9, &[&p]).unwrap();
    p.set(&t(&[1.0])).unwrap();
    ema.update(&[&p]).unwrap();
    ema.update(&[&p]).unwrap();
    // 0 -> 0.1 -> 0.19
    let got = ema.shadows()[0].to_vec1::<f32>().unwrap()[0];
    assert!(close(got as f64, 0.19, 1e-6));
}

/// Gradients from `backward()` record the ops that made them; the momentum buffer must not keep that graph (it
/// chained every step's activations: a BatchNorm net grew ~250 MB per step).
#[test]
fn momentum_buffer_holds_no_backward_graph() {
    let cfg = SgdConfig {
        momentum: 0.9,
        nesterov: true,
        weight_decay: 0.0,
    };
    let mut sgd = Sgd::new(1, cfg);
    let p = var(&[1.0, -2.0, 0.5]);
    let x = t(&[0.3, 0.1, -0.7]);
    for _ in 0..3 {
        // A gradient that depends on the parameter itself (as BatchNorm's does through its batch statistics):
        // d/dp sum(p * p * x) = 2 p x is formed from `p`, so candle records its graph.
        let loss = ((p.as_tensor() * p.as_tensor()).unwrap() * &x)
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let g = grads.get(p.as_tensor()).unwrap().clone();
        assert!(g.track_op(), "premise: candle's gradient carries its graph");
        sgd.update(0, &p, false, &g, 0.1).unwrap();
        assert!(
            !sgd.buffer(0).unwrap().track_op(),
            "momentum buffer keeps a graph"
        );
    }
}
