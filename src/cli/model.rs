//! `nfbench model list|info`.

use crate::model::zoo::{self, Norm};
use crate::model::{BlockInfo, NetInfo, NetPlan};
use crate::preset::schema::ModelConfig;
use clap::Subcommand;
use serde::Serialize;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// List the architectures.
    List,
    /// Parameter count, FLOPs and the per-block table of one architecture.
    Info {
        /// Architecture name.
        name: String,
        /// Number of classes.
        #[arg(long, default_value_t = 1000)]
        classes: usize,
        /// Input resolution in pixels (default: the architecture's training resolution).
        #[arg(long)]
        resolution: Option<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: ModelCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ModelCommand::List => list(),
        ModelCommand::Info {
            name,
            classes,
            resolution,
            json,
        } => info(&name, classes, resolution.unwrap_or(0), json),
    }
}

fn family(norm: Norm) -> &'static str {
    match norm {
        Norm::NormFree => "normaliser-free",
        Norm::BatchNorm => "BatchNorm",
        Norm::Plain => "plain",
    }
}

/// Classes the listing counts parameters at: CIFAR-10 for 32 px nets, ImageNet otherwise.
fn listing_classes(resolution: usize) -> usize {
    if resolution <= 64 {
        10
    } else {
        1000
    }
}

fn list() -> anyhow::Result<ExitCode> {
    println!(
        "{:<20} {:<16} {:>12} {:>8} {:>9}  description",
        "name", "family", "params", "classes", "train px"
    );
    for arch in zoo::architectures() {
        let topo = arch.topology;
        let classes = listing_classes(topo.train_resolution);
        let cfg = ModelConfig {
            name: arch.name(),
            ..Default::default()
        };
        let plan = NetPlan::new(&cfg, classes, 3, 0)?;
        println!(
            "{:<20} {:<16} {:>12} {:>8} {:>9}  {}",
            arch.name(),
            family(arch.norm),
            group_digits(plan.param_count() as u64),
            classes,
            topo.train_resolution,
            topo.description
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct InfoJson {
    #[serde(flatten)]
    info: NetInfo,
    family: &'static str,
    test_resolution: usize,
    default_dropout: f64,
    blocks: Vec<BlockInfo>,
}

fn info(name: &str, classes: usize, resolution: usize, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = ModelConfig {
        name: name.to_string(),
        ..Default::default()
    };
    let plan = NetPlan::new(&cfg, classes, 3, resolution)?;
    let out = InfoJson {
        info: plan.info(),
        family: family(plan.arch.norm),
        test_resolution: plan.arch.topology.test_resolution,
        default_dropout: plan.dropout,
        blocks: plan.block_infos(cfg.alpha),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let i = &out.info;
    println!("{}  ({}, {})", i.name, out.family, i.activation);
    println!(
        "  parameters   {} (trainable scalars, {} classes)",
        group_digits(i.params as u64),
        i.num_classes
    );
    println!(
        "  FLOPs        {} multiply-accumulates per image at {} px ({:.2} G)",
        group_digits(i.flops),
        i.resolution,
        i.flops as f64 / 1e9
    );
    println!(
        "  resolution   train {} px, test {} px; dropout {}",
        plan.arch.topology.train_resolution, out.test_resolution, out.default_dropout
    );
    println!("  blocks       {} (alpha {})", i.num_blocks, cfg.alpha);
    println!();
    print_block_table(&out.blocks);
    Ok(ExitCode::SUCCESS)
}

fn print_block_table(blocks: &[BlockInfo]) {
    println!(
        "{:<8} {:>5} {:>5} {:>11} {:>6} {:>6} {:>8} {:>10}",
        "block", "stage", "index", "channels", "stride", "alpha", "beta", "pred var"
    );
    for b in blocks {
        println!(
            "{:<8} {:>5} {:>5} {:>11} {:>6} {:>6.3} {:>8.4} {:>10.4}",
            b.name,
            b.stage,
            b.index,
            format!("{}->{}", b.in_channels, b.out_channels),
            b.stride,
            b.alpha,
            b.beta,
            b.predicted_var
        );
    }
}

/// `12345678` -> `12,345,678`.
pub fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_grouped_by_thousands() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(71_489_284), "71,489,284");
    }
}
