//! SGD with (Nesterov) momentum and coupled weight decay, as in the NFNet reference:
//!
//! ```text
//! d   = g + wd * p            (only for parameters whose kind decays: conv and linear weights)
//! buf = momentum * buf + d    (buf starts at 0)
//! d   = d + momentum * buf    (Nesterov) or d = buf (heavy ball)
//! p   = p - lr * d
//! ```
//!
//! The gradient `g` arrives already clipped by AGC: clipping comes before decay and momentum.

use candle_core::{Result, Tensor, Var};

/// The live knobs of the optimiser.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
}

/// Momentum buffers, one per parameter in the trainer's parameter order.
#[derive(Debug, Clone)]
pub struct Sgd {
    pub config: SgdConfig,
    buffers: Vec<Option<Tensor>>,
}

impl Sgd {
    pub fn new(num_params: usize, config: SgdConfig) -> Self {
        Self {
            config,
            buffers: vec![None; num_params],
        }
    }

    /// Update parameter `index` in place with gradient `grad` (already clipped) at learning rate `lr`.
    pub fn update(
        &mut self,
        index: usize,
        var: &Var,
        decays: bool,
        grad: &Tensor,
        lr: f64,
    ) -> Result<()> {
        let p = var.as_tensor().detach();
        // Detached so the momentum buffer never holds the backward graph that produced `grad` (a leak of every
        // step's activations otherwise).
        let grad = grad.detach().to_dtype(p.dtype())?;
        let d = if decays && self.config.weight_decay != 0.0 {
            (&grad + (&p * self.config.weight_decay)?)?
        } else {
            grad
        };
        let m = self.config.momentum;
        let update = if m != 0.0 {
            let buf = match self.buffers.get(index).and_then(|b| b.as_ref()) {
                Some(prev) => ((prev * m)? + &d)?,
                None => d.clone(),
            };
            let update = if self.config.nesterov {
                (&d + (&buf * m)?)?
            } else {
                buf.clone()
            };
            self.set_buffer(index, buf);
            update
        } else {
            d
        };
        var.set(&(p - (update * lr)?)?)
    }

    fn set_buffer(&mut self, index: usize, buf: Tensor) {
        if index >= self.buffers.len() {
            self.buffers.resize(index + 1, None);
        }
        self.buffers[index] = Some(buf);
    }

    /// The momentum buffer of parameter `index` (None until its first update).
    pub fn buffer(&self, index: usize) -> Option<&Tensor> {
        self.buffers.get(index).and_then(|b| b.as_ref())
    }

    /// Replace the momentum buffer of parameter `index` (for resuming from a checkpoint).
    pub fn load_buffer(&mut self, index: usize, buf: Tensor) {
        self.set_buffer(index, buf);
    }
}
