//! Per-image transforms. For decoded-pixel data sets (format v1): square resize (shorter side to R, centre crop),
//! random crop with zero padding, horizontal flip, and normalisation to f32 CHW (this file). For JPEG data: the
//! Inception crop ([`inception`]), the evaluation crops ([`eval_crop`]), the bicubic crop-resize ([`resize`]) and the
//! per-image pipelines that chain them after the decoder ([`pipeline`]). Randomness comes from a generator the
//! caller seeds per image, so a batch's content depends only on (seed, epoch, batch index), never on which thread
//! made it.

pub mod eval_crop;
pub mod inception;
pub mod pipeline;
pub mod resize;

pub use eval_crop::EvalCrop;
pub use inception::InceptionCrop;
pub use pipeline::{EvalTransform, ImageOp, ImageWorker, TrainTransform};

use super::{DataError, ImageShape};
use image::imageops::FilterType;
use image::{ImageBuffer, Luma, LumaA, Pixel, Rgb, Rgba};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The largest channel count the resizer handles (grey, grey + alpha, RGB, RGBA).
pub const MAX_RESIZE_CHANNELS: usize = 4;

/// Resize an HWC u8 image to `side` x `side`: the centred square of its shorter side, scaled with a triangle
/// (bilinear, area-aware when shrinking) filter. Returns the image unchanged when it already has that size.
pub fn resize_square(pixels: &[u8], shape: ImageShape, side: u32) -> Result<Vec<u8>, DataError> {
    if shape.height == side as usize && shape.width == side as usize {
        return Ok(pixels.to_vec());
    }
    match shape.channels {
        1 => resize_as::<Luma<u8>>(pixels, shape, side),
        2 => resize_as::<LumaA<u8>>(pixels, shape, side),
        3 => resize_as::<Rgb<u8>>(pixels, shape, side),
        4 => resize_as::<Rgba<u8>>(pixels, shape, side),
        c => Err(DataError::config(format!(
            "cannot resize images with {c} channels (1 to {MAX_RESIZE_CHANNELS} supported)"
        ))),
    }
}

fn resize_as<P: Pixel<Subpixel = u8> + 'static>(
    pixels: &[u8],
    shape: ImageShape,
    side: u32,
) -> Result<Vec<u8>, DataError> {
    let (w, h) = (shape.width as u32, shape.height as u32);
    let img: ImageBuffer<P, &[u8]> = ImageBuffer::from_raw(w, h, pixels).ok_or_else(|| {
        DataError::config(format!(
            "image buffer of {} bytes is not {w}x{h}",
            pixels.len()
        ))
    })?;
    let short = w.min(h);
    let view = image::imageops::crop_imm(&img, (w - short) / 2, (h - short) / 2, short, short);
    Ok(image::imageops::resize(&*view, side, side, FilterType::Triangle).into_raw())
}

/// Lookup tables from a u8 pixel value to its normalised f32, one table per channel.
#[derive(Debug, Clone)]
pub struct Normaliser {
    tables: Vec<[f32; 256]>,
}

impl Normaliser {
    /// `(v / 255 - mean[c]) / std[c]`.
    pub fn new(mean: &[f32], std: &[f32]) -> Self {
        let tables = mean
            .iter()
            .zip(std)
            .map(|(&m, &s)| {
                let mut t = [0f32; 256];
                for (v, out) in t.iter_mut().enumerate() {
                    *out = (v as f32 / 255.0 - m) / s;
                }
                t
            })
            .collect();
        Self { tables }
    }

    pub fn channels(&self) -> usize {
        self.tables.len()
    }

    pub fn value(&self, channel: usize, v: u8) -> f32 {
        self.tables[channel][v as usize]
    }
}

/// Where one training image is cropped from and whether it is flipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augmentation {
    /// Offset of the crop window in the zero-padded image, each in `0..=2 * padding`.
    pub dy: usize,
    pub dx: usize,
    pub flip: bool,
}

impl Augmentation {
    pub const NONE: Augmentation = Augmentation {
        dy: 0,
        dx: 0,
        flip: false,
    };

    /// Draw a crop offset and a flip from `rng` (padding 0 means no crop; `hflip` false means never flip).
    pub fn draw(rng: &mut ChaCha8Rng, padding: usize, hflip: bool) -> Self {
        let span = 2 * padding as u64 + 1;
        let dy = (rng.next_u64() % span) as usize;
        let dx = (rng.next_u64() % span) as usize;
        let flip = hflip && rng.next_u64() & 1 == 1;
        Self { dy, dx, flip }
    }
}

/// Write one `side` x `side` HWC u8 image into `out` as normalised f32 CHW, cropped from the image padded by
/// `padding` zero pixels at offset (dy, dx), then flipped left-right if asked. With `Augmentation::NONE` and
/// padding 0 this is plain normalisation.
pub fn crop_flip_normalise(
    pixels: &[u8],
    side: usize,
    padding: usize,
    aug: Augmentation,
    norm: &Normaliser,
    out: &mut [f32],
) {
    let c = norm.channels();
    let plane = side * side;
    for y in 0..side {
        // Source row in the unpadded image, if the crop row is not in the padding.
        let sy = (y + aug.dy).checked_sub(padding).filter(|&sy| sy < side);
        for x in 0..side {
            let cx = if aug.flip { side - 1 - x } else { x };
            let sx = (cx + aug.dx).checked_sub(padding).filter(|&sx| sx < side);
            let src = match (sy, sx) {
                (Some(sy), Some(sx)) => Some((sy * side + sx) * c),
                _ => None,
            };
            for ch in 0..c {
                let v = src.map_or(0, |i| pixels[i + ch]);
                out[ch * plane + y * side + x] = norm.value(ch, v);
            }
        }
    }
}

/// A generator for one purpose within a run, mixed from the seed and coordinates by SplitMix64 so that nearby
/// coordinates give unrelated streams.
pub fn rng_for(seed: u64, coords: &[u64]) -> ChaCha8Rng {
    let mut h = splitmix(seed ^ 0x6e66_6265_6e63_6821);
    for &c in coords {
        h = splitmix(h ^ c);
    }
    ChaCha8Rng::seed_from_u64(h)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A permutation of `0..n` (Fisher-Yates on the ChaCha stream; independent of `rand`'s own shuffle algorithm, so
/// data order survives dependency updates).
pub fn permutation(n: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = ((u128::from(rng.next_u64()) * (i as u128 + 1)) >> 64) as usize;
        p.swap(i, j);
    }
    p
}
