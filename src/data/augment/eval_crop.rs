//! Evaluation crops, as boxes (fractional pixels) of the stored image that the pipeline decodes (partially) and
//! resizes to R x R in one pass, which equals resizing first and cropping after up to resampling at the box's edge:
//!
//! - DeepMind's `resize_crop_32` (nfnets `dataset.py`): resize the whole image to (R + 32) x (R + 32), ignoring its
//!   aspect ratio, and centre-crop R x R: the centred box of `R / (R + 32)` of the width and of the height.
//! - timm's `crop_pct` (its default `crop_mode` 'center'): resize the shorter side to `floor(R / crop_pct)` and
//!   centre-crop R: a centred square of `short * R / floor(R / crop_pct)` source pixels.
//! - timm's 'squash' mode (`dm_nfnet_f0`'s, crop_pct 0.9): resize to `floor(R / crop_pct)` squared and centre-crop
//!   R: the centred box of `R / floor(R / crop_pct)` of each side.
//!
//! DeepMind's `_decode_and_center_crop` (the train crop's fallback) is [`center_crop_32`]: a centred square of
//! `floor(R / (R + 32) * short)` pixels.

use crate::data::decode::{CropBox, Region};
use serde::{Deserialize, Serialize};

/// How evaluation images are cropped (`data.eval_crop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalCrop {
    /// DeepMind's NFNet evaluation: resize to (R + 32)^2, centre-crop R^2.
    #[default]
    #[serde(rename = "resize_crop_32")]
    ResizeCrop32,
    /// timm's 'center' mode: shorter side to R / `data.crop_pct`, centre-crop R.
    CropPct,
    /// timm's 'squash' mode: both sides to R / `data.crop_pct`, centre-crop R.
    CropPctSquash,
}

/// DeepMind's `CROP_PADDING`.
const CROP_PADDING: f64 = 32.0;

/// The centred square DeepMind's `_decode_and_center_crop` takes: side `floor(R / (R + 32) * min(h, w))` at
/// offsets `(dim - side + 1) / 2`.
pub fn center_crop_32(width: u32, height: u32, resolution: u32) -> Region {
    let r = f64::from(resolution);
    let side = ((r / (r + CROP_PADDING) * f64::from(width.min(height))) as u32)
        .clamp(1, width.min(height));
    Region {
        x: (width - side).div_ceil(2),
        y: (height - side).div_ceil(2),
        width: side,
        height: side,
    }
}

/// The centred box of `fx` of the width and `fy` of the height.
fn centred(width: u32, height: u32, fx: f64, fy: f64) -> CropBox {
    let (w, h) = (f64::from(width), f64::from(height));
    let (bw, bh) = ((w * fx).clamp(1.0, w), (h * fy).clamp(1.0, h));
    CropBox {
        left: (w - bw) / 2.0,
        top: (h - bh) / 2.0,
        width: bw,
        height: bh,
    }
}

/// timm's resize target for `crop_pct`: `floor(R / crop_pct)`.
fn timm_scale(resolution: u32, pct: f64) -> f64 {
    (f64::from(resolution) / pct).floor().max(1.0)
}

impl EvalCrop {
    /// The box of a `width` x `height` image that becomes the R x R evaluation image.
    pub fn crop_box(self, width: u32, height: u32, resolution: u32, pct: f64) -> CropBox {
        let r = f64::from(resolution);
        match self {
            EvalCrop::ResizeCrop32 => {
                let f = r / (r + CROP_PADDING);
                centred(width, height, f, f)
            }
            EvalCrop::CropPct => {
                let short = f64::from(width.min(height));
                let side = short * r / timm_scale(resolution, pct);
                centred(
                    width,
                    height,
                    side / f64::from(width),
                    side / f64::from(height),
                )
            }
            EvalCrop::CropPctSquash => {
                let f = r / timm_scale(resolution, pct);
                centred(width, height, f, f)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(b: CropBox, want: [f64; 4]) {
        let got = [b.left, b.top, b.width, b.height];
        assert!(
            got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-9),
            "{got:?} vs {want:?}"
        );
    }

    #[test]
    fn deepmind_fallback_centre_crop_matches_its_formula() {
        // 500x375 at 224: floor(224/256 * 375) = 328; offsets (500-328+1)//2 = 86, (375-328+1)//2 = 24.
        let r = center_crop_32(500, 375, 224);
        assert_eq!((r.x, r.y, r.width, r.height), (86, 24, 328, 328));
        assert_eq!(center_crop_32(500, 375, 256).width, 333);
    }

    #[test]
    fn resize_crop_32_is_the_centre_of_r_over_r_plus_32_of_each_side() {
        // 512x384 at 256: resized to 288x288, crop 16 px each side: in source 512*16/288 and 384*16/288.
        close(
            EvalCrop::ResizeCrop32.crop_box(512, 384, 256, 0.9),
            [
                512.0 * 16.0 / 288.0,
                384.0 * 16.0 / 288.0,
                512.0 * 256.0 / 288.0,
                384.0 * 256.0 / 288.0,
            ],
        );
    }

    #[test]
    fn timm_crops_follow_crop_pct() {
        // 0.875 at 224: scale 256; centre mode: a 375 * 224 / 256 = 328.125 square.
        close(
            EvalCrop::CropPct.crop_box(500, 375, 224, 0.875),
            [
                (500.0 - 328.125) / 2.0,
                (375.0 - 328.125) / 2.0,
                328.125,
                328.125,
            ],
        );
        // Squash at 0.9, 256: scale floor(284.44) = 284, each side times 256/284.
        let f = 256.0 / 284.0;
        close(
            EvalCrop::CropPctSquash.crop_box(400, 300, 256, 0.9),
            [
                400.0 * (1.0 - f) / 2.0,
                300.0 * (1.0 - f) / 2.0,
                400.0 * f,
                300.0 * f,
            ],
        );
    }
}
