//! RandAugment on 8-bit RGB images, following DeepMind's `nfnets/autoaugment.py` (deepmind-research commit
//! f5de0ede8430809180254ee957abf36ed62579ef; the TPU ImageNet version of Cubuk et al.):
//! `distort_image_with_randaugment(image, num_layers, magnitude)` applies `num_layers` ops, each drawn uniformly from
//! the 16 of `available_ops`, every one at the same `magnitude` on a scale whose maximum is `_MAX_LEVEL = 10`, with
//! the arguments of `level_to_arg` (`cutout_const = 40`, `translate_const = 100` pixels), geometric ops filling with
//! the grey `replace = 128`. The per-op probability the TF graph draws is never used there (the selected op always
//! applies), so none is drawn here.
//!
//! Faithfulness notes, where DeepMind's code does something one might not expect and this file does it too:
//! - `Contrast` blends towards the constant `H * W / 256` (their `reduce_sum(histogram) / 256` is the pixel count,
//!   not the mean grey), clipped to 255.
//! - `Posterize` keeps `int(level / 10 * 4)` bits: magnitude 5 keeps 2 bits (the lower the level, the stronger).
//! - Enhancement factors are `level / 10 * 1.8 + 0.1`, so magnitude 5 gives 1.0: Color, Contrast, Brightness and
//!   Sharpness are the identity at F0's magnitude.
//! - Geometric ops use nearest-neighbour sampling of the inverse map (TF's `ImageProjectiveTransform`, NEAREST, round
//!   half away from zero); `translate_const` and `cutout_const` are pixels, meant for 224 px images.
//!
//! Randomness (op choice, signs, the cutout centre) comes from the generator the caller passes, keyed per image.

use super::image::RgbImage;
use rand_chacha::rand_core::RngCore;
use rand_chacha::ChaCha8Rng;

/// The top of the level scale (`_MAX_LEVEL`).
pub const MAX_LEVEL: f64 = 10.0;
/// The fill of pixels a geometric op or Cutout leaves empty (`replace_value`).
pub const REPLACE: u8 = 128;
/// Domain tag of RandAugment's per-image generator in [`super::augment::rng_for`].
pub const RANDAUGMENT_TAG: u64 = 3;

/// The ops of `available_ops`, in DeepMind's order (the order the uniform draw indexes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    AutoContrast,
    Equalize,
    Invert,
    Rotate,
    Posterize,
    Solarize,
    Color,
    Contrast,
    Brightness,
    Sharpness,
    ShearX,
    ShearY,
    TranslateX,
    TranslateY,
    Cutout,
    SolarizeAdd,
}

/// `available_ops` of `distort_image_with_randaugment`.
pub const OPS: [Op; 16] = [
    Op::AutoContrast,
    Op::Equalize,
    Op::Invert,
    Op::Rotate,
    Op::Posterize,
    Op::Solarize,
    Op::Color,
    Op::Contrast,
    Op::Brightness,
    Op::Sharpness,
    Op::ShearX,
    Op::ShearY,
    Op::TranslateX,
    Op::TranslateY,
    Op::Cutout,
    Op::SolarizeAdd,
];

/// The pixel constants of `augmentation_hparams`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelConsts {
    /// Translation at level 10, pixels (`translate_const`, 100).
    pub translate: u32,
    /// Cutout half-side at level 10, pixels (`cutout_const`, 40).
    pub cutout: u32,
}

impl Default for PixelConsts {
    fn default() -> Self {
        Self {
            translate: 100,
            cutout: 40,
        }
    }
}

/// `level_to_arg(hparams)[op](level)` before the random sign: degrees, bits, threshold, addition, enhancement
/// factor, shear, pixels or cutout half-side (0 for the ops without an argument). Python's `int()` truncates.
pub fn level_arg(op: Op, level: f64, consts: PixelConsts) -> f64 {
    let frac = level / MAX_LEVEL;
    match op {
        Op::AutoContrast | Op::Equalize | Op::Invert => 0.0,
        Op::Rotate => frac * 30.0,
        Op::Posterize => (frac * 4.0).trunc(),
        Op::Solarize => (frac * 256.0).trunc(),
        Op::SolarizeAdd => (frac * 110.0).trunc(),
        Op::Color | Op::Contrast | Op::Brightness | Op::Sharpness => frac * 1.8 + 0.1,
        Op::ShearX | Op::ShearY => frac * 0.3,
        Op::TranslateX | Op::TranslateY => frac * consts.translate as f64,
        Op::Cutout => (frac * consts.cutout as f64).trunc(),
    }
}

/// One op with its concrete arguments (signs and the cutout centre drawn).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OpArg {
    AutoContrast,
    Equalize,
    Invert,
    /// Degrees; the inverse map is TF's `angles_to_projective_transforms` of the radians.
    Rotate(f64),
    /// Bits kept.
    Posterize(u32),
    /// Values `>= threshold` are inverted.
    Solarize(i64),
    /// Values below 128 get this added (clipped).
    SolarizeAdd(i64),
    Color(f64),
    Contrast(f64),
    Brightness(f64),
    Sharpness(f64),
    /// Output `(x, y)` samples input `(x + s * y, y)`.
    ShearX(f64),
    /// Output `(x, y)` samples input `(x, s * x + y)`.
    ShearY(f64),
    /// Output `(x, y)` samples input `(x + p, y)`.
    TranslateX(f64),
    /// Output `(x, y)` samples input `(x, y + p)`.
    TranslateY(f64),
    /// Grey square `[cx - pad, cx + pad) x [cy - pad, cy + pad)`, clipped.
    Cutout {
        pad: usize,
        cx: usize,
        cy: usize,
    },
}

/// A uniform integer in `0..n` (`n >= 1`).
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

/// `_randomly_negate_tensor`: the sign flips with probability 1/2.
fn random_sign(rng: &mut ChaCha8Rng, v: f64) -> f64 {
    if rng.next_u64() & 1 == 1 {
        -v
    } else {
        v
    }
}

impl Op {
    /// The op at `level` on a `width` x `height` image, its random parts drawn from `rng`.
    pub fn at_level(
        self,
        level: f64,
        consts: PixelConsts,
        (width, height): (u32, u32),
        rng: &mut ChaCha8Rng,
    ) -> OpArg {
        let v = level_arg(self, level, consts);
        match self {
            Op::AutoContrast => OpArg::AutoContrast,
            Op::Equalize => OpArg::Equalize,
            Op::Invert => OpArg::Invert,
            Op::Rotate => OpArg::Rotate(random_sign(rng, v)),
            Op::Posterize => OpArg::Posterize(v as u32),
            Op::Solarize => OpArg::Solarize(v as i64),
            Op::SolarizeAdd => OpArg::SolarizeAdd(v as i64),
            Op::Color => OpArg::Color(v),
            Op::Contrast => OpArg::Contrast(v),
            Op::Brightness => OpArg::Brightness(v),
            Op::Sharpness => OpArg::Sharpness(v),
            Op::ShearX => OpArg::ShearX(random_sign(rng, v)),
            Op::ShearY => OpArg::ShearY(random_sign(rng, v)),
            Op::TranslateX => OpArg::TranslateX(random_sign(rng, v)),
            Op::TranslateY => OpArg::TranslateY(random_sign(rng, v)),
            Op::Cutout => OpArg::Cutout {
                pad: v as usize,
                cy: below(rng, height as usize),
                cx: below(rng, width as usize),
            },
        }
    }
}

/// RandAugment with `layers` ops at `magnitude`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandAugment {
    layers: u32,
    magnitude: u32,
    consts: PixelConsts,
}

impl RandAugment {
    pub fn new(layers: u32, magnitude: u32, consts: PixelConsts) -> Self {
        Self {
            layers,
            magnitude,
            consts,
        }
    }

    /// DeepMind's name suffix: `405` is 4 layers at magnitude 5; a number up to 100 is a magnitude with 2 layers.
    pub fn from_code(code: u32, consts: PixelConsts) -> Self {
        if code > 100 {
            Self::new(code / 100, code % 100, consts)
        } else {
            Self::new(2, code, consts)
        }
    }

    pub fn layers(&self) -> u32 {
        self.layers
    }

    pub fn magnitude(&self) -> u32 {
        self.magnitude
    }

    /// The ops one image gets, drawn from its generator.
    pub fn draw(&self, size: (u32, u32), rng: &mut ChaCha8Rng) -> Vec<OpArg> {
        (0..self.layers)
            .map(|_| {
                let op = OPS[below(rng, OPS.len())];
                op.at_level(self.magnitude as f64, self.consts, size, rng)
            })
            .collect()
    }

    /// Augment `image` in place with ops drawn from `rng`.
    pub fn apply(&self, image: &mut RgbImage, rng: &mut ChaCha8Rng) {
        for op in self.draw((image.width(), image.height()), rng) {
            apply_op(image, op);
        }
    }
}

/// Apply one op to `image` in place.
pub fn apply_op(image: &mut RgbImage, op: OpArg) {
    match op {
        OpArg::AutoContrast => autocontrast(image),
        OpArg::Equalize => equalize(image),
        OpArg::Invert => map_values(image, |v| 255 - v),
        OpArg::Posterize(bits) => {
            let shift = 8u32.saturating_sub(bits);
            map_values(
                image,
                |v| if shift >= 8 { 0 } else { (v >> shift) << shift },
            );
        }
        OpArg::Solarize(t) => map_values(image, |v| if (v as i64) < t { v } else { 255 - v }),
        OpArg::SolarizeAdd(a) => map_values(image, |v| {
            if v < 128 {
                (v as i64 + a).clamp(0, 255) as u8
            } else {
                v
            }
        }),
        OpArg::Color(f) => {
            let grey = greyscale(image);
            blend_with(image, |i, _| grey[i / 3], f);
        }
        OpArg::Contrast(f) => {
            let n = image.width() as f32 * image.height() as f32;
            let mean = (n / 256.0).clamp(0.0, 255.0) as u8;
            blend_with(image, |_, _| mean, f);
        }
        OpArg::Brightness(f) => blend_with(image, |_, _| 0, f),
        OpArg::Sharpness(f) => {
            let smooth = smoothed(image);
            blend_with(image, |i, _| smooth[i], f);
        }
        OpArg::Rotate(degrees) => {
            let r = degrees.to_radians();
            let (w, h) = (image.width() as f64 - 1.0, image.height() as f64 - 1.0);
            let (c, s) = (r.cos(), r.sin());
            let x_off = (w - (c * w - s * h)) / 2.0;
            let y_off = (h - (s * w + c * h)) / 2.0;
            transform(image, [c, -s, x_off, s, c, y_off]);
        }
        OpArg::ShearX(s) => transform(image, [1.0, s, 0.0, 0.0, 1.0, 0.0]),
        OpArg::ShearY(s) => transform(image, [1.0, 0.0, 0.0, s, 1.0, 0.0]),
        OpArg::TranslateX(p) => transform(image, [1.0, 0.0, p, 0.0, 1.0, 0.0]),
        OpArg::TranslateY(p) => transform(image, [1.0, 0.0, 0.0, 0.0, 1.0, p]),
        OpArg::Cutout { pad, cx, cy } => cutout(image, pad, cx, cy),
    }
}

fn map_values(image: &mut RgbImage, f: impl Fn(u8) -> u8) {
    let lut: Vec<u8> = (0..=255u8).map(f).collect();
    for v in image.pixels_mut() {
        *v = lut[*v as usize];
    }
}

/// DeepMind's `blend(degenerate, image, factor)`: `degenerate + factor * (image - degenerate)` in f32, truncated to
/// u8, clipped to [0, 255] only when extrapolating (factor outside (0, 1)). `degenerate(i, v)` gives the degenerate
/// value at byte `i` whose image value is `v`.
fn blend_with(image: &mut RgbImage, degenerate: impl Fn(usize, u8) -> u8, factor: f64) {
    if factor == 1.0 {
        return;
    }
    let f = factor as f32;
    let interpolate = factor > 0.0 && factor < 1.0;
    for (i, v) in image.pixels_mut().iter_mut().enumerate() {
        let d = degenerate(i, *v) as f32;
        let t = d + f * (*v as f32 - d);
        *v = if interpolate {
            t as u8
        } else {
            t.clamp(0.0, 255.0) as u8
        };
    }
}

/// `tf.image.rgb_to_grayscale` on u8: weights (0.2989, 0.5870, 0.1140) on values / 255, back to u8 by `* 255.5`
/// truncated (TF's `convert_image_dtype`). One value per pixel.
pub fn greyscale(image: &RgbImage) -> Vec<u8> {
    image
        .pixels()
        .chunks_exact(3)
        .map(|p| {
            let g = p[0] as f32 / 255.0 * 0.2989
                + p[1] as f32 / 255.0 * 0.587
                + p[2] as f32 / 255.0 * 0.114;
            (g * 255.5).min(255.0) as u8
        })
        .collect()
}

/// Sharpness' degenerate image: the 3x3 kernel `[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13` on the interior (clipped,
/// truncated), the one-pixel border left as it is.
fn smoothed(image: &RgbImage) -> Vec<u8> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let src = image.pixels();
    let mut out = src.to_vec();
    if w < 3 || h < 3 {
        return out;
    }
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            for c in 0..3 {
                let mut sum = 0u32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        sum += src[((y + dy - 1) * w + x + dx - 1) * 3 + c] as u32;
                    }
                }
                sum += 4 * src[(y * w + x) * 3 + c] as u32;
                out[(y * w + x) * 3 + c] = (sum as f32 / 13.0).clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// Per channel: stretch [lo, hi] to [0, 255] (`scale = 255 / (hi - lo)`, `offset = -lo * scale`, clipped,
/// truncated); a flat channel stays.
fn autocontrast(image: &mut RgbImage) {
    for c in 0..3 {
        let vals = image.pixels().iter().skip(c).step_by(3);
        let (lo, hi) = vals.fold((255u8, 0u8), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        if hi <= lo {
            continue;
        }
        let scale = 255.0 / (hi as f32 - lo as f32);
        let offset = -(lo as f32) * scale;
        for v in image.pixels_mut().iter_mut().skip(c).step_by(3) {
            *v = (*v as f32 * scale + offset).clamp(0.0, 255.0) as u8;
        }
    }
}

/// The equalisation table of one channel's histogram: `step = (sum - last nonzero bin) / 255` (integer); `None`
/// (leave the channel) when the step is 0; else `lut[v] = (cumsum[v - 1] + step / 2) / step`, `lut[0] = 0`.
pub fn equalize_lut(hist: &[u64; 256]) -> Option<[u8; 256]> {
    let last = hist.iter().rev().find(|&&n| n > 0).copied().unwrap_or(0);
    let total: u64 = hist.iter().sum();
    let step = (total - last) / 255;
    if step == 0 {
        return None;
    }
    let mut lut = [0u8; 256];
    let mut cum = 0u64;
    for v in 0..255 {
        cum += hist[v];
        lut[v + 1] = ((cum + step / 2) / step).min(255) as u8;
    }
    Some(lut)
}

fn equalize(image: &mut RgbImage) {
    for c in 0..3 {
        let mut hist = [0u64; 256];
        for &v in image.pixels().iter().skip(c).step_by(3) {
            hist[v as usize] += 1;
        }
        if let Some(lut) = equalize_lut(&hist) {
            for v in image.pixels_mut().iter_mut().skip(c).step_by(3) {
                *v = lut[*v as usize];
            }
        }
    }
}

/// Resample through the inverse map `input = (a0 x + a1 y + a2, b0 x + b1 y + b2)` with nearest-neighbour
/// rounding; outside the image, [`REPLACE`].
fn transform(image: &mut RgbImage, [a0, a1, a2, b0, b1, b2]: [f64; 6]) {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let src = image.pixels().to_vec();
    let out = image.pixels_mut();
    for y in 0..h {
        for x in 0..w {
            let (xf, yf) = (x as f64, y as f64);
            let sx = (a0 * xf + a1 * yf + a2).round();
            let sy = (b0 * xf + b1 * yf + b2).round();
            let o = (y * w + x) * 3;
            if sx >= 0.0 && sy >= 0.0 && (sx as usize) < w && (sy as usize) < h {
                let i = (sy as usize * w + sx as usize) * 3;
                out[o..o + 3].copy_from_slice(&src[i..i + 3]);
            } else {
                out[o..o + 3].fill(REPLACE);
            }
        }
    }
}

fn cutout(image: &mut RgbImage, pad: usize, cx: usize, cy: usize) {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let (x0, x1) = (cx.saturating_sub(pad), (cx + pad).min(w));
    let (y0, y1) = (cy.saturating_sub(pad), (cy + pad).min(h));
    let px = image.pixels_mut();
    for y in y0..y1 {
        px[(y * w + x0) * 3..(y * w + x1) * 3].fill(REPLACE);
    }
}
