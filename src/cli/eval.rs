//! `nfbench eval CKPT|RUN_DIR --data FILE [--resolution R] [--ema]`: top-1, top-5 and loss on a data set's val
//! split, as the trainer evaluates (no augmentation, file order), printed as one JSON line.

use super::weights::open_network;
use crate::data::augment::EvalTransform;
use crate::data::{
    model_input, open_dataset, DataConfig, EncodedEvalConfig, Loader, OpenedData, Split,
};
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
    /// The data set whose val split is evaluated: an nfbench file (pixels or JPEG bytes) or a folder of JPEGs.
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
    let images = args
        .images
        .or_else(|| run_data.map(|d| d.eval_images))
        .unwrap_or(0);
    let (loader, resolution) = eval_loader(&args, run_data, opened.net.name(), images)?;
    let mut sums = [0f64; 3];
    let mut count = 0;
    for batch in loader {
        let batch = batch?;
        let x = model_input(&batch.images, &device)?;
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

/// The val split's loader and the resolution it evaluates at. Pixel data sets are read as the trainer evaluates
/// them (square resize to `resolution`, 0: the file's own); JPEG data sets are cropped with the run's evaluation
/// crop (DeepMind's `resize_crop_32` without a run) at `--resolution`, else the run's `data.eval_resolution`, else
/// the architecture's test resolution (as the trainer evaluates).
fn eval_loader(
    args: &EvalArgs,
    run_data: Option<&DataConfig>,
    model: &str,
    images: usize,
) -> anyhow::Result<(Loader, u32)> {
    match open_dataset(&args.data)? {
        OpenedData::Pixels(info) => {
            let resolution = args
                .resolution
                .or_else(|| run_data.map(crate::data::loader::eval_resolution))
                .unwrap_or(0);
            let loader = Loader::eval(&args.data, Split::Val, args.batch, resolution, images)?;
            let side = if resolution == 0 {
                info.height as u32
            } else {
                resolution
            };
            Ok((loader, side))
        }
        OpenedData::Encoded { info, val, .. } => {
            let defaults = DataConfig::default();
            let data = run_data.unwrap_or(&defaults);
            let side = args
                .resolution
                .or_else(|| run_data.map(|d| d.eval_resolution))
                .filter(|&r| r > 0)
                .or_else(|| {
                    crate::model::zoo::find(model).map(|a| a.topology.test_resolution as u32)
                })
                .unwrap_or(224);
            let cfg = EncodedEvalConfig {
                batch_size: args.batch,
                max_images: images,
                decoder: data.decoder.kind(),
                transform: EvalTransform {
                    resolution: side,
                    crop: data.eval_crop,
                    crop_pct: data.crop_pct,
                },
            };
            Ok((Loader::eval_encoded(info, val, &cfg)?, side))
        }
    }
}
