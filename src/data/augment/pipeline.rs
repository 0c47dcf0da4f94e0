//! The per-image pipelines over encoded images, run on the loader's threads.
//!
//! Train: the Inception crop drawn from the stored size ([`InceptionCrop`], DeepMind's fallback to the evaluation
//! centre crop when it fails), the flip drawn next, then the crop region decoded (partially, DCT-scaled when it is
//! at least twice the resolution), resized bicubically to the training resolution, flipped, and handed to the
//! optional per-image ops ([`ImageOp`], RandAugment's place) with the same per-image random stream. Eval: the
//! evaluation crop ([`EvalCrop`]) decoded and resized to the evaluation resolution.

use super::eval_crop::{center_crop_32, EvalCrop};
use super::inception::InceptionCrop;
use super::resize::{flip_horizontal, Resizer};
use crate::data::decode::{
    jpeg_size, scale_for, CropBox, DecodeError, DecoderKind, JpegDecoder, Region,
};
use crate::data::RgbImage;
use rand_chacha::rand_core::RngCore;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// A per-image transform run after crop, resize and flip, before the image is copied into the batch, drawing from
/// the image's own random stream (keyed by seed, epoch, batch and image), so it is as reproducible as the crop.
pub trait ImageOp: Send + Sync {
    fn apply(&self, image: &mut RgbImage, rng: &mut ChaCha8Rng);
}

/// How a training image is made.
#[derive(Clone)]
pub struct TrainTransform {
    pub resolution: u32,
    pub hflip: bool,
    pub crop: InceptionCrop,
    /// Run in order after the flip.
    pub ops: Vec<Arc<dyn ImageOp>>,
}

impl std::fmt::Debug for TrainTransform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainTransform")
            .field("resolution", &self.resolution)
            .field("hflip", &self.hflip)
            .field("crop", &self.crop)
            .field("ops", &self.ops.len())
            .finish()
    }
}

/// How an evaluation image is made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalTransform {
    pub resolution: u32,
    pub crop: EvalCrop,
    /// timm's `crop_pct`, used by [`EvalCrop::CropPct`].
    pub crop_pct: f64,
}

/// What one loader thread owns: its decoder and its resizer's buffers.
#[derive(Debug)]
pub struct ImageWorker {
    decoder: JpegDecoder,
    resizer: Resizer,
}

impl ImageWorker {
    pub fn new(kind: DecoderKind) -> Result<Self, DecodeError> {
        Ok(Self {
            decoder: JpegDecoder::new(kind)?,
            resizer: Resizer::new(),
        })
    }

    pub fn decoder(&self) -> DecoderKind {
        self.decoder.kind()
    }

    /// One training image from its JPEG bytes; every draw comes from `rng`, in a fixed order (crop, flip, ops).
    pub fn train_image(
        &mut self,
        bytes: &[u8],
        t: &TrainTransform,
        rng: &mut ChaCha8Rng,
    ) -> Result<RgbImage, DecodeError> {
        let (w, h) = jpeg_size(bytes)?;
        let region = t
            .crop
            .sample(w, h, rng)
            .unwrap_or_else(|| center_crop_32(w, h, t.resolution));
        let flip = t.hflip && rng.next_u32() & 1 == 1;
        let mut image = self.decode_resize(bytes, region, t.resolution)?;
        if flip {
            flip_horizontal(&mut image);
        }
        for op in &t.ops {
            op.apply(&mut image, rng);
        }
        Ok(image)
    }

    /// One evaluation image from its JPEG bytes.
    pub fn eval_image(&mut self, bytes: &[u8], t: &EvalTransform) -> Result<RgbImage, DecodeError> {
        let (w, h) = jpeg_size(bytes)?;
        let target = t.crop.crop_box(w, h, t.resolution, t.crop_pct);
        self.decode_resize_box(bytes, target, t.resolution)
    }

    /// One evaluation image from pixels decoded elsewhere (a PNG, say): the crop box of
    /// [`eval_image`](Self::eval_image), resized the same way.
    pub fn eval_decoded(
        &mut self,
        image: &RgbImage,
        t: &EvalTransform,
    ) -> Result<RgbImage, DecodeError> {
        let (w, h) = (image.width(), image.height());
        let target = t
            .crop
            .crop_box(w, h, t.resolution, t.crop_pct)
            .clamped(w, h);
        self.resizer
            .crop_resize(image, target, t.resolution, t.resolution)
    }

    /// `region` decoded (scaled when it is at least twice `side`) and resized to `side` x `side`.
    pub fn decode_resize(
        &mut self,
        bytes: &[u8],
        region: Region,
        side: u32,
    ) -> Result<RgbImage, DecodeError> {
        self.decode_resize_box(bytes, CropBox::of(region), side)
    }

    /// The fractional `target` box of the stored image, decoded through the whole pixels that cover it and resized
    /// to `side` x `side`.
    pub fn decode_resize_box(
        &mut self,
        bytes: &[u8],
        target: CropBox,
        side: u32,
    ) -> Result<RgbImage, DecodeError> {
        let x0 = target.left.floor().max(0.0);
        let y0 = target.top.floor().max(0.0);
        let region = Region {
            x: x0 as u32,
            y: y0 as u32,
            width: ((target.left + target.width).ceil() - x0).max(1.0) as u32,
            height: ((target.top + target.height).ceil() - y0).max(1.0) as u32,
        };
        let scale = scale_for(region, (side, side));
        let decoded = self.decoder.decode_region(bytes, region, scale)?;
        // The decoder places `region` at `decoded.crop`; the target sits inside it at the same relative place.
        let (sx, sy) = (
            decoded.crop.width / f64::from(region.width),
            decoded.crop.height / f64::from(region.height),
        );
        let inner = CropBox {
            left: decoded.crop.left + (target.left - x0) * sx,
            top: decoded.crop.top + (target.top - y0) * sy,
            width: target.width * sx,
            height: target.height * sy,
        }
        .clamped(decoded.image.width(), decoded.image.height());
        self.resizer.crop_resize(&decoded.image, inner, side, side)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::augment::rng_for;
    use crate::data::decode::tests_support::{encode, photo};

    fn train(resolution: u32) -> TrainTransform {
        TrainTransform {
            resolution,
            hflip: true,
            crop: InceptionCrop::default(),
            ops: Vec::new(),
        }
    }

    struct Invert;
    impl ImageOp for Invert {
        fn apply(&self, image: &mut RgbImage, _rng: &mut ChaCha8Rng) {
            image.pixels_mut().iter_mut().for_each(|v| *v = 255 - *v);
        }
    }

    #[test]
    fn train_images_have_the_resolution_and_depend_only_on_the_stream() {
        let bytes = encode(&photo(320, 240), 92);
        let mut w = ImageWorker::new(DecoderKind::best()).unwrap();
        let a = w
            .train_image(&bytes, &train(64), &mut rng_for(5, &[1, 2]))
            .unwrap();
        let b = w
            .train_image(&bytes, &train(64), &mut rng_for(5, &[1, 2]))
            .unwrap();
        let c = w
            .train_image(&bytes, &train(64), &mut rng_for(5, &[1, 3]))
            .unwrap();
        assert_eq!((a.width(), a.height()), (64, 64));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut t = train(64);
        t.ops.push(Arc::new(Invert));
        let inv = w.train_image(&bytes, &t, &mut rng_for(5, &[1, 2])).unwrap();
        assert!(
            inv.pixels()
                .iter()
                .zip(a.pixels())
                .all(|(x, y)| *x == 255 - *y),
            "ops run last"
        );
    }

    #[test]
    fn scaled_decoding_changes_the_resized_image_little() {
        // A 640x480 image to 96 px: the whole-image region is decoded at 1/4 (160x120 >= 96); compare with a
        // full-size decode resized by the same resizer.
        let bytes = encode(&photo(640, 480), 92);
        let region = Region {
            x: 40,
            y: 20,
            width: 400,
            height: 400,
        };
        let mut w = ImageWorker::new(DecoderKind::best()).unwrap();
        let fast = w.decode_resize(&bytes, region, 96).unwrap();
        let mut full = JpegDecoder::new(DecoderKind::best()).unwrap();
        let whole = full.decode_region(&bytes, region, 1).unwrap();
        let slow = Resizer::new()
            .crop_resize(&whole.image, whole.crop, 96, 96)
            .unwrap();
        let mad: f64 = fast
            .pixels()
            .iter()
            .zip(slow.pixels())
            .map(|(a, b)| f64::from(a.abs_diff(*b)))
            .sum::<f64>()
            / fast.pixels().len() as f64;
        assert!(mad < 6.0, "mean abs difference {mad}");
    }

    #[test]
    fn eval_image_is_the_centre_crop_resized() {
        let flat = image::RgbImage::from_pixel(300, 200, image::Rgb([30, 140, 220]));
        let bytes = encode(&flat, 95);
        let t = EvalTransform {
            resolution: 48,
            crop: EvalCrop::ResizeCrop32,
            crop_pct: 0.875,
        };
        let img = ImageWorker::new(DecoderKind::Zune)
            .unwrap()
            .eval_image(&bytes, &t)
            .unwrap();
        assert_eq!((img.width(), img.height()), (48, 48));
        let p = img.pixel(24, 24);
        assert!(
            p.iter()
                .zip([30u8, 140, 220])
                .all(|(a, b)| a.abs_diff(b) <= 3),
            "{p:?}"
        );
    }
}
