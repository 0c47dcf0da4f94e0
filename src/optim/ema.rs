//! Exponential moving average of the weights, evaluated instead of the raw weights when enabled:
//! `ema = decay * ema + (1 - decay) * p`, starting from the initial weights.

use candle_core::{Result, Tensor, Var};

#[derive(Debug, Clone)]
pub struct Ema {
    pub decay: f64,
    shadows: Vec<Tensor>,
}

impl Ema {
    /// Start the average at the current values of `vars`.
    pub fn new(decay: f64, vars: &[&Var]) -> Result<Self> {
        let shadows = vars
            .iter()
            .map(|v| v.as_tensor().detach().copy())
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { decay, shadows })
    }

    /// Fold the current values of `vars` (same order as at creation) into the average.
    pub fn update(&mut self, vars: &[&Var]) -> Result<()> {
        let d = self.decay;
        for (shadow, var) in self.shadows.iter_mut().zip(vars) {
            let p = var.as_tensor().detach();
            *shadow = ((&*shadow * d)? + (p * (1.0 - d))?)?;
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
