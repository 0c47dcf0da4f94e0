//! Evaluation crops: DeepMind's (a centred square of `R / (R + 32)` of the shorter side, i.e. "resize to R + 32 and
//! centre-crop R") and timm's `crop_pct` (resize the shorter side to `floor(R / crop_pct)`, centre-crop R, i.e. a
//! centred square of `crop_pct` of the shorter side). Both are computed as a region of the stored image, which the
//! pipeline then decodes (partially) and resizes to R in one pass.

use crate::data::decode::Region;
use serde::{Deserialize, Serialize};

/// How evaluation images are cropped (`data.eval_crop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalCrop {
    /// DeepMind's NFNet evaluation: resize to R + 32, centre-crop R.
    #[default]
    #[serde(rename = "resize_crop_32")]
    ResizeCrop32,
    /// timm's: a centred square of `data.crop_pct` of the shorter side, resized to R.
    CropPct,
}

/// DeepMind's `CROP_PADDING`.
const CROP_PADDING: f64 = 32.0;

/// The centred square DeepMind's `_decode_and_center_crop` takes: side `floor(R / (R + 32) * min(h, w))` at
/// offsets `(dim - side + 1) / 2`.
pub fn center_crop_32(width: u32, height: u32, resolution: u32) -> Region {
    let r = f64::from(resolution);
    let side = (r / (r + CROP_PADDING) * f64::from(width.min(height))) as u32;
    centred(width, height, side)
}

/// timm's crop: `scale = floor(R / crop_pct)` for the shorter side, then R of it, so the square's side in source
/// pixels is `short * R / scale` (rounded).
pub fn crop_pct(width: u32, height: u32, resolution: u32, pct: f64) -> Region {
    let short = f64::from(width.min(height));
    let scale = (f64::from(resolution) / pct).floor().max(1.0);
    let side = (short * f64::from(resolution) / scale).round() as u32;
    centred(width, height, side)
}

impl EvalCrop {
    pub fn region(self, width: u32, height: u32, resolution: u32, pct: f64) -> Region {
        match self {
            EvalCrop::ResizeCrop32 => center_crop_32(width, height, resolution),
            EvalCrop::CropPct => crop_pct(width, height, resolution, pct),
        }
    }
}

fn centred(width: u32, height: u32, side: u32) -> Region {
    let side = side.clamp(1, width.min(height));
    Region {
        x: (width - side).div_ceil(2),
        y: (height - side).div_ceil(2),
        width: side,
        height: side,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deepmind_centre_crop_matches_its_formula() {
        // 500x375 at 224: floor(224/256 * 375) = 328; offsets (500-328+1)//2 = 86, (375-328+1)//2 = 24.
        let r = center_crop_32(500, 375, 224);
        assert_eq!((r.x, r.y, r.width, r.height), (86, 24, 328, 328));
        // F0 tests at 256: floor(256/288 * 375) = 333.
        assert_eq!(center_crop_32(500, 375, 256).width, 333);
    }

    #[test]
    fn timm_crop_pct_is_the_centre_square_of_pct_of_the_short_side() {
        // 0.875 at 224: scale 256, side 375 * 224 / 256 = 328.125 -> 328.
        let r = crop_pct(500, 375, 224, 0.875);
        assert_eq!((r.width, r.x, r.y), (328, 86, 24));
        let full = crop_pct(300, 200, 224, 1.0);
        assert_eq!((full.width, full.height, full.x, full.y), (200, 200, 50, 0));
    }
}
