//! The zoo: parameter counts against the reference, the build/forward contract, determinism, BatchNorm modes,
//! buffers, live alpha, errors.

use candle_core::{DType, Device, Tensor};
use nfbench::model::layers::{normal_vec, param_rng};
use nfbench::model::zoo;
use nfbench::model::{
    ForwardOptions, ModelError, NetPlan, Network, ParamKind, CLASSIFIER_BIAS, CLASSIFIER_WEIGHT,
};
use nfbench::preset::schema::ModelConfig;
use std::collections::HashSet;

fn cfg(name: &str) -> ModelConfig {
    ModelConfig {
        name: name.into(),
        ..Default::default()
    }
}

fn gaussian(shape: (usize, usize, usize, usize), seed: u64) -> Tensor {
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    Tensor::from_vec(
        normal_vec(&mut param_rng(seed, "input"), n, 1.0, false),
        shape,
        &Device::Cpu,
    )
    .unwrap()
}

fn count(name: &str, classes: usize) -> usize {
    NetPlan::new(&cfg(name), classes, 3, 0)
        .unwrap()
        .param_count()
}

/// DeepMind's NFNet-F0..F7 at 1000 classes (the paper: F0 71.5M, F1 132.6M, ..., F6 438.4M), counted from the
/// reference's module shapes (nfnets/nfnet.py + base.py: WSConv2D always has gain and bias, SE hidden = C/2,
/// one skip_gain per block, final conv to 3072 channels, linear 3072 -> 1000).
#[test]
fn nfnet_parameter_counts_equal_the_reference() {
    let reference = [
        ("nfnet_f0", 71_489_284),
        ("nfnet_f1", 132_634_256),
        ("nfnet_f2", 193_779_228),
        ("nfnet_f3", 254_924_200),
        ("nfnet_f4", 316_069_172),
        ("nfnet_f5", 377_214_144),
        ("nfnet_f6", 438_359_116),
        ("nfnet_f7", 499_504_088),
    ];
    for (name, expected) in reference {
        assert_eq!(count(name, 1000), expected, "{name}");
    }
}

/// NF-ResNet-50: DeepMind's tree (WS gain + bias on every conv, the stem's included; one skip_gain per block) gives
/// 25,557,048; the BatchNorm ResNet-50 / timm nf_resnet50 figure 25,557,032 differs by the 16 SkipInit scalars.
#[test]
fn nf_resnet50_count_is_the_reference_tree() {
    assert_eq!(count("nf_resnet50", 1000), 25_557_048);
    let plan = NetPlan::new(&cfg("nf_resnet50"), 1000, 3, 0).unwrap();
    assert_eq!(plan.blocks.len(), 16);
    assert_eq!(count("nf_resnet50", 1000) - plan.blocks.len(), 25_557_032);
}

#[test]
fn nfnet_f0_flops_match_the_paper_at_test_resolution() {
    // The paper: 12.38 GFLOPs (multiply-accumulates) at 256 px.
    let flops = NetPlan::new(&cfg("nfnet_f0"), 1000, 3, 256)
        .unwrap()
        .flops();
    assert!((flops as f64 / 1e9 - 12.38).abs() < 0.05, "{flops}");
}

#[test]
fn the_built_network_has_exactly_the_planned_parameters() {
    for name in [
        "nf_resnet_cifar",
        "bn_resnet_cifar",
        "plain_resnet_cifar",
        "nfnet_cifar",
    ] {
        let net = Network::build(&cfg(name), 10, 3, 32, &Device::Cpu, 0).unwrap();
        let scalars: usize = net.params().iter().map(|p| p.var.elem_count()).sum();
        assert_eq!(scalars, net.info().params, "{name}");
        let names: HashSet<_> = net.params().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names.len(),
            net.params().len(),
            "{name}: duplicate parameter names"
        );
        for p in net.params() {
            let leaf = p.name.rsplit('.').next().unwrap();
            let expected_leaf = match p.kind {
                ParamKind::ConvWeight | ParamKind::LinearWeight => "w",
                ParamKind::Gain => {
                    if leaf == "scale" {
                        "scale"
                    } else {
                        "gain"
                    }
                }
                ParamKind::Bias => {
                    if leaf == "offset" {
                        "offset"
                    } else {
                        "b"
                    }
                }
                ParamKind::SkipGain => "skip_gain",
            };
            assert_eq!(leaf, expected_leaf, "{name}: {} is {:?}", p.name, p.kind);
        }
        let w = net
            .params()
            .iter()
            .find(|p| p.name == CLASSIFIER_WEIGHT)
            .expect("classifier weight");
        assert_eq!(w.kind, ParamKind::LinearWeight);
        assert_eq!(w.var.dims()[0], 10);
        assert!(net.params().iter().any(|p| p.name == CLASSIFIER_BIAS));
    }
}

#[test]
fn every_architecture_plans_and_names_are_unique() {
    let names = zoo::names();
    assert_eq!(names.iter().collect::<HashSet<_>>().len(), names.len());
    for required in [
        "nf_resnet26",
        "nf_resnet50",
        "nf_resnet101",
        "nf_resnet152",
        "nfnet_f0",
        "nfnet_f7",
        "nf_resnet_cifar",
        "bn_resnet50",
        "plain_resnet50",
        "bn_resnet_cifar",
        "plain_resnet_cifar",
    ] {
        assert!(names.iter().any(|n| n == required), "{required} missing");
    }
    for name in &names {
        let plan = NetPlan::new(&cfg(name), 7, 1, 0).unwrap();
        assert!(plan.param_count() > 0 && plan.flops() > 0, "{name}");
    }
}

#[test]
fn same_seed_same_network_different_seed_different_network() {
    let a = Network::build(&cfg("nf_resnet_cifar"), 10, 3, 32, &Device::Cpu, 42).unwrap();
    let b = Network::build(&cfg("nf_resnet_cifar"), 10, 3, 32, &Device::Cpu, 42).unwrap();
    let c = Network::build(&cfg("nf_resnet_cifar"), 10, 3, 32, &Device::Cpu, 43).unwrap();
    let flat = |n: &Network, i: usize| {
        n.params()[i]
            .var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    for i in 0..a.params().len() {
        assert_eq!(flat(&a, i), flat(&b, i), "{}", a.params()[i].name);
    }
    assert_ne!(flat(&a, 0), flat(&c, 0));
}

#[test]
fn forward_gives_logits_and_spp_and_gradients_reach_every_parameter() {
    for name in [
        "nf_resnet_cifar",
        "bn_resnet_cifar",
        "plain_resnet_cifar",
        "nfnet_cifar",
    ] {
        let c = ModelConfig {
            skip_gain_init: 1.0,
            stochastic_depth: 0.2,
            ..cfg(name)
        };
        let net = Network::build(&c, 10, 3, 16, &Device::Cpu, 1).unwrap();
        let x = gaussian((4, 3, 16, 16), 1);
        let out = net
            .forward(
                &x,
                &ForwardOptions {
                    train: true,
                    spp: true,
                    seed: 3,
                },
            )
            .unwrap();
        assert_eq!(out.logits.dims(), [4, 10]);
        assert_eq!(out.spp.as_ref().unwrap().dims(), [net.num_blocks(), 3]);
        let labels = Tensor::new(&[0u32, 1, 2, 3], &Device::Cpu).unwrap();
        let loss = candle_nn::loss::cross_entropy(&out.logits, &labels).unwrap();
        let grads = loss.backward().unwrap();
        for p in net.params() {
            assert!(
                grads.get(&p.var).is_some(),
                "{name}: no gradient for {}",
                p.name
            );
        }
        let eval = net.forward(&x, &ForwardOptions::default()).unwrap();
        assert!(eval.spp.is_none());
    }
}

#[test]
fn stochastic_depth_and_dropout_masks_are_reproducible_from_the_seed() {
    let c = ModelConfig {
        skip_gain_init: 1.0,
        stochastic_depth: 0.5,
        dropout: Some(0.5),
        ..cfg("nf_resnet_cifar")
    };
    let net = Network::build(&c, 10, 3, 8, &Device::Cpu, 1).unwrap();
    let x = gaussian((8, 3, 8, 8), 2);
    let run = |seed| {
        let o = net
            .forward(
                &x,
                &ForwardOptions {
                    train: true,
                    spp: false,
                    seed,
                },
            )
            .unwrap();
        o.logits.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
    // Eval mode ignores both.
    let e1 = net
        .forward(
            &x,
            &ForwardOptions {
                train: false,
                spp: false,
                seed: 1,
            },
        )
        .unwrap();
    let e2 = net
        .forward(
            &x,
            &ForwardOptions {
                train: false,
                spp: false,
                seed: 2,
            },
        )
        .unwrap();
    let d = (e1.logits - e2.logits)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(d, 0.0);
}

#[test]
fn skip_gain_zero_makes_each_nf_block_the_identity_on_its_stream() {
    let net = Network::build(&cfg("nf_resnet_cifar"), 10, 3, 8, &Device::Cpu, 1).unwrap();
    let out = net
        .forward(
            &gaussian((4, 3, 8, 8), 3),
            &ForwardOptions {
                spp: true,
                ..Default::default()
            },
        )
        .unwrap();
    let rows = out.spp.unwrap().to_vec2::<f32>().unwrap();
    // Non-transition blocks of a stage leave the stream unchanged.
    for (i, info) in net.blocks().iter().enumerate() {
        if info.index > 0 {
            assert!(
                (rows[i][1] - rows[i - 1][1]).abs() < 1e-5,
                "{}: {:?} vs {:?}",
                info.name,
                rows[i],
                rows[i - 1]
            );
        }
    }
}

#[test]
fn set_alpha_recomputes_every_beta_by_the_bookkeeping() {
    let mut net = Network::build(&cfg("nf_resnet_cifar"), 10, 3, 32, &Device::Cpu, 0).unwrap();
    for alpha in [0.2, 0.5] {
        net.try_set_alpha(alpha).unwrap();
        assert_eq!(net.alpha(), alpha);
        let mut expected_var: f64 = 1.0;
        for b in net.blocks() {
            assert!(
                (b.beta - 1.0 / expected_var.sqrt()).abs() < 1e-12,
                "{} at alpha {alpha}",
                b.name
            );
            if b.index == 0 {
                expected_var = 1.0;
            }
            expected_var += alpha * alpha;
            assert!((b.predicted_var - expected_var).abs() < 1e-12);
            assert_eq!(b.alpha, alpha);
        }
        // The block after a transition sees 1 + alpha^2.
        let second = &net.blocks()[1];
        assert!((second.beta - 1.0 / (1.0 + alpha * alpha).sqrt()).abs() < 1e-12);
    }
    assert!(net.try_set_alpha(0.0).is_err());
    assert!(net.try_set_alpha(f64::NAN).is_err());
    assert_eq!(net.alpha(), 0.5);
}

#[test]
fn set_alpha_changes_the_forward() {
    let c = ModelConfig {
        skip_gain_init: 1.0,
        ..cfg("nf_resnet_cifar")
    };
    let mut net = Network::build(&c, 10, 3, 8, &Device::Cpu, 0).unwrap();
    let x = gaussian((2, 3, 8, 8), 4);
    let a = net.forward(&x, &ForwardOptions::default()).unwrap().logits;
    net.try_set_alpha(0.9).unwrap();
    let b = net.forward(&x, &ForwardOptions::default()).unwrap().logits;
    let d = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(d > 0.0);
}

#[test]
fn batchnorm_train_mode_updates_running_statistics_and_eval_uses_them() {
    let mut net = Network::build(&cfg("bn_resnet_cifar"), 10, 3, 8, &Device::Cpu, 0).unwrap();
    let x = (gaussian((8, 3, 8, 8), 5) * 3.0)
        .unwrap()
        .affine(1.0, 2.0)
        .unwrap();
    let initial = net.buffers();
    assert!(!initial.is_empty());
    assert!(initial
        .iter()
        .all(|(n, _)| n.ends_with(".mean") || n.ends_with(".var")));
    let eval_before = net.forward(&x, &ForwardOptions::default()).unwrap().logits;
    let eval_again = net.forward(&x, &ForwardOptions::default()).unwrap().logits;
    assert_eq!(
        eval_before.to_vec2::<f32>().unwrap(),
        eval_again.to_vec2::<f32>().unwrap(),
        "eval must not update"
    );
    net.forward(
        &x,
        &ForwardOptions {
            train: true,
            ..Default::default()
        },
    )
    .unwrap();
    let after = net.buffers();
    // The first block's pre-activation BN saw the stem's output: its running mean moved by momentum * batch mean.
    let (name, mean) = &after.iter().find(|(n, _)| n == "s1.b0.bn0.mean").unwrap();
    assert_eq!(name, "s1.b0.bn0.mean");
    assert!(
        mean.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 0.0
    );
    let eval_after = net.forward(&x, &ForwardOptions::default()).unwrap().logits;
    let d = (&eval_after - &eval_before)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(d > 0.0, "eval must use the updated running statistics");

    // Restoring the initial buffers restores the initial eval output.
    net.load_buffers(&initial).unwrap();
    let restored = net.forward(&x, &ForwardOptions::default()).unwrap().logits;
    assert_eq!(
        restored.to_vec2::<f32>().unwrap(),
        eval_before.to_vec2::<f32>().unwrap()
    );
}

#[test]
fn batchnorm_train_mode_normalises_with_batch_statistics() {
    use nfbench::model::layers::{channel_moments, BatchNorm};
    use nfbench::model::plan::BnPlan;
    let mut params = Vec::new();
    let bn = BatchNorm::new(
        &BnPlan {
            name: "bn".into(),
            ch: 3,
        },
        &Device::Cpu,
        &mut params,
    )
    .unwrap();
    let x = (gaussian((6, 3, 5, 5), 6) * 4.0)
        .unwrap()
        .affine(1.0, -2.0)
        .unwrap();
    let y = bn.forward(&x, true).unwrap();
    let (mean, var) = channel_moments(&y).unwrap();
    for (m, v) in mean
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .zip(var.to_vec1::<f32>().unwrap())
    {
        assert!(m.abs() < 1e-5 && (v - 1.0).abs() < 1e-3, "mean {m} var {v}");
    }
    // Running statistics moved by momentum 0.1 towards the batch's (population) statistics.
    let (bm, bv) = channel_moments(&x).unwrap();
    let bufs = bn.buffers();
    let rm = bufs[0].1.to_vec1::<f32>().unwrap();
    let rv = bufs[1].1.to_vec1::<f32>().unwrap();
    for c in 0..3 {
        let (bm, bv) = (
            bm.to_vec1::<f32>().unwrap()[c],
            bv.to_vec1::<f32>().unwrap()[c],
        );
        assert!((rm[c] - 0.1 * bm).abs() < 1e-5);
        assert!((rv[c] - (0.9 + 0.1 * bv)).abs() < 1e-4);
    }
    assert_eq!(params.len(), 2);
}

#[test]
fn load_buffers_rejects_foreign_or_misshapen_state() {
    let mut net = Network::build(&cfg("bn_resnet_cifar"), 10, 3, 8, &Device::Cpu, 0).unwrap();
    let mut bufs = net.buffers();
    bufs.push((
        "s9.b9.bn0.mean".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    ));
    let err = net.load_buffers(&bufs).unwrap_err().to_string();
    assert!(err.contains("s9.b9.bn0.mean"), "{err}");
    let mut bufs = net.buffers();
    bufs[0].1 = Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap();
    let err = net.load_buffers(&bufs).unwrap_err().to_string();
    assert!(err.contains(&bufs[0].0) && err.contains("shape"), "{err}");
    let bufs = net.buffers()[1..].to_vec();
    assert!(net
        .load_buffers(&bufs)
        .unwrap_err()
        .to_string()
        .contains("missing"));
    // NF nets have no buffers.
    let nf = Network::build(&cfg("nf_resnet_cifar"), 10, 3, 8, &Device::Cpu, 0).unwrap();
    assert!(nf.buffers().is_empty());
}

#[test]
fn bad_configs_are_errors_that_name_the_field() {
    let dev = Device::Cpu;
    let err = |c: ModelConfig, classes: usize| match Network::build(&c, classes, 3, 32, &dev, 0) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{c:?} should fail"),
    };
    assert!(err(cfg("nf_resnet51"), 10).contains("model.name"));
    assert!(
        err(cfg("nf_resnet51"), 10).contains("nf_resnet50"),
        "lists the known names"
    );
    assert!(err(
        ModelConfig {
            alpha: 0.0,
            ..cfg("nf_resnet_cifar")
        },
        10
    )
    .contains("model.alpha"));
    assert!(err(
        ModelConfig {
            alpha: f64::NAN,
            ..cfg("nf_resnet_cifar")
        },
        10
    )
    .contains("model.alpha"));
    assert!(err(
        ModelConfig {
            activation: Some("swish".into()),
            ..cfg("nf_resnet_cifar")
        },
        10
    )
    .contains("model.activation"));
    assert!(err(
        ModelConfig {
            stochastic_depth: 1.0,
            ..cfg("nf_resnet_cifar")
        },
        10
    )
    .contains("model.stochastic_depth"));
    assert!(err(
        ModelConfig {
            dropout: Some(1.5),
            ..cfg("nf_resnet_cifar")
        },
        10
    )
    .contains("model.dropout"));
    assert!(err(
        ModelConfig {
            skip_gain_init: f64::INFINITY,
            ..cfg("nf_resnet_cifar")
        },
        10
    )
    .contains("model.skip_gain_init"));
    assert!(err(cfg("nf_resnet_cifar"), 0).contains("num_classes"));
    assert!(matches!(
        Network::build(&cfg("nope"), 10, 3, 32, &dev, 0),
        Err(ModelError::UnknownArchitecture { .. })
    ));
}

#[test]
fn any_class_count_channel_count_and_resolution() {
    let net = Network::build(&cfg("nf_resnet_cifar"), 3, 1, 0, &Device::Cpu, 0).unwrap();
    for size in [5, 9, 28] {
        let out = net
            .forward(&gaussian((2, 1, size, size), 7), &ForwardOptions::default())
            .unwrap();
        assert_eq!(out.logits.dims(), [2, 3]);
    }
    // An ImageNet NFNet on a tiny odd input (avg-pool shortcuts at odd sizes), forward only.
    let c = ModelConfig {
        name: "nfnet_f0".into(),
        ..Default::default()
    };
    let plan = NetPlan::new(&c, 5, 3, 33).unwrap();
    assert_eq!(plan.resolution, 33);
}

#[test]
fn network_can_move_to_the_trainer_thread() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Network>();
}
