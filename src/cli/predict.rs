//! `nfbench predict CKPT IMAGE...`: the top classes of each image with their probabilities and names.
//!
//! Images are decoded with the `image` crate into [`RgbImage`], put through [`eval_resize_centre_crop`] (the
//! evaluation transform: shorter side to R + 32, centre crop R x R) and normalised by the training data's mean and
//! std (the run's data set, `--data`, or ImageNet's for imported weights).

use super::weights::open_network;
use crate::data::{DatasetInfo, RgbImage};
use crate::model::zoo;
use crate::train::parts::select_device;
use anyhow::Context;
use candle_core::{Device, Tensor, D};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// ImageNet's per-channel mean and std on the 0..1 scale (timm's defaults for its NF models).
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// A checkpoint, a run directory (its latest checkpoint) or a weights file of `weights import`.
    pub ckpt: PathBuf,
    /// Image files (JPEG or PNG).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// The data set whose class names and normalisation apply (default: the run's `data.path`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Input resolution (default: the run's evaluation resolution, else the architecture's test resolution).
    #[arg(long)]
    pub resolution: Option<u32>,
    /// How many classes to show.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Use a checkpoint's EMA weights.
    #[arg(long)]
    pub ema: bool,
    /// Print one JSON line per image.
    #[arg(long)]
    pub json: bool,
    /// `auto`, `cpu` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: crate::preset::schema::DeviceSpec,
}

/// One class of a prediction.
#[derive(Debug, Serialize)]
pub struct Guess {
    pub class: usize,
    pub name: String,
    pub probability: f64,
}

#[derive(Debug, Serialize)]
struct PredictLine {
    image: String,
    top: Vec<Guess>,
}

/// The evaluation transform: resize (bilinear) so the shorter side is `resolution + 32`, then crop the centre
/// `resolution x resolution`. One small function, so the data pipeline's own eval transform can replace it.
pub fn eval_resize_centre_crop(img: &RgbImage, resolution: u32) -> anyhow::Result<RgbImage> {
    let (w, h) = (img.width(), img.height());
    let short = w.min(h).max(1);
    let target = resolution + 32;
    let (nw, nh) = (
        ((u64::from(w) * u64::from(target)).div_ceil(u64::from(short)) as u32).max(resolution),
        ((u64::from(h) * u64::from(target)).div_ceil(u64::from(short)) as u32).max(resolution),
    );
    let buf = image::RgbImage::from_raw(w, h, img.pixels().to_vec()).context("image buffer")?;
    let resized = image::imageops::resize(&buf, nw, nh, image::imageops::FilterType::Triangle);
    let (x0, y0) = ((nw - resolution) / 2, (nh - resolution) / 2);
    let crop = image::imageops::crop_imm(&resized, x0, y0, resolution, resolution).to_image();
    Ok(RgbImage::from_raw(resolution, resolution, crop.into_raw())?)
}

/// Decode an image file into an [`RgbImage`].
pub fn decode(path: &Path) -> anyhow::Result<RgbImage> {
    let img = image::open(path)
        .with_context(|| format!("{}: not a readable image", path.display()))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    Ok(RgbImage::from_raw(w, h, img.into_raw())?)
}

/// `[1, 3, R, R]`, normalised `(v / 255 - mean) / std`.
fn to_tensor(img: &RgbImage, mean: &[f32], std: &[f32], device: &Device) -> anyhow::Result<Tensor> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut data = vec![0f32; 3 * w * h];
    for (i, px) in img.pixels().chunks_exact(3).enumerate() {
        for c in 0..3 {
            data[c * w * h + i] = (f32::from(px[c]) / 255.0 - mean[c]) / std[c];
        }
    }
    Ok(Tensor::from_vec(data, (1, 3, h, w), device)?)
}

pub fn run(args: PredictArgs) -> anyhow::Result<ExitCode> {
    let device = select_device(args.device)?;
    let opened = open_network(&args.ckpt, &device, args.ema)?;
    let data_path = args
        .data
        .clone()
        .or_else(|| opened.preset.as_ref().map(|p| p.data.path.clone()));
    let info = match &data_path {
        Some(p) => Some(DatasetInfo::open(p)?),
        None => None,
    };
    let (mean, std) = match &info {
        Some(i) if i.mean.len() == 3 => (i.mean.clone(), i.std.clone()),
        _ => (IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec()),
    };
    let classes = opened.net.num_classes();
    let names: Vec<String> = (0..classes)
        .map(|k| {
            info.as_ref()
                .and_then(|i| i.class_names.get(k).cloned())
                .unwrap_or_else(|| format!("class {k}"))
        })
        .collect();
    let resolution = args
        .resolution
        .or_else(|| {
            opened
                .preset
                .as_ref()
                .map(|p| crate::data::loader::eval_resolution(&p.data))
        })
        .filter(|&r| r > 0)
        .or_else(|| zoo::find(opened.net.name()).map(|a| a.topology.test_resolution as u32))
        .unwrap_or(224);
    for path in &args.images {
        let img = eval_resize_centre_crop(&decode(path)?, resolution)?;
        let x = to_tensor(&img, &mean, &std, &device)?;
        let logits = opened.net.forward(&x, &Default::default())?.logits;
        let probs = candle_nn::ops::softmax(&logits, D::Minus1)?
            .squeeze(0)?
            .to_vec1::<f32>()?;
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        let top: Vec<Guess> = order
            .iter()
            .take(args.top)
            .map(|&k| Guess {
                class: k,
                name: names[k].clone(),
                probability: f64::from(probs[k]),
            })
            .collect();
        if args.json {
            let line = PredictLine {
                image: path.display().to_string(),
                top,
            };
            println!("{}", serde_json::to_string(&line)?);
        } else {
            println!("{}:", path.display());
            for (i, g) in top.iter().enumerate() {
                println!("  {}. {:<20} {:.4}", i + 1, g.name, g.probability);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
