//! The NFNet learning-rate schedule: peak = base_lr * batch / 256, linear warm-up from 0, then cosine to 0 at the
//! last step. The live `lr_scale` multiplies the result (applied by the trainer, not here).

/// A warm-up + cosine schedule over `total_steps` steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub peak: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl LrSchedule {
    /// Peak rate scaled linearly with the batch size, as in the paper.
    pub fn peak_lr(base_lr: f64, batch_size: usize) -> f64 {
        base_lr * batch_size as f64 / 256.0
    }

    /// Warm-up length in steps for `warmup_epochs` epochs of a train split of `train_images` images.
    pub fn warmup_steps(warmup_epochs: f64, train_images: usize, batch_size: usize) -> u64 {
        let steps_per_epoch = train_images as f64 / batch_size.max(1) as f64;
        (warmup_epochs.max(0.0) * steps_per_epoch).round() as u64
    }

    pub fn new(peak: f64, warmup_steps: u64, total_steps: u64) -> Self {
        Self {
            peak,
            warmup_steps,
            total_steps,
        }
    }

    /// The learning rate at (0-based) step `step`: `peak * step / warmup` during warm-up, then
    /// `peak * 0.5 * (1 + cos(pi * t))` with t going from 0 at the end of warm-up to 1 at `total_steps`.
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak * step as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps);
        if span == 0 {
            return self.peak;
        }
        let t = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        self.peak * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }
}
