//! `nfbench bench`: train-step throughput and its split (forward / backward / AGC / optimiser / statistics) on the
//! preset's model, batch and resolution, with a fixed synthetic batch so the data loader is not measured.
//!
//! `--plan-out FILE` also writes the measured network's plan as JSON; `benches/torch_reference.py` builds exactly
//! that network in PyTorch and prints the same JSON line (see `scripts/bench-vs-torch.sh`).

use crate::model::plan::{ConvPlan, NetPlan, StemOp};
use crate::model::zoo::Norm;
use crate::model::Network;
use crate::preset::{self, Preset};
use crate::train::parts::{select_device, NetworkModel};
use crate::train::source::{HostBatch, SourceInfo};
use crate::train::step::StepRunner;
use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use clap::Args;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Preset file whose model, batch and resolution are measured.
    #[arg(long, default_value = "presets/default.toml")]
    pub preset: PathBuf,
    /// Override preset fields, e.g. `--set model.name=nf_resnet26` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Timed steps (after warm-up).
    #[arg(long, default_value_t = 20)]
    pub steps: u64,
    /// Untimed warm-up steps (first-touch allocation, caches).
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the measured network's plan (JSON) here, for `benches/torch_reference.py`.
    #[arg(long, value_name = "FILE")]
    pub plan_out: Option<PathBuf>,
    #[command(flatten)]
    pub device: super::DeviceArgs,
}

/// Classes of the synthetic batch's labels (only the classifier's width depends on it).
const BENCH_CLASSES: usize = 10;
const IN_CHANNELS: usize = 3;

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let mut preset = preset::load(&args.preset)
        .with_context(|| format!("loading preset {}", args.preset.display()))?;
    preset::apply_overrides(&mut preset, &args.device.with_sets(&args.set))
        .context("applying --set / --device / --dtype")?;
    if args.steps == 0 {
        anyhow::bail!("--steps must be at least 1");
    }
    let device = select_device(preset.run.device)?;
    let net = Network::build(
        &preset.model,
        BENCH_CLASSES,
        IN_CHANNELS,
        preset.data.resolution as usize,
        &device,
        preset.run.seed,
    )
    .with_context(|| format!("building model `{}`", preset.model.name))?;
    if let Some(path) = &args.plan_out {
        let plan = plan_json(net.plan(), net.alpha(), &preset);
        std::fs::write(path, serde_json::to_string_pretty(&plan)?)
            .with_context(|| format!("writing plan to {}", path.display()))?;
    }
    let mut net = net;
    net.set_precision(preset.run.dtype);
    let report = measure(net, &device, &preset, args.warmup, args.steps)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `warmup + steps` train steps on one synthetic batch; the split is averaged over the timed steps.
fn measure(
    net: Network,
    device: &Device,
    preset: &Preset,
    warmup: u64,
    steps: u64,
) -> anyhow::Result<Value> {
    let batch_size = preset.data.batch_size;
    let resolution = net.plan().resolution;
    let name = net.name().to_string();
    let precision = net.precision();
    let params: usize = net.params().iter().map(|p| p.var.elem_count()).sum();
    let info = SourceInfo {
        num_classes: BENCH_CLASSES,
        in_channels: IN_CHANNELS,
        resolution,
        train_images: 50_000,
        val_images: 0,
    };
    let batch = HostBatch {
        images: Tensor::randn(
            0f32,
            1.0,
            (batch_size, IN_CHANNELS, resolution, resolution),
            &Device::Cpu,
        )?,
        labels: Tensor::from_vec(
            (0..batch_size)
                .map(|i| (i % BENCH_CLASSES) as u32)
                .collect::<Vec<_>>(),
            batch_size,
            &Device::Cpu,
        )?
        .to_dtype(DType::U32)?,
        mix: None,
    };
    let mut runner = StepRunner::new(Box::new(NetworkModel(net)), device.clone(), preset, &info)?;
    let stats_every = preset.run.stats_every.max(1);
    let mut sum = [0.0f64; 6];
    let mut loss = f64::NAN;
    // Memory in use at the end of each timed step (device memory on a GPU, RSS on the CPU), the largest seen.
    let mut device_mem = 0u64;
    for i in 0..warmup + steps {
        let want_stats = runner.step() % stats_every == 0;
        let out = runner.run_step(&batch, want_stats, true)?;
        loss = out.loss;
        if i >= warmup {
            if let Some(m) = crate::train::device::memory_in_use(device) {
                device_mem = device_mem.max(m.used_bytes);
            }
            let t = &out.timings;
            for (s, v) in sum.iter_mut().zip([
                t.step_ms,
                t.forward_ms,
                t.backward_ms,
                t.agc_ms,
                t.optimizer_ms,
                t.stats_ms,
            ]) {
                *s += v;
            }
        }
    }
    let n = steps as f64;
    let step_ms = sum[0] / n;
    Ok(json!({
        "impl": "nfbench",
        "device": crate::train::device::describe(device),
        "dtype": precision.name(),
        "model": name,
        "batch_size": batch_size,
        "resolution": resolution,
        "threads": rayon::current_num_threads(),
        "steps": steps,
        "images_per_sec": batch_size as f64 / (step_ms / 1e3),
        "step_ms": step_ms,
        "forward_ms": sum[1] / n,
        "backward_ms": sum[2] / n,
        "agc_ms": sum[3] / n,
        "optimiser_ms": sum[4] / n,
        "statistics_ms": sum[5] / n,
        "peak_rss_mb": peak_rss_mb(),
        "device_mem_mb": device_mem as f64 / (1u64 << 20) as f64,
        "params": params,
        "loss": loss,
    }))
}

/// Peak resident set size (VmHWM) of this process in MiB; NaN where /proc is unavailable.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn print_table(r: &Value) {
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "{} batch {} at {} px on {}: {:.1} img/s, {:.1} ms/step, peak RSS {:.0} MiB",
        r["model"].as_str().unwrap_or("?"),
        r["batch_size"],
        r["resolution"],
        r["device"].as_str().unwrap_or("?"),
        f("images_per_sec"),
        f("step_ms"),
        f("peak_rss_mb")
    );
    for k in ["forward", "backward", "agc", "optimiser", "statistics"] {
        let v = f(&format!("{k}_ms"));
        println!("  {k:<11} {v:>9.2} ms  {:>5.1} %", 100.0 * v / f("step_ms"));
    }
}

fn conv_json(c: &ConvPlan) -> Value {
    json!({
        "op": "conv", "name": c.name, "in": c.in_ch, "out": c.out_ch, "kernel": c.kernel, "stride": c.stride,
        "groups": c.groups, "ws": c.ws, "bias": c.bias,
    })
}

/// The plan of the measured network and the step's recipe, in the format `benches/torch_reference.py` reads.
pub fn plan_json(plan: &NetPlan, alpha: f64, preset: &Preset) -> Value {
    let norm = match plan.arch.norm {
        Norm::NormFree => "nf",
        Norm::BatchNorm => "bn",
        Norm::Plain => "plain",
    };
    let stem: Vec<Value> = plan
        .stem
        .iter()
        .map(|op| match op {
            StemOp::Conv(c) => conv_json(c),
            StemOp::Bn(b) => json!({"op": "bn", "ch": b.ch}),
            StemOp::Act => json!({"op": "act"}),
            StemOp::MaxPool => json!({"op": "maxpool"}),
        })
        .collect();
    let blocks: Vec<Value> = plan
        .blocks
        .iter()
        .zip(plan.scalings(alpha))
        .map(|(b, s)| {
            json!({
                "name": b.name,
                "alpha": s.alpha,
                "beta": s.beta,
                "convs": b.convs.iter().map(conv_json).collect::<Vec<_>>(),
                "bns": b.bns.iter().map(|bn| bn.ch).collect::<Vec<_>>(),
                "shortcut": b.shortcut.as_ref().map(conv_json),
                "shortcut_pool": b.shortcut_pool,
                "se": b.se.as_ref().map(|(fc0, _)| json!([fc0.in_f, fc0.out_f])),
                "skip_gain": b.skip_gain,
                "drop_rate": b.drop_rate,
            })
        })
        .collect();
    json!({
        "name": plan.name,
        "norm": norm,
        "activation": plan.activation.name(),
        "ws_eps": crate::model::layers::WS_EPS,
        "in_channels": plan.in_channels,
        "num_classes": plan.num_classes,
        "resolution": plan.resolution,
        "batch_size": preset.data.batch_size,
        "skip_gain_init": plan.skip_gain_init,
        "dropout": plan.dropout,
        "stem": stem,
        "blocks": blocks,
        "head": {
            "final_conv": plan.head.final_conv.as_ref().map(conv_json),
            "final_bn": plan.head.final_bn.as_ref().map(|b| b.ch),
            "linear": {"in": plan.head.linear.in_f, "out": plan.head.linear.out_f},
        },
        "optim": {
            "lr": preset.optim.lr,
            "momentum": preset.optim.momentum,
            "nesterov": preset.optim.nesterov,
            "weight_decay": preset.optim.weight_decay,
            "label_smoothing": preset.optim.label_smoothing,
        },
        "agc": {
            "enabled": preset.agc.enabled,
            "lambda": preset.agc.lambda,
            "eps": preset.agc.eps,
            "exclude_classifier": preset.agc.exclude.iter().any(|e| e == crate::model::CLASSIFIER_WEIGHT),
        },
        "stats_every": preset.run.stats_every.max(1),
    })
}
