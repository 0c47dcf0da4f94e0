//! `nfbench eval CKPT|RUN_DIR --data FILE [--resolution R] [--ema]`: top-1, top-5 and loss on a data set's val
//! split, as the trainer evaluates (no augmentation, file order), printed as one JSON line.

use super::weights::open_network;
use crate::data::{loader::Loader, Split};
use crate::optim::loss;
use crate::train::parts::select_device;
use candle_core::{DType, Tensor};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// A checkpoint, a run directory (its latest checkpoint) or a weights file of `weights import`.
    pub ckpt: PathBuf,
    /// The HDF5 data set whose val split is evaluated.
    #[arg(long)]
    pub data: PathBuf,
    /// Evaluation resolution in pixels (default: the run's evaluation resolution, else the data set's own).
    #[arg(long)]
    pub resolution: Option<u32>,
    /// Evaluate a checkpoint's EMA weights.
    #[arg(long)]
    pub ema: bool,
    /// Images to evaluate (default: as many as the run evaluated, `data.eval_images`, else the whole split).
    #[arg(long)]
    pub images: Option<usize>,
    /// Images per batch.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// `auto`, `cpu` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: crate::preset::schema::DeviceSpec,
}

/// The JSON line `eval` prints.
#[derive(Debug, Serialize)]
pub struct EvalLine {
    pub checkpoint: String,
    pub model: String,
    pub data: String,
    pub resolution: u32,
    pub images: usize,
    pub ema: bool,
    pub loss: f64,
    pub top1: f64,
    pub top5: f64,
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let device = select_device(args.device)?;
    let opened = open_network(&args.ckpt, &device, args.ema)?;
    let run_data = opened.preset.as_ref().map(|p| &p.data);
    let resolution = args
        .resolution
        .or_else(|| run_data.map(crate::data::loader::eval_resolution))
        .unwrap_or(0);
    let images = args
        .images
        .or_else(|| run_data.map(|d| d.eval_images))
        .unwrap_or(0);
    let loader = Loader::eval(&args.data, Split::Val, args.batch, resolution, images)?;
    let resolution = if resolution == 0 {
        loader.info().height as u32
    } else {
        resolution
    };
    let mut sums = [0f64; 3];
    let mut count = 0;
    for batch in loader {
        let batch = batch?;
        let x = batch.images.to_device(&device)?;
        let y = batch.labels.to_device(&device)?;
        let logits = opened.net.forward(&x, &Default::default())?.logits;
        let n = batch.labels.dim(0)?;
        let l = (loss::smoothed_cross_entropy(&logits, &y, 0.0)? * n as f64)?;
        let c1 = loss::top_k_correct(&logits, &y, 1)?;
        let c5 = loss::top_k_correct(&logits, &y, 5)?;
        let v = Tensor::stack(&[l.to_dtype(DType::F32)?, c1, c5], 0)?.to_vec1::<f32>()?;
        for (s, v) in sums.iter_mut().zip(v) {
            *s += f64::from(v);
        }
        count += n;
    }
    let denom = count.max(1) as f64;
    let line = EvalLine {
        checkpoint: opened.path.display().to_string(),
        model: opened.net.name().to_string(),
        data: args.data.display().to_string(),
        resolution,
        images: count,
        ema: args.ema,
        loss: sums[0] / denom,
        top1: sums[1] / denom,
        top5: sums[2] / denom,
    };
    eprintln!(
        "{}: top-1 {:.2}%, top-5 {:.2}%, loss {:.4} on {} images at {} px",
        line.model,
        100.0 * line.top1,
        100.0 * line.top5,
        line.loss,
        line.images,
        line.resolution
    );
    println!("{}", serde_json::to_string(&line)?);
    Ok(ExitCode::SUCCESS)
}
