//! Exponential moving average of the weights, evaluated instead of (or besides) the raw weights:
//! `ema = d_t * ema + (1 - d_t) * p` after each update, starting from the initial weights.
//!
//! `d_t` follows DeepMind's `nfnets/utils.py` (deepmind-research commit f5de0ede8430809180254ee957abf36ed62579ef):
//! `tf1_ema` (the default `which_ema` of their experiments) warms the decay up as `min(d, (1 + t) / (10 + t))` with
//! `t` the global step before the update, so early averages are not dominated by the random initialisation; `ema`
//! keeps `d` constant. Before `start` (their `ema_start`, which their code declares but never reads) the average
//! simply follows the weights, and the warm-up counts from `start`.

use candle_core::{Result, Tensor, Var};
use serde::{Deserialize, Serialize};

/// `optim.ema_warmup`: how the decay behaves early in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmaWarmup {
    /// `d` at every step (DeepMind's `ema`).
    #[default]
    Constant,
    /// `min(d, (1 + t) / (10 + t))` (DeepMind's `tf1_ema`).
    Tf1,
}

/// How the average is kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmaSchedule {
    pub decay: f64,
    pub warmup: EmaWarmup,
    /// The first step (0-based, the steps done before the update) that averages; before it the average is the
    /// weights.
    pub start: u64,
}

impl EmaSchedule {
    /// The decay applied by the update after `step` steps were done.
    pub fn decay_at(&self, step: u64) -> f64 {
        let Some(t) = step.checked_sub(self.start) else {
            return 0.0;
        };
        match self.warmup {
            EmaWarmup::Constant => self.decay,
            EmaWarmup::Tf1 => self.decay.min((1.0 + t as f64) / (10.0 + t as f64)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Ema {
    pub decay: f64,
    schedule: EmaSchedule,
    shadows: Vec<Tensor>,
}

impl Ema {
    /// Start the average at the current values of `vars`, constant decay from step 0.
    pub fn new(decay: f64, vars: &[&Var]) -> Result<Self> {
        let schedule = EmaSchedule {
            decay,
            warmup: EmaWarmup::Constant,
            start: 0,
        };
        Self::with_schedule(schedule, vars)
    }

    /// Start the average at the current values of `vars`, kept by `schedule`.
    pub fn with_schedule(schedule: EmaSchedule, vars: &[&Var]) -> Result<Self> {
        let shadows = vars
            .iter()
            .map(|v| v.as_tensor().detach().copy())
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            decay: schedule.decay,
            schedule,
            shadows,
        })
    }

    pub fn schedule(&self) -> &EmaSchedule {
        &self.schedule
    }

    /// Fold the current values of `vars` (same order as at creation) into the average with the constant decay.
    pub fn update(&mut self, vars: &[&Var]) -> Result<()> {
        self.fold(vars, self.decay)
    }

    /// Fold the current values of `vars` in after the update of step `step` (the steps done before it).
    pub fn update_at(&mut self, vars: &[&Var], step: u64) -> Result<()> {
        self.fold(vars, self.schedule.decay_at(step))
    }

    fn fold(&mut self, vars: &[&Var], d: f64) -> Result<()> {
        for (shadow, var) in self.shadows.iter_mut().zip(vars) {
            let p = var.as_tensor().detach();
            *shadow = if d == 0.0 {
                p.copy()?
            } else {
                ((&*shadow * d)? + (p * (1.0 - d))?)?
            };
        }
        Ok(())
    }

    pub fn shadows(&self) -> &[Tensor] {
        &self.shadows
    }

    /// Replace the averages (for resuming from a checkpoint); same order and shapes as the parameters.
    pub fn load(&mut self, shadows: Vec<Tensor>) {
        self.shadows = shadows;
    }
}
