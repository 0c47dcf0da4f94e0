//! MixUp and CutMix of a training batch, as DeepMind's NFNet input pipeline does them (deepmind-research
//! `nfnets/dataset.py`, commit f5de0ede8430809180254ee957abf36ed62579ef: `cutmix_padding`, `my_mixup`, `my_cutmix`,
//! `my_mixup_cutmix`).
//!
//! - A mixed batch of `B` images is made from `2 * B` source images: output image `j` mixes source `j` (its first
//!   label, weight `r`) with source `B + j` (its second label, weight `1 - r`). DeepMind pairs `j` with `bs + j`
//!   inside each quarter of a shuffled `2 * B` batch; any fixed pairing of shuffled images is the same in law.
//! - MixUp: `r ~ Beta(alpha, alpha)` per image (alpha 0.2 by default), `x = r * x_a + (1 - r) * x_b`.
//! - CutMix: a box centred at a uniform pixel with sides `int(sqrt(1 - u) * side)`, `u ~ U[0, 1)`, clipped to the
//!   image; inside the box the first image, outside the second, and `r` is the box's clipped area over the image
//!   area (DeepMind's `reduce_mean(mask)`), not the drawn `1 - u`.
//! - `mixup_cutmix`: the first `floor(B / 2)` images MixUp, the rest CutMix (`my_mixup_cutmix`).
//!
//! Every draw comes from a generator keyed by (seed, epoch, batch, output image), so a batch is the same on any
//! thread and after any resume.

use super::augment::rng_for;
use candle_core::Tensor;
use rand_chacha::rand_core::RngCore;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Which batch-level mixing a training batch gets (DeepMind's `augment_name` containing `mixup` and/or `cutmix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mixing {
    /// No mixing: hard labels.
    #[default]
    None,
    /// Every image is a MixUp of two (`my_mixup`).
    Mixup,
    /// Every image is a CutMix of two (`my_cutmix`).
    Cutmix,
    /// The first half of the batch MixUp, the second half CutMix (`my_mixup_cutmix`).
    MixupCutmix,
}

impl Mixing {
    /// Source images read per output image: two when mixing (DeepMind batches `2 * B` images and mixes pairs).
    pub fn rows_per_image(self) -> usize {
        if self == Mixing::None {
            1
        } else {
            2
        }
    }

    /// The spelling in presets.
    pub fn as_str(self) -> &'static str {
        match self {
            Mixing::None => "none",
            Mixing::Mixup => "mixup",
            Mixing::Cutmix => "cutmix",
            Mixing::MixupCutmix => "mixup_cutmix",
        }
    }
}

/// Domain tag of the mixing draws in [`rng_for`] (the loader uses 1 and 2, RandAugment 3).
pub const MIX_TAG: u64 = 4;

/// The soft targets of a mixed batch beside its first labels (`Batch::labels`), per image, on the CPU.
#[derive(Debug, Clone)]
pub struct MixTargets {
    /// u32 `[B]`: the label of the image mixed in.
    pub labels_b: Tensor,
    /// f32 `[B]`: the weight of the first label; `1 - weight_a` goes to `labels_b`.
    pub weight_a: Tensor,
}

/// The CutMix box `[x0, x1) x [y0, y1)` in pixels, already clipped to the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutBox {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

impl CutBox {
    pub fn contains(&self, x: usize, y: usize) -> bool {
        (self.x0..self.x1).contains(&x) && (self.y0..self.y1).contains(&y)
    }

    pub fn area(&self) -> usize {
        (self.x1 - self.x0) * (self.y1 - self.y0)
    }
}

/// How one output image is mixed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MixDraw {
    /// `r * a + (1 - r) * b` everywhere.
    Mixup { ratio: f32 },
    /// `a` inside the box, `b` outside; `lambda` is the drawn `1 - u` before clipping (what the box aimed at).
    Cutmix { cut: CutBox, lambda: f32 },
}

impl MixDraw {
    /// The weight of the first image's label: the MixUp ratio, or the CutMix box's share of the `height x width`
    /// image.
    pub fn weight_a(&self, height: usize, width: usize) -> f32 {
        match *self {
            MixDraw::Mixup { ratio } => ratio,
            MixDraw::Cutmix { cut, .. } => cut.area() as f32 / (height * width) as f32,
        }
    }
}

/// A uniform f64 in [0, 1) from 53 random bits.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform integer in `0..n` (`n >= 1`), by multiply-shift.
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller; 1 - unit is in (0, 1], so the log is finite.
    let (u1, u2) = (1.0 - unit(rng), unit(rng));
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Gamma(k, 1) by Marsaglia and Tsang, boosted by `U^(1/k)` for `k < 1`. Written here (not `rand_distr`) so the
/// batches of a seed survive dependency updates.
fn gamma(rng: &mut ChaCha8Rng, k: f64) -> f64 {
    if k < 1.0 {
        return gamma(rng, k + 1.0) * (1.0 - unit(rng)).powf(1.0 / k);
    }
    let d = k - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = 1.0 - unit(rng);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// The MixUp ratio `r ~ Beta(alpha, alpha)`.
pub fn draw_mixup_ratio(rng: &mut ChaCha8Rng, alpha: f64) -> f32 {
    let (x, y) = (gamma(rng, alpha), gamma(rng, alpha));
    if x + y > 0.0 {
        (x / (x + y)) as f32
    } else {
        0.5
    }
}

/// DeepMind's `cutmix_padding(h, w)`: centre uniform over the pixels, side ratio `sqrt(1 - u)`, truncated to whole
/// pixels, half-sides by integer division, clipped to the image.
pub fn draw_cutmix_box(rng: &mut ChaCha8Rng, height: usize, width: usize) -> MixDraw {
    let r_x = below(rng, width) as i64;
    let r_y = below(rng, height) as i64;
    let u = unit(rng) as f32;
    let side = (1.0 - u).sqrt();
    let r_w = (side * width as f32) as i64;
    let r_h = (side * height as f32) as i64;
    let clip = |v: i64, hi: usize| v.clamp(0, hi as i64) as usize;
    let cut = CutBox {
        x0: clip(r_x - r_w / 2, width),
        y0: clip(r_y - r_h / 2, height),
        x1: clip(r_x + r_w / 2, width),
        y1: clip(r_y + r_h / 2, height),
    };
    MixDraw::Cutmix {
        cut,
        lambda: 1.0 - u,
    }
}

/// Options of [`plan`].
#[derive(Debug, Clone, Copy)]
pub struct PlanOptions {
    pub mixing: Mixing,
    pub alpha: f64,
    pub height: usize,
    pub width: usize,
    pub seed: u64,
    pub epoch: u64,
    pub batch: u64,
}

/// The draw of each of the `n` output images of batch (`epoch`, `batch`); empty when mixing is off.
pub fn plan(n: usize, o: PlanOptions) -> Vec<MixDraw> {
    let mixup_count = match o.mixing {
        Mixing::None => return Vec::new(),
        Mixing::Mixup => n,
        Mixing::Cutmix => 0,
        Mixing::MixupCutmix => n / 2,
    };
    (0..n)
        .map(|j| {
            let mut rng = rng_for(o.seed, &[MIX_TAG, o.epoch, o.batch, j as u64]);
            if j < mixup_count {
                MixDraw::Mixup {
                    ratio: draw_mixup_ratio(&mut rng, o.alpha),
                }
            } else {
                draw_cutmix_box(&mut rng, o.height, o.width)
            }
        })
        .collect()
}

/// Mix two HWC f32 images of `width` pixels per row and `channels` values per pixel into `out`.
pub fn mix_pair(
    a: &[f32],
    b: &[f32],
    draw: MixDraw,
    width: usize,
    channels: usize,
    out: &mut [f32],
) {
    match draw {
        MixDraw::Mixup { ratio } => {
            for ((o, &va), &vb) in out.iter_mut().zip(a).zip(b) {
                *o = ratio * va + (1.0 - ratio) * vb;
            }
        }
        MixDraw::Cutmix { cut, .. } => {
            let row = width * channels;
            for (i, ((o, &va), &vb)) in out.iter_mut().zip(a).zip(b).enumerate() {
                let (y, x) = (i / row, (i % row) / channels);
                *o = if cut.contains(x, y) { va } else { vb };
            }
        }
    }
}
