//! A tiny two-layer MLP on synthetic 4x4 data for the trainer's tests: deterministic weights, and a `poison` flag
//! that makes its output NaN.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor, Var};
use nfbench::model::{Param, ParamKind};
use nfbench::train::{SourceInfo, TrainModel};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub const INFO: SourceInfo = SourceInfo {
    num_classes: 4,
    in_channels: 1,
    resolution: 4,
    train_images: 256,
    val_images: 64,
};

/// A two-layer MLP; `poison` makes its output NaN.
pub struct Mlp {
    pub params: Vec<Param>,
    poison: Arc<AtomicBool>,
}

pub fn det(shape: &[usize], scale: f32, salt: u32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| {
            (((i as u32).wrapping_mul(2654435761).wrapping_add(salt) >> 8) % 1000) as f32 / 1000.0
                - 0.5
        })
        .map(|x| x * scale)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

impl Mlp {
    pub fn new(poison: Arc<AtomicBool>) -> Self {
        let d = INFO.in_channels * INFO.resolution * INFO.resolution;
        let p = |name: &str, t: Tensor, kind| Param {
            name: name.into(),
            var: Var::from_tensor(&t).unwrap(),
            kind,
        };
        Self {
            params: vec![
                p("hidden.w", det(&[16, d], 0.5, 1), ParamKind::LinearWeight),
                p(
                    "hidden.b",
                    Tensor::zeros(16, DType::F32, &Device::Cpu).unwrap(),
                    ParamKind::Bias,
                ),
                p(
                    "gain",
                    Tensor::ones(16, DType::F32, &Device::Cpu).unwrap(),
                    ParamKind::Gain,
                ),
                p(
                    "linear.w",
                    det(&[INFO.num_classes, 16], 0.5, 2),
                    ParamKind::LinearWeight,
                ),
                p(
                    "linear.b",
                    Tensor::zeros(INFO.num_classes, DType::F32, &Device::Cpu).unwrap(),
                    ParamKind::Bias,
                ),
            ],
            poison,
        }
    }
}

impl TrainModel for Mlp {
    fn name(&self) -> String {
        "mlp".into()
    }
    fn params(&self) -> &[Param] {
        &self.params
    }
    fn forward(
        &mut self,
        x: &Tensor,
        _train: bool,
        spp: bool,
        _seed: u64,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let w = |i: usize| self.params[i].var.as_tensor();
        let x = x.flatten_from(1)?;
        let h = x
            .matmul(&w(0).t()?)?
            .broadcast_add(w(1))?
            .relu()?
            .broadcast_mul(w(2))?;
        let mut logits = h.matmul(&w(3).t()?)?.broadcast_add(w(4))?;
        if self.poison.load(Ordering::SeqCst) {
            logits = (logits * f64::NAN)?;
        }
        let spp = if spp {
            Some(Tensor::new(&[[0.0f32, 1.0, 0.5]], &Device::Cpu)?)
        } else {
            None
        };
        Ok((logits, spp))
    }
    fn set_alpha(&mut self, _alpha: f64) -> Result<(), nfbench::model::ModelError> {
        Ok(())
    }
    fn spp_blocks(&self) -> Vec<(String, f64)> {
        vec![("b0".into(), 1.0)]
    }
    fn buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    fn load_buffers(
        &mut self,
        _b: &HashMap<String, Tensor>,
    ) -> Result<(), nfbench::model::ModelError> {
        Ok(())
    }
}
