//! Signal propagation at init (skip gain 1, alpha 0.2, unit-Gaussian input) against the predicted variance.

use candle_core::{Device, Tensor};
use nfbench::model::layers::{normal_vec, param_rng};
use nfbench::model::{BlockInfo, ForwardOptions, Network};
use nfbench::preset::schema::ModelConfig;

/// Per block (avg_sq_mean, avg_var, res_avg_var) and the block table, as `nfbench spp` measures them.
fn measure(name: &str, batch: usize, resolution: usize) -> (Vec<[f32; 3]>, Vec<BlockInfo>) {
    let cfg = ModelConfig {
        name: name.into(),
        alpha: 0.2,
        skip_gain_init: 1.0,
        ..Default::default()
    };
    let net = Network::build(&cfg, 10, 3, resolution, &Device::Cpu, 0).unwrap();
    let n = batch * 3 * resolution * resolution;
    let x = Tensor::from_vec(
        normal_vec(&mut param_rng(1, "spp-input"), n, 1.0, false),
        (batch, 3, resolution, resolution),
        &Device::Cpu,
    )
    .unwrap();
    // Train mode so BatchNorm uses batch statistics (no stochastic depth is configured).
    let out = net
        .forward(
            &x,
            &ForwardOptions {
                train: true,
                spp: true,
                seed: 0,
            },
        )
        .unwrap();
    let rows = out.spp.unwrap().to_vec2::<f32>().unwrap();
    (
        rows.into_iter().map(|r| [r[0], r[1], r[2]]).collect(),
        net.blocks(),
    )
}

#[test]
fn small_nf_net_matches_the_predicted_variance_at_every_block() {
    let (rows, blocks) = measure("nf_resnet_cifar", 32, 32);
    for (row, b) in rows.iter().zip(&blocks) {
        let rel = (f64::from(row[1]) - b.predicted_var).abs() / b.predicted_var;
        assert!(
            rel < 0.05,
            "{}: avg_var {} predicted {} ({:.1}%)",
            b.name,
            row[1],
            b.predicted_var,
            rel * 100.0
        );
    }
}

#[test]
fn nf_resnet50_follows_the_staircase_within_each_stage() {
    let (rows, blocks) = measure("nf_resnet50", 8, 64);
    let mut transition = 0;
    for (i, b) in blocks.iter().enumerate() {
        if b.index == 0 {
            transition = i;
        }
        let measured = f64::from(rows[i][1]) / f64::from(rows[transition][1]);
        let predicted = b.predicted_var / blocks[transition].predicted_var;
        let rel = (measured - predicted).abs() / predicted;
        assert!(
            rel < 0.05,
            "{}: relative avg_var {measured:.4}, predicted {predicted:.4}",
            b.name
        );
    }
}

#[test]
fn plain_resnet_variance_roughly_doubles_per_block() {
    let (rows, blocks) = measure("plain_resnet_cifar", 32, 32);
    for i in 1..rows.len() {
        let ratio = rows[i][1] / rows[i - 1][1];
        // He init preserves the second moment; the ReLU's mean takes a share of it: a little under 2.
        assert!(
            (1.4..2.3).contains(&ratio),
            "{}: avg_var ratio {ratio}",
            blocks[i].name
        );
        assert!((blocks[i].predicted_var / blocks[i - 1].predicted_var - 2.0).abs() < 1e-12);
    }
}

#[test]
fn bn_resnet_variance_grows_linearly_within_each_stage() {
    let (rows, blocks) = measure("bn_resnet_cifar", 32, 32);
    for i in 1..rows.len() {
        if blocks[i].index == 0 {
            // A projection shortcut restarts the stream from a normalised input: 1 + 1.
            assert!(
                (f64::from(rows[i][1]) - 2.0).abs() < 0.4,
                "{}: {}",
                blocks[i].name,
                rows[i][1]
            );
            continue;
        }
        let step = rows[i][1] - rows[i - 1][1];
        assert!(
            (0.7..1.3).contains(&step),
            "{}: avg_var step {step}",
            blocks[i].name
        );
    }
}
