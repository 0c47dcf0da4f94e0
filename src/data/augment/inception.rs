//! The Inception crop as DeepMind's NFNet pipeline draws it: `tf.image.sample_distorted_bounding_box` with the whole
//! image as the only box, `area_range` (0.08, 1), `aspect_ratio_range` (3/4, 4/3), `min_object_covered` 0.1 and 10
//! attempts; when every attempt fails (the sampler then returns the whole image) DeepMind falls back to its
//! evaluation centre crop.
//!
//! How TF's sampler is reproduced (tensorflow/core/kernels/image/sample_distorted_bounding_box_op.cc): each attempt
//! draws the aspect ratio uniformly (linearly, not in log space) in the range; takes the crop height between
//! `round(sqrt(min_area / ar))` and the largest height whose width `round(h * ar)` still fits the image (and
//! which is at most the image height), uniformly over the integers (so heights, not areas, are uniform); sets the
//! width to `round(h * ar)`, bumping the height by one if the area fell short of the minimum; rejects a crop
//! outside the area range or the image; and draws the offsets uniformly in `[0, H - h)` and `[0, W - w)` (TF's
//! `Uniform(n)` never returns `n`, so a crop never touches the last row or column unless it spans the image). A
//! crop is kept when it covers at least `min_object_covered` of the box, i.e. of the image. Rounding is `lrintf`'s,
//! half to even, in f32 as TF computes. The draws come from our per-image ChaCha stream, not TF's Philox, so the
//! distribution is TF's and the individual crops are not.

use crate::data::decode::Region;
use rand_chacha::rand_core::RngCore;
use rand_chacha::ChaCha8Rng;

/// The sampler's settings (DeepMind's values by default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InceptionCrop {
    pub min_area: f32,
    pub max_area: f32,
    pub min_aspect: f32,
    pub max_aspect: f32,
    pub min_object_covered: f32,
    pub attempts: u32,
}

impl Default for InceptionCrop {
    fn default() -> Self {
        Self {
            min_area: 0.08,
            max_area: 1.0,
            min_aspect: 3.0 / 4.0,
            max_aspect: 4.0 / 3.0,
            min_object_covered: 0.1,
            attempts: 10,
        }
    }
}

/// A uniform f32 in [0, 1) from the top 24 bits (every value exactly representable).
fn unit_f32(rng: &mut ChaCha8Rng) -> f32 {
    (rng.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// A uniform integer in [0, n) (n > 0), by multiply-shift (no modulo bias worth a name at these sizes).
fn below(rng: &mut ChaCha8Rng, n: u32) -> u32 {
    ((u64::from(rng.next_u32()) * u64::from(n)) >> 32) as u32
}

/// `lrintf`: round half to even in f32.
fn lrint(x: f32) -> i64 {
    x.round_ties_even() as i64
}

impl InceptionCrop {
    /// The crop of a `width` x `height` image, or None when every attempt failed (the caller's fallback applies).
    pub fn sample(&self, width: u32, height: u32, rng: &mut ChaCha8Rng) -> Option<Region> {
        for _ in 0..self.attempts {
            let aspect = unit_f32(rng) * (self.max_aspect - self.min_aspect) + self.min_aspect;
            if let Some(r) = self.attempt(width, height, aspect, rng) {
                let covered = (r.width as f32 * r.height as f32) / (width as f32 * height as f32);
                if covered >= self.min_object_covered {
                    return Some(r);
                }
            }
        }
        None
    }

    /// TF's GenerateRandomCrop for one aspect ratio.
    fn attempt(
        &self,
        width: u32,
        height: u32,
        aspect: f32,
        rng: &mut ChaCha8Rng,
    ) -> Option<Region> {
        let (w_img, h_img) = (i64::from(width), i64::from(height));
        let area = width as f32 * height as f32;
        let min_area = self.min_area * area;
        let max_area = self.max_area * area;
        let mut h = lrint((min_area / aspect).sqrt());
        let mut max_h = lrint((max_area / aspect).sqrt());
        if lrint(max_h as f32 * aspect) > w_img {
            // The largest height whose rounded width still fits.
            const EPS: f32 = 1e-7;
            max_h = ((w_img as f32 + 0.5 - EPS) / aspect) as i64;
            if lrint(max_h as f32 * aspect) > w_img {
                max_h -= 1;
            }
        }
        max_h = max_h.min(h_img);
        h = h.min(max_h);
        if h < max_h {
            h += i64::from(below(rng, (max_h - h + 1) as u32));
        }
        let mut w = lrint(h as f32 * aspect);
        if ((w * h) as f32) < min_area {
            h += 1;
            w = lrint(h as f32 * aspect);
        }
        let a = (w * h) as f32;
        if a < min_area || a > max_area || w > w_img || h > h_img || w <= 0 || h <= 0 {
            return None;
        }
        let y = if h < h_img {
            below(rng, (h_img - h) as u32)
        } else {
            0
        };
        let x = if w < w_img {
            below(rng, (w_img - w) as u32)
        } else {
            0
        };
        Some(Region {
            x,
            y,
            width: w as u32,
            height: h as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::augment::rng_for;

    #[test]
    fn crops_follow_the_ranges_and_fit_the_image() {
        let crop = InceptionCrop::default();
        let (w, h) = (500u32, 375u32);
        let (mut areas, mut n) = (0.0f64, 0);
        for i in 0..2000 {
            let mut rng = rng_for(7, &[i]);
            let Some(r) = crop.sample(w, h, &mut rng) else {
                continue;
            };
            n += 1;
            assert!(r.x + r.width <= w && r.y + r.height <= h, "{r:?}");
            let frac = f64::from(r.width * r.height) / f64::from(w * h);
            assert!(
                (0.1 - 1e-6..=1.0).contains(&frac),
                "covers >= min_object_covered: {frac}"
            );
            let ar = f64::from(r.width) / f64::from(r.height);
            // Rounding the width to whole pixels moves the ratio by at most 0.5 / h off the range.
            let slack = 0.5 / f64::from(r.height) + 1e-6;
            assert!(
                ar >= 0.75 - slack && ar <= 4.0 / 3.0 + slack,
                "{r:?} ratio {ar}"
            );
            if r.width < w {
                assert!(
                    r.x + r.width < w,
                    "TF's offsets never reach the last column"
                );
            }
            areas += frac;
        }
        // Most draws succeed, and uniform heights make the mean area fraction well below uniform-area's 0.54.
        assert!(n > 1900, "{n} of 2000 succeeded");
        let mean = areas / n as f64;
        assert!((0.3..0.6).contains(&mean), "mean area fraction {mean}");
    }

    #[test]
    fn a_sliver_image_fails_every_attempt() {
        // 1000x4: every aspect in [3/4, 4/3] needs a height of at least ~16 for 8% of the area; all attempts fail.
        let mut rng = rng_for(1, &[2]);
        assert_eq!(InceptionCrop::default().sample(1000, 4, &mut rng), None);
    }

    #[test]
    fn the_same_stream_gives_the_same_crop() {
        let c = InceptionCrop::default();
        let a = c.sample(640, 480, &mut rng_for(3, &[1, 2, 3]));
        let b = c.sample(640, 480, &mut rng_for(3, &[1, 2, 3]));
        assert_eq!(a, b);
    }
}
