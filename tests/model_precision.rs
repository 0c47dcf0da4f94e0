//! bf16 activations with f32 master weights (`run.dtype = "bf16"`), on the CPU through candle's generic ops: the
//! logits and every parameter's gradient stay f32 and agree with the f32 pass to bf16 accuracy (cosine > 0.9, or a bound
//! against the gradient scale for tensors of a few values); BatchNorm's running
//! statistics and the signal-propagation rows stay f32.

use candle_core::{DType, Device, Tensor};
use nfbench::model::{ForwardOptions, Network, Precision};
use nfbench::optim::loss;
use nfbench::preset::ModelConfig;

fn net(name: &str) -> Network {
    let cfg = ModelConfig {
        name: name.into(),
        ..Default::default()
    };
    Network::build(&cfg, 10, 3, 32, &Device::Cpu, 3).unwrap()
}

/// A fixed batch (a seeded xorshift, roughly uniform in [-1.7, 1.7)): with `randn` each run drew a new batch, and on
/// some draws a near-zero scalar gradient (a skip gain) came out with the opposite sign in bf16 (cosine -1).
fn batch() -> (Tensor, Tensor) {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let v: Vec<f32> = (0..4 * 3 * 32 * 32)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.4
        })
        .collect();
    let x = Tensor::from_vec(v, (4, 3, 32, 32), &Device::Cpu).unwrap();
    let y = Tensor::new(&[1u32, 7, 3, 0], &Device::Cpu).unwrap();
    (x, y)
}

/// A parameter's name, its gradient's dtype and the gradient as f32 host values.
type Grad = (String, DType, Vec<f32>);

/// Logits and the gradient of every parameter, as f32 host vectors.
fn pass(net: &Network, x: &Tensor, y: &Tensor) -> (Vec<f32>, Vec<Grad>) {
    let opts = ForwardOptions {
        train: true,
        spp: false,
        seed: 1,
    };
    let out = net.forward(x, &opts).unwrap();
    assert_eq!(
        out.logits.dtype(),
        DType::F32,
        "logits are f32 in every precision"
    );
    let l = loss::smoothed_cross_entropy(&out.logits, y, 0.1).unwrap();
    let grads = l.backward().unwrap();
    let g = net
        .params()
        .iter()
        .map(|p| {
            let g = grads
                .get(p.var.as_tensor())
                .unwrap_or_else(|| panic!("{} has no gradient", p.name));
            (
                p.name.clone(),
                g.dtype(),
                g.to_dtype(DType::F32)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            )
        })
        .collect();
    (out.logits.flatten_all().unwrap().to_vec1().unwrap(), g)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 && nb == 0.0 {
        1.0
    } else {
        dot / (na * nb)
    }
}

fn compare(name: &str) {
    let (x, y) = batch();
    let mut n = net(name);
    let (logits32, grads32) = pass(&n, &x, &y);
    n.set_precision(Precision::Bf16);
    assert_eq!(n.precision(), Precision::Bf16);
    let (logits16, grads16) = pass(&n, &x, &y);
    let scale = logits32
        .iter()
        .map(|v| v.abs())
        .fold(0f32, f32::max)
        .max(1e-3);
    for (a, b) in logits32.iter().zip(&logits16) {
        assert!(
            (a - b).abs() <= 0.05 * scale + 1e-3,
            "{name}: logits {a} vs {b}"
        );
    }
    // The largest gradient element of the whole network: the scale for parameters too small for a cosine.
    let g_max = grads32
        .iter()
        .flat_map(|(_, _, g)| g.iter().map(|v| v.abs()))
        .fold(0f32, f32::max);
    for ((pname, dt, g32), (_, dt16, g16)) in grads32.iter().zip(&grads16) {
        assert_eq!(*dt, DType::F32);
        assert_eq!(
            *dt16,
            DType::F32,
            "{name}: {pname}'s gradient must be f32 (master weights)"
        );
        if g32.len() < 16 {
            // A scalar (skip gain) or a handful of values: their direction says little when they are near zero,
            // which bf16 noise can flip; bound the difference against the network's gradient scale instead.
            let d = g32
                .iter()
                .zip(g16)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                d <= 0.05 * g_max,
                "{name}: {pname} gradient off by {d} (largest gradient {g_max})"
            );
            continue;
        }
        let c = cosine(g32, g16);
        // bf16 keeps 8 bits of mantissa; a BatchNorm scale gradient sums nearly cancelling products over a batch
        // of 4, so 0.9.
        assert!(c > 0.9, "{name}: {pname} gradient cosine {c}");
    }
}

#[test]
fn nf_net_in_bf16_matches_f32() {
    compare("nf_resnet8_cifar");
}

#[test]
fn bn_net_in_bf16_matches_f32_and_keeps_f32_running_stats() {
    compare("bn_resnet8_cifar");
    let mut n = net("bn_resnet8_cifar");
    n.set_precision(Precision::Bf16);
    let (x, _) = batch();
    let opts = ForwardOptions {
        train: true,
        spp: false,
        seed: 0,
    };
    n.forward(&x, &opts).unwrap();
    for (name, t) in n.buffers() {
        assert_eq!(t.dtype(), DType::F32, "{name}");
    }
}

#[test]
fn spp_rows_are_f32_in_bf16() {
    let mut n = net("nf_resnet8_cifar");
    n.set_precision(Precision::Bf16);
    let (x, _) = batch();
    let opts = ForwardOptions {
        train: false,
        spp: true,
        seed: 0,
    };
    let spp = n.forward(&x, &opts).unwrap().spp.unwrap();
    assert_eq!(spp.dtype(), DType::F32);
    assert_eq!(spp.dims(), &[n.num_blocks(), 3]);
}

#[test]
fn precision_names_round_trip() {
    for p in [Precision::F32, Precision::Bf16] {
        assert_eq!(Precision::parse(p.name()), Some(p));
    }
    assert_eq!(Precision::parse("fp16"), None);
    assert_eq!(Precision::default(), Precision::F32);
}
