//! `nfbench predict CKPT IMAGE...`: the top classes of each image with their probabilities and names.
//!
//! Each image goes through the evaluation transform the network was evaluated with: for a run on a pixel data set
//! the pixel loader's square resize and that data set's mean and std; for a run on JPEG data, or imported weights,
//! the JPEG loader's evaluation crop (the run's `data.eval_crop`, else DeepMind's `resize_crop_32`) and ImageNet's
//! normalisation.

use super::weights::open_network;
use crate::data::augment::{resize_square, EvalTransform, ImageWorker, Normaliser};
use crate::data::format::Storage;
use crate::data::{model_input, DataConfig, DatasetInfo, ImageShape, RgbImage};
use crate::model::zoo;
use crate::train::parts::select_device;
use anyhow::Context;
use candle_core::{Device, Tensor, D};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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

/// Decode an image file into an [`RgbImage`].
pub fn decode(path: &Path) -> anyhow::Result<RgbImage> {
    let img = image::open(path)
        .with_context(|| format!("{}: not a readable image", path.display()))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    Ok(RgbImage::from_raw(w, h, img.into_raw())?)
}

/// How the network saw its evaluation images, applied to one image file.
enum Preprocess {
    /// A pixel data set's run: the square resize of the pixel loader, normalised by the data set's mean and std.
    Pixels { side: u32, normaliser: Normaliser },
    /// JPEG data or imported weights: the evaluation crop of the JPEG loader, ImageNet's normalisation.
    Jpeg {
        worker: Box<ImageWorker>,
        transform: EvalTransform,
    },
}

impl Preprocess {
    fn new(
        run: Option<&DataConfig>,
        info: Option<&DatasetInfo>,
        side: u32,
    ) -> anyhow::Result<Self> {
        if let Some(info) = info.filter(|i| i.storage == Storage::Pixels) {
            return Ok(Preprocess::Pixels {
                side,
                normaliser: Normaliser::new(&info.mean, &info.std),
            });
        }
        let defaults = DataConfig::default();
        let data = run.unwrap_or(&defaults);
        Ok(Preprocess::Jpeg {
            worker: Box::new(ImageWorker::new(data.decoder.kind())?),
            transform: EvalTransform {
                resolution: side,
                crop: data.eval_crop,
                crop_pct: data.crop_pct,
            },
        })
    }

    /// The network's input for one image file: f32 `[1, 3, R, R]` on `device`.
    fn input(&mut self, path: &Path, device: &Device) -> anyhow::Result<Tensor> {
        match self {
            Preprocess::Pixels { side, normaliser } => {
                let img = decode(path)?;
                let shape = ImageShape {
                    height: img.height() as usize,
                    width: img.width() as usize,
                    channels: RgbImage::CHANNELS,
                };
                let pixels = resize_square(img.pixels(), shape, *side)?;
                let s = *side as usize;
                let mut data = vec![0f32; RgbImage::CHANNELS * s * s];
                for (i, px) in pixels.chunks_exact(RgbImage::CHANNELS).enumerate() {
                    for (c, &v) in px.iter().enumerate() {
                        data[c * s * s + i] = normaliser.value(c, v);
                    }
                }
                Ok(Tensor::from_vec(
                    data,
                    (1, RgbImage::CHANNELS, s, s),
                    device,
                )?)
            }
            Preprocess::Jpeg { worker, transform } => {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("{}: cannot read", path.display()))?;
                // JPEG files through the loader's own decoder and crop; anything else (PNG) decoded here first.
                let img = match worker.eval_image(&bytes, transform) {
                    Ok(img) => img,
                    Err(_) if !bytes.starts_with(&[0xff, 0xd8]) => {
                        worker.eval_decoded(&decode(path)?, transform)?
                    }
                    Err(e) => {
                        return Err(anyhow::Error::new(e).context(format!("{}", path.display())))
                    }
                };
                let (w, h) = (img.width() as usize, img.height() as usize);
                let batch =
                    Tensor::from_vec(img.into_raw(), (1, h, w, RgbImage::CHANNELS), &Device::Cpu)?;
                Ok(model_input(&batch, device)?)
            }
        }
    }
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
    let run_data = opened.preset.as_ref().map(|p| &p.data);
    let mut preprocess = Preprocess::new(run_data, info.as_ref(), resolution)?;
    for path in &args.images {
        let x = preprocess.input(path, &device)?;
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
