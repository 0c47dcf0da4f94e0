//! The soft-target losses against their formulas: DeepMind's `_loss_fn` (nfnets/experiment.py) builds
//! `y = r * onehot(a) + (1 - r) * onehot(b)`, smooths it to `(1 - s) * y + s / K`, and sums `-y * log_softmax`
//! over classes, averaged over the batch; the sigmoid option is the per-class binary cross-entropy.

use candle_core::{Device, Tensor, Var};
use nfbench::optim::loss::{self, LossKind, Mix, Targets};

const ROWS: [[f64; 4]; 3] = [
    [2.0, -1.0, 0.5, 0.0],
    [-0.3, 0.7, 3.0, -2.0],
    [0.0, 0.0, 0.0, 1.0],
];
const A: [u32; 3] = [0, 2, 3];
const B: [u32; 3] = [1, 2, 0];
const R: [f32; 3] = [0.7, 0.25, 1.0];

fn tensors() -> (Tensor, Tensor, Tensor, Tensor) {
    let flat: Vec<f32> = ROWS.iter().flatten().map(|&v| v as f32).collect();
    let d = &Device::Cpu;
    (
        Tensor::from_vec(flat, (3, 4), d).unwrap(),
        Tensor::from_slice(&A, 3, d).unwrap(),
        Tensor::from_slice(&B, 3, d).unwrap(),
        Tensor::from_slice(&R, 3, d).unwrap(),
    )
}

/// DeepMind's target row for image `i`.
fn target(i: usize, s: f64, mixed: bool) -> Vec<f64> {
    let r = if mixed { R[i] as f64 } else { 1.0 };
    (0..4)
        .map(|k| {
            let y = r * f64::from(k == A[i] as usize) + (1.0 - r) * f64::from(k == B[i] as usize);
            (1.0 - s) * y + s / 4.0
        })
        .collect()
}

fn want_softmax(s: f64, mixed: bool) -> f64 {
    let mut total = 0.0;
    for (i, row) in ROWS.iter().enumerate() {
        let lse = row.iter().map(|x| x.exp()).sum::<f64>().ln();
        let y = target(i, s, mixed);
        total -= row.iter().zip(&y).map(|(z, y)| y * (z - lse)).sum::<f64>();
    }
    total / 3.0
}

fn want_sigmoid(s: f64, mixed: bool) -> f64 {
    let mut total = 0.0;
    for (i, row) in ROWS.iter().enumerate() {
        let y = target(i, s, mixed);
        for (z, y) in row.iter().zip(&y) {
            let p = 1.0 / (1.0 + (-z).exp());
            total -= y * p.ln() + (1.0 - y) * (1.0 - p).ln();
        }
    }
    total / 3.0
}

fn got(kind: LossKind, s: f64, mixed: bool) -> f64 {
    let (logits, a, b, r) = tensors();
    let mix = mixed.then_some(Mix {
        labels_b: &b,
        weight_a: &r,
    });
    let targets = Targets { labels: &a, mix };
    loss::loss(kind, &logits, targets, s)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64
}

#[test]
fn softmax_cross_entropy_over_mixed_smoothed_targets_is_deepminds_sum() {
    for s in [0.0, 0.1, 0.3] {
        for mixed in [false, true] {
            let (g, w) = (
                got(LossKind::SoftmaxCrossEntropy, s, mixed),
                want_softmax(s, mixed),
            );
            assert!((g - w).abs() < 1e-5, "s={s} mixed={mixed}: {g} vs {w}");
        }
    }
    // Mixing changes the loss (the mix is read), and hard targets equal the old smoothed loss.
    assert!((want_softmax(0.1, true) - want_softmax(0.1, false)).abs() > 0.1);
    let (logits, a, _, _) = tensors();
    let old = loss::smoothed_cross_entropy(&logits, &a, 0.1).unwrap();
    let old = old.to_scalar::<f32>().unwrap() as f64;
    assert!((old - want_softmax(0.1, false)).abs() < 1e-5);
}

#[test]
fn sigmoid_cross_entropy_is_the_per_class_binary_cross_entropy() {
    for s in [0.0, 0.1] {
        for mixed in [false, true] {
            let (g, w) = (
                got(LossKind::SigmoidCrossEntropy, s, mixed),
                want_sigmoid(s, mixed),
            );
            assert!((g - w).abs() < 1e-4, "s={s} mixed={mixed}: {g} vs {w}");
        }
    }
    // Stable for large logits (log(1 - sigmoid(100)) would be -inf computed naively).
    let d = &Device::Cpu;
    let big = Tensor::from_slice(&[100f32, -100.0], (1, 2), d).unwrap();
    let lab = Tensor::from_slice(&[1u32], 1, d).unwrap();
    let v = loss::loss(
        LossKind::SigmoidCrossEntropy,
        &big,
        Targets::hard(&lab),
        0.0,
    )
    .unwrap()
    .to_scalar::<f32>()
    .unwrap();
    assert!((v - 200.0).abs() < 1e-3, "{v}");
}

#[test]
fn dense_targets_sum_to_one_and_the_gradient_is_softmax_minus_targets() {
    let (logits, a, b, r) = tensors();
    let mix = Some(Mix {
        labels_b: &b,
        weight_a: &r,
    });
    let targets = Targets { labels: &a, mix };
    let y = loss::dense_targets(targets, 4, 0.1).unwrap();
    for (i, row) in y.to_vec2::<f32>().unwrap().iter().enumerate() {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        for (k, v) in row.iter().enumerate() {
            assert!((*v as f64 - target(i, 0.1, true)[k]).abs() < 1e-6);
        }
    }
    // d loss / d z = (softmax(z) - y) / B for the softmax cross-entropy.
    let w = Var::from_tensor(&logits).unwrap();
    let l = loss::loss(LossKind::SoftmaxCrossEntropy, w.as_tensor(), targets, 0.1).unwrap();
    let g = l
        .backward()
        .unwrap()
        .get(w.as_tensor())
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for (i, row) in ROWS.iter().enumerate() {
        let lse = row.iter().map(|x| x.exp()).sum::<f64>().ln();
        for k in 0..4 {
            let want = ((row[k] - lse).exp() - target(i, 0.1, true)[k]) / 3.0;
            assert!((g[i][k] as f64 - want).abs() < 1e-5, "{i},{k}");
        }
    }
}

#[test]
fn training_top1_counts_against_the_dominant_label() {
    let (_, a, b, r) = tensors();
    let mix = Some(Mix {
        labels_b: &b,
        weight_a: &r,
    });
    let dom = loss::dominant_labels(Targets { labels: &a, mix }).unwrap();
    // r = 0.7 -> a (0); r = 0.25 -> b (2); r = 1.0 -> a (3).
    assert_eq!(dom.to_vec1::<u32>().unwrap(), vec![0, 2, 3]);
    let r2 = Tensor::from_slice(&[0.3f32, 0.9, 0.5], 3, &Device::Cpu).unwrap();
    let mix = Some(Mix {
        labels_b: &b,
        weight_a: &r2,
    });
    let dom = loss::dominant_labels(Targets { labels: &a, mix }).unwrap();
    assert_eq!(
        dom.to_vec1::<u32>().unwrap(),
        vec![1, 2, 3],
        "a tie keeps the first label"
    );
}

#[test]
fn the_loss_kind_is_spelled_as_deepminds_which_loss() {
    #[derive(serde::Deserialize)]
    struct T {
        loss: LossKind,
    }
    let t: T = toml::from_str("loss = \"sigmoid_cross_entropy\"").unwrap();
    assert_eq!(t.loss, LossKind::SigmoidCrossEntropy);
    assert_eq!(LossKind::default().as_str(), "softmax_cross_entropy");
    assert!(toml::from_str::<T>("loss = \"softmax\"").is_err());
}
