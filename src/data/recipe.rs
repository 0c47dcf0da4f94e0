//! `[augment]` of a preset: the NFNet training recipe's augmentations beyond crop and flip (RandAugment, MixUp,
//! CutMix), as plain serde data, and how a training batch applies them.
//!
//! It lives in the data layer (like [`super::config::DataConfig`]) so the loader is configured from it without
//! knowing about presets; `crate::preset::schema` re-exports it. The manual of each field is its entry in the preset
//! field table (`src/preset/fields.rs`). The recipe follows DeepMind's `nfnets/dataset.py` (deepmind-research commit
//! f5de0ede8430809180254ee957abf36ed62579ef): DeepMind's `augment_name = "cutmix_mixup_randaugment_405"` is
//! `mixing = "mixup_cutmix"`, `randaugment_layers = 4`, `randaugment_magnitude = 5` here.

use super::augment::{resize_square, rng_for, Augmentation, Normaliser};
use super::image::RgbImage;
pub use super::mixing::Mixing;
use super::mixing::{mix_pair, plan, PlanOptions};
use super::randaugment::{PixelConsts, RandAugment, RANDAUGMENT_TAG};
use super::{DataError, ImageShape};
use serde::{Deserialize, Serialize};

/// `[augment]`: RandAugment and batch mixing of training batches (evaluation is never augmented).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    pub randaugment_layers: u32,
    pub randaugment_magnitude: u32,
    pub translate_const: u32,
    pub cutout_const: u32,
    pub mixing: Mixing,
    pub mixup_alpha: f64,
    pub augment_before_mix: bool,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            randaugment_layers: 0,
            randaugment_magnitude: 0,
            translate_const: 100,
            cutout_const: 40,
            mixing: Mixing::None,
            mixup_alpha: 0.2,
            augment_before_mix: false,
        }
    }
}

impl AugmentConfig {
    /// The RandAugment these settings describe (N layers at magnitude M, the pixel constants).
    pub fn randaugment(&self) -> RandAugment {
        let consts = PixelConsts {
            translate: self.translate_const,
            cutout: self.cutout_const,
        };
        RandAugment::new(self.randaugment_layers, self.randaugment_magnitude, consts)
    }

    /// Whether RandAugment runs.
    pub fn randaugment_on(&self) -> bool {
        self.randaugment_layers > 0
    }

    /// A one-line summary for the workbench and logs, e.g. `RandAugment 4x5 after MixUp(0.2)/CutMix 50:50`.
    pub fn summary(&self) -> String {
        let ra = self.randaugment_on().then(|| {
            format!(
                "RandAugment {}x{}",
                self.randaugment_layers, self.randaugment_magnitude
            )
        });
        let mix = match self.mixing {
            Mixing::None => None,
            Mixing::Mixup => Some(format!("MixUp({})", self.mixup_alpha)),
            Mixing::Cutmix => Some("CutMix".to_string()),
            Mixing::MixupCutmix => Some(format!("MixUp({})/CutMix 50:50", self.mixup_alpha)),
        };
        match (ra, mix) {
            (None, None) => "crop+flip only".into(),
            (Some(ra), None) => ra,
            (None, Some(mix)) => mix,
            (Some(ra), Some(mix)) => {
                let order = if self.augment_before_mix {
                    "before"
                } else {
                    "after"
                };
                format!("{ra} {order} {mix}")
            }
        }
    }
}

/// What a training batch needs to apply the recipe: the configuration and the batch's keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecipeJob {
    pub augment: AugmentConfig,
    pub seed: u64,
    pub epoch: u64,
    pub batch: u64,
}

impl RecipeJob {
    /// The job of batch (`epoch`, `batch`), or `None` when the recipe does nothing (the plain path runs).
    pub fn of(augment: AugmentConfig, seed: u64, epoch: u64, batch: u64) -> Option<Self> {
        (augment.randaugment_on() || augment.mixing != Mixing::None).then_some(Self {
            augment,
            seed,
            epoch,
            batch,
        })
    }

    fn randaugment(&self) -> RandAugment {
        self.augment.randaugment()
    }

    /// RandAugment image `i` of this batch's stage (`stage` 0: source images, 1: mixed images), in place.
    fn augment_image(&self, image: &mut RgbImage, stage: u64, i: usize) {
        if self.augment.randaugment_on() {
            let mut rng = rng_for(
                self.seed,
                &[RANDAUGMENT_TAG, self.epoch, self.batch, stage, i as u64],
            );
            self.randaugment().apply(image, &mut rng);
        }
    }
}

/// RandAugment's ops are defined on RGB: a data set of `channels` per pixel at `path` must have three.
pub fn check_channels(
    augment: &AugmentConfig,
    channels: usize,
    path: &std::path::Path,
) -> Result<(), DataError> {
    if augment.randaugment_on() && channels != RgbImage::CHANNELS {
        return Err(DataError::config(format!(
            "{}: RandAugment needs RGB images, these have {channels} channels (set augment.randaugment_layers = 0)",
            path.display()
        )));
    }
    Ok(())
}

/// A batch made by [`assemble`]: normalised f32 CHW images, first labels, and the mix targets when mixed.
#[derive(Debug, Clone, PartialEq)]
pub struct Assembled {
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    /// Per image: (second label, weight of the first label).
    pub mix: Option<(Vec<u32>, Vec<f32>)>,
}

/// The source images of a batch as the loader read them.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// The rows, `shape.bytes()` each, HWC u8.
    pub raw: &'a [u8],
    pub shape: ImageShape,
    pub labels: &'a [u32],
    /// Each row's crop and flip.
    pub augs: &'a [Augmentation],
    /// Output side and crop padding in pixels.
    pub side: usize,
    pub padding: usize,
}

/// Resize, crop and flip each source image, then RandAugment and MixUp/CutMix them as DeepMind's `dataset.py` orders
/// them (`augment_before_mix`), and normalise into f32 CHW. With mixing, `2 * B` sources make `B` images.
pub fn assemble(src: Sources, norm: &Normaliser, job: &RecipeJob) -> Result<Assembled, DataError> {
    let c = src.shape.channels;
    if job.augment.randaugment_on() && c != RgbImage::CHANNELS {
        return Err(DataError::config(format!(
            "RandAugment needs RGB images; these have {c} channels (set augment.randaugment_layers = 0)"
        )));
    }
    let mut images = Vec::with_capacity(src.labels.len());
    for (i, (pixels, aug)) in src
        .raw
        .chunks_exact(src.shape.bytes())
        .zip(src.augs)
        .enumerate()
    {
        let resized;
        let pixels = if src.side != src.shape.height || src.side != src.shape.width {
            resized = resize_square(pixels, src.shape, src.side as u32)?;
            resized.as_slice()
        } else {
            pixels
        };
        let cropped = crop_flip(pixels, src.side, src.padding, *aug, c);
        if c == RgbImage::CHANNELS
            && (job.augment.augment_before_mix || job.augment.mixing == Mixing::None)
        {
            let mut img = RgbImage::from_raw(src.side as u32, src.side as u32, cropped)?;
            job.augment_image(&mut img, 0, i);
            images.push(img.into_raw());
        } else {
            images.push(cropped);
        }
    }
    let plane = c * src.side * src.side;
    if job.augment.mixing == Mixing::None {
        let mut out = vec![0f32; images.len() * plane];
        for (img, o) in images.iter().zip(out.chunks_exact_mut(plane)) {
            normalise_u8(img, src.side, norm, o);
        }
        return Ok(Assembled {
            images: out,
            labels: src.labels.to_vec(),
            mix: None,
        });
    }
    mix_batch(&images, src, norm, job)
}

/// A batch of u8 RGB images after the recipe (the JPEG loader's batches stay u8; the device normalises them).
#[derive(Debug)]
pub struct AssembledRgb {
    pub images: Vec<RgbImage>,
    pub labels: Vec<u32>,
    /// Per image: (second label, weight of the first label).
    pub mix: Option<(Vec<u32>, Vec<f32>)>,
}

/// The recipe on decoded, cropped and flipped `side` x `side` RGB sources (the JPEG loader): `mixing.rows_per_image()`
/// sources per output image. RandAugment runs on the sources (before mixing, or without mixing) or on the mixed
/// images, with the same random streams as [`assemble`]. A mixed image is clipped to [0, 255] and truncated to u8
/// as DeepMind does before RandAugment; without RandAugment after mixing it is rounded instead (our batches are u8,
/// DeepMind's f32: a difference of at most half a level).
pub fn assemble_rgb(
    mut images: Vec<RgbImage>,
    labels: &[u32],
    job: &RecipeJob,
) -> Result<AssembledRgb, DataError> {
    let mixing = job.augment.mixing;
    if job.augment.augment_before_mix || mixing == Mixing::None {
        for (i, img) in images.iter_mut().enumerate() {
            job.augment_image(img, 0, i);
        }
    }
    if mixing == Mixing::None {
        return Ok(AssembledRgb {
            images,
            labels: labels.to_vec(),
            mix: None,
        });
    }
    let n = images.len() / 2;
    let side = images.first().map_or(0, |i| i.width() as usize);
    let draws = plan(
        n,
        PlanOptions {
            mixing,
            alpha: job.augment.mixup_alpha,
            height: side,
            width: side,
            seed: job.seed,
            epoch: job.epoch,
            batch: job.batch,
        },
    );
    let after = job.augment.randaugment_on() && !job.augment.augment_before_mix;
    let to_f32 = |v: &[u8]| v.iter().map(|&x| f32::from(x)).collect::<Vec<f32>>();
    let mut mixed = vec![0f32; side * side * RgbImage::CHANNELS];
    let mut out = Vec::with_capacity(n);
    let mut weights = Vec::with_capacity(n);
    for (j, draw) in draws.iter().enumerate() {
        let (a, b) = (to_f32(images[j].pixels()), to_f32(images[n + j].pixels()));
        mix_pair(&a, &b, *draw, side, RgbImage::CHANNELS, &mut mixed);
        weights.push(draw.weight_a(side, side));
        let q: Vec<u8> = if after {
            mixed.iter().map(|&v| v.clamp(0.0, 255.0) as u8).collect()
        } else {
            mixed
                .iter()
                .map(|&v| v.clamp(0.0, 255.0).round() as u8)
                .collect()
        };
        let mut img = RgbImage::from_raw(side as u32, side as u32, q)?;
        if after {
            job.augment_image(&mut img, 1, j);
        }
        out.push(img);
    }
    Ok(AssembledRgb {
        images: out,
        labels: labels[..n].to_vec(),
        mix: Some((labels[n..2 * n].to_vec(), weights)),
    })
}

/// Mix sources `j` and `B + j` into image `j`, then (RandAugment after mixing) augment and normalise.
fn mix_batch(
    images: &[Vec<u8>],
    src: Sources,
    norm: &Normaliser,
    job: &RecipeJob,
) -> Result<Assembled, DataError> {
    let n = images.len() / 2;
    let (side, c) = (src.side, src.shape.channels);
    let plane = c * side * side;
    let draws = plan(
        n,
        PlanOptions {
            mixing: job.augment.mixing,
            alpha: job.augment.mixup_alpha,
            height: side,
            width: side,
            seed: job.seed,
            epoch: job.epoch,
            batch: job.batch,
        },
    );
    let after = job.augment.randaugment_on() && !job.augment.augment_before_mix;
    let mut out = vec![0f32; n * plane];
    let mut mixed = vec![0f32; plane];
    let mut weights = Vec::with_capacity(n);
    for (j, (draw, o)) in draws.iter().zip(out.chunks_exact_mut(plane)).enumerate() {
        let to_f32 = |v: &[u8]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        mix_pair(
            &to_f32(&images[j]),
            &to_f32(&images[n + j]),
            *draw,
            side,
            c,
            &mut mixed,
        );
        weights.push(draw.weight_a(side, side));
        if after {
            // DeepMind clips the mixed image to [0, 255] and casts it to uint8 (truncating) before RandAugment.
            let q = mixed.iter().map(|&v| v.clamp(0.0, 255.0) as u8).collect();
            let mut img = RgbImage::from_raw(side as u32, side as u32, q)?;
            job.augment_image(&mut img, 1, j);
            normalise_u8(img.pixels(), side, norm, o);
        } else {
            normalise_f32(&mixed, side, norm, o);
        }
    }
    Ok(Assembled {
        images: out,
        labels: src.labels[..n].to_vec(),
        mix: Some((src.labels[n..2 * n].to_vec(), weights)),
    })
}

/// The `side` x `side` HWC u8 crop at (dy, dx) of the image zero-padded by `padding`, flipped left-right if asked:
/// the pixels [`super::augment::crop_flip_normalise`] would normalise.
pub fn crop_flip(
    pixels: &[u8],
    side: usize,
    padding: usize,
    aug: Augmentation,
    c: usize,
) -> Vec<u8> {
    let mut out = vec![0u8; side * side * c];
    for y in 0..side {
        let Some(sy) = (y + aug.dy).checked_sub(padding).filter(|&sy| sy < side) else {
            continue;
        };
        for x in 0..side {
            let cx = if aug.flip { side - 1 - x } else { x };
            if let Some(sx) = (cx + aug.dx).checked_sub(padding).filter(|&sx| sx < side) {
                let (s, o) = ((sy * side + sx) * c, (y * side + x) * c);
                out[o..o + c].copy_from_slice(&pixels[s..s + c]);
            }
        }
    }
    out
}

/// HWC u8 to normalised f32 CHW through the normaliser's tables.
fn normalise_u8(pixels: &[u8], side: usize, norm: &Normaliser, out: &mut [f32]) {
    let c = norm.channels();
    let plane = side * side;
    for (p, px) in pixels.chunks_exact(c).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            out[ch * plane + p] = norm.value(ch, v);
        }
    }
}

/// HWC f32 pixel values (0 to 255, a MixUp blend) to normalised f32 CHW: the normalisation is affine, so it is the
/// table's value at 0 plus `v` times its step.
fn normalise_f32(pixels: &[f32], side: usize, norm: &Normaliser, out: &mut [f32]) {
    let c = norm.channels();
    let plane = side * side;
    let affine: Vec<(f32, f32)> = (0..c)
        .map(|ch| (norm.value(ch, 0), norm.value(ch, 1) - norm.value(ch, 0)))
        .collect();
    for (p, px) in pixels.chunks_exact(c).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            out[ch * plane + p] = affine[ch].0 + v * affine[ch].1;
        }
    }
}
