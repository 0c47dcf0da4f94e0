//! `nfbench spp`: signal propagation at init.

use crate::model::layers::{normal_vec, param_rng};
use crate::model::{ForwardOptions, Network};
use crate::preset::schema::ModelConfig;
use crate::record::report::{write_spp_comparison, SppSeries};
use anyhow::Context;
use candle_core::{Device, Tensor};
use clap::Args;
use serde::Serialize;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct SppArgs {
    /// Architecture name.
    #[arg(long, required_unless_present = "compare", default_value = "")]
    pub model: String,
    /// Compare architectures in one picture, e.g. `bn_resnet50,nf_resnet50,plain_resnet50` (needs --out).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "A,B,...",
        conflicts_with = "json"
    )]
    pub compare: Vec<String>,
    /// The comparison's PNG (average channel variance and squared mean per block, log scale).
    #[arg(long, requires = "compare")]
    pub out: Option<std::path::PathBuf>,
    /// Batch size of the unit-Gaussian input.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Input resolution in pixels (default: the architecture's training resolution).
    #[arg(long)]
    pub resolution: Option<usize>,
    /// SkipInit gain at init (1 shows the alpha^2 staircase).
    #[arg(long, default_value_t = 1.0)]
    pub skip_gain: f64,
    /// Residual scale alpha (normaliser-free nets).
    #[arg(long, default_value_t = 0.2)]
    pub alpha: f64,
    /// Seed for the weights and the input.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// One block's measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SppRow {
    pub name: String,
    pub stage: usize,
    pub index: usize,
    pub predicted_var: f64,
    pub avg_var: f64,
    pub avg_sq_mean: f64,
    pub res_avg_var: f64,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SppReport {
    pub model: String,
    pub batch: usize,
    pub resolution: usize,
    pub alpha: f64,
    pub skip_gain: f64,
    pub seed: u64,
    pub blocks: Vec<SppRow>,
}

pub fn run(args: SppArgs) -> anyhow::Result<ExitCode> {
    if !args.compare.is_empty() {
        return compare(&args);
    }
    let report = measure(&args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// `--compare A,B,C --out fig.png`: each network measured with the same input, batch, alpha and seed; the table of
/// each printed, and one picture of all.
fn compare(args: &SppArgs) -> anyhow::Result<ExitCode> {
    let Some(out) = &args.out else {
        anyhow::bail!("--compare needs --out FILE.png");
    };
    let mut series = Vec::new();
    for name in &args.compare {
        let report = measure(&SppArgs {
            model: name.clone(),
            compare: Vec::new(),
            out: None,
            ..*args
        })?;
        print!("{}", render(&report));
        series.push(SppSeries {
            label: report.model.clone(),
            blocks: report
                .blocks
                .iter()
                .map(|b| (b.name.clone(), b.avg_var, b.avg_sq_mean))
                .collect(),
        });
    }
    let title = format!(
        "signal propagation at init: unit-Gaussian input, batch {}, alpha {}, skip gain {}",
        args.batch, args.alpha, args.skip_gain
    );
    write_spp_comparison(out, &title, &series)?;
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// Build the network at init, run one forward pass on unit-Gaussian input, copy the statistics once.
pub fn measure(args: &SppArgs) -> anyhow::Result<SppReport> {
    anyhow::ensure!(
        args.batch >= 1,
        "--batch must be at least 1 (got {})",
        args.batch
    );
    anyhow::ensure!(
        args.skip_gain.is_finite(),
        "--skip-gain must be finite (got {})",
        args.skip_gain
    );
    if let Some(r) = args.resolution {
        anyhow::ensure!(r >= 1, "--resolution must be at least 1 pixel (got {r})");
    }
    let cfg = ModelConfig {
        name: args.model.clone(),
        skip_gain_init: args.skip_gain,
        alpha: args.alpha,
        ..Default::default()
    };
    let device = Device::Cpu;
    let resolution = args.resolution.unwrap_or(0);
    let net = Network::build(&cfg, 1000, 3, resolution, &device, args.seed)
        .with_context(|| format!("building {}", args.model))?;
    let resolution = net.plan().resolution;
    let n = args.batch * 3 * resolution * resolution;
    let input = normal_vec(&mut param_rng(args.seed, "spp.input"), n, 1.0, false);
    let x = Tensor::from_vec(input, (args.batch, 3, resolution, resolution), &device)?;
    // Train mode: BatchNorm normalises with the batch's statistics, as in training (no stochastic depth is
    // configured, so the NF and plain nets are deterministic either way).
    let opts = ForwardOptions {
        train: true,
        spp: true,
        seed: args.seed,
    };
    let out = net.forward(&x, &opts)?;
    let stats = match out.spp {
        Some(t) => t.to_vec2::<f32>()?,
        None => anyhow::bail!("the forward pass returned no statistics"),
    };
    let blocks = net
        .blocks()
        .into_iter()
        .zip(stats)
        .map(|(b, row)| SppRow {
            name: b.name,
            stage: b.stage,
            index: b.index,
            predicted_var: b.predicted_var,
            avg_sq_mean: f64::from(row[0]),
            avg_var: f64::from(row[1]),
            res_avg_var: f64::from(row[2]),
        })
        .collect();
    Ok(SppReport {
        model: net.name().to_string(),
        batch: args.batch,
        resolution,
        alpha: net.alpha(),
        skip_gain: args.skip_gain,
        seed: args.seed,
        blocks,
    })
}

/// The text table, with sparklines of the measured and predicted avg_var on one shared scale.
pub fn render(report: &SppReport) -> String {
    let mut s = format!(
        "{}: signal propagation at init, unit-Gaussian input {}x3x{}x{}, alpha {}, skip gain {}, seed {}\n",
        report.model,
        report.batch,
        report.resolution,
        report.resolution,
        report.alpha,
        report.skip_gain,
        report.seed
    );
    s += &format!(
        "{:<8} {:>5} {:>5} {:>11} {:>11} {:>8} {:>11} {:>11}\n",
        "block", "stage", "index", "pred var", "avg_var", "ratio", "avg_sq_mean", "res_avg_var"
    );
    for r in &report.blocks {
        s += &format!(
            "{:<8} {:>5} {:>5} {:>11.4} {:>11.4} {:>8.3} {:>11.4} {:>11.4}\n",
            r.name,
            r.stage,
            r.index,
            r.predicted_var,
            r.avg_var,
            r.avg_var / r.predicted_var,
            r.avg_sq_mean,
            r.res_avg_var
        );
    }
    let measured: Vec<f64> = report.blocks.iter().map(|r| r.avg_var).collect();
    let predicted: Vec<f64> = report.blocks.iter().map(|r| r.predicted_var).collect();
    let (m, p, log) = sparklines(&measured, &predicted);
    let scale = if log { "log scale" } else { "linear scale" };
    s += &format!("avg_var   {m}\npredicted {p}   ({scale}, shared)\n");
    s
}

const TICKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Two sparklines on one scale (logarithmic when the values span more than a factor of 10).
pub fn sparklines(a: &[f64], b: &[f64]) -> (String, String, bool) {
    let all: Vec<f64> = a
        .iter()
        .chain(b)
        .copied()
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log = lo.is_finite() && hi / lo > 10.0;
    let f = |v: f64| if log { v.ln() } else { v };
    let line = |xs: &[f64]| -> String {
        xs.iter()
            .map(|&v| {
                if !(v.is_finite() && v > 0.0 && lo.is_finite()) {
                    return ' ';
                }
                let span = f(hi) - f(lo);
                let t = if span > 0.0 {
                    (f(v) - f(lo)) / span
                } else {
                    0.5
                };
                TICKS[((t * 7.0).round() as usize).min(7)]
            })
            .collect()
    };
    (line(a), line(b), log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_share_one_scale() {
        let (a, b, log) = sparklines(&[1.0, 2.0, 3.0], &[1.0, 3.0, 3.0]);
        assert!(!log);
        assert_eq!(a, "▁▅█");
        assert_eq!(b, "▁██");
        let (_, _, log) = sparklines(&[1.0, 1000.0], &[1.0, 1.0]);
        assert!(log);
        let (a, _, _) = sparklines(&[f64::NAN, 1.0], &[]);
        assert_eq!(a.chars().next(), Some(' '));
    }
}
