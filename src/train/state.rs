//! Everything needed to resume a run exactly, as named tensors plus JSON metadata, and who writes it.
//!
//! Tensor names: `param/<name>` (weights), `momentum/<name>` (SGD buffers; zeros before the first update),
//! `ema/<name>` (EMA of the weights, when enabled), `buffer/<name>` (non-trainable model state, e.g. BatchNorm running
//! statistics). The metadata holds the step, the live hyperparameters, the loader position, the seed and the
//! effective preset. The run record serialises both (safetensors + JSON); [`SafetensorsWriter`] is the plain fallback.

use super::{Result, TrainError};
use crate::preset::Preset;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Version of [`TrainMeta`]'s layout.
pub const STATE_FORMAT: u32 = 1;

/// The hyperparameters that can change while a run goes on, at their current values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LiveValues {
    pub agc_lambda: f64,
    pub agc_enabled: bool,
    pub alpha: f64,
    /// Base learning rate at batch 256 (`optim.lr`).
    pub lr: f64,
    pub lr_scale: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub stats_every: u64,
}

impl LiveValues {
    /// The values a preset starts with.
    pub fn from_preset(p: &Preset) -> Self {
        Self {
            agc_lambda: p.agc.lambda,
            agc_enabled: p.agc.enabled,
            alpha: p.model.alpha,
            lr: p.optim.lr,
            lr_scale: p.optim.lr_scale,
            weight_decay: p.optim.weight_decay,
            momentum: p.optim.momentum,
            stats_every: p.run.stats_every,
        }
    }

    /// Write these values back into a preset (so a saved preset reproduces the live state).
    pub fn apply_to(&self, p: &mut Preset) {
        p.agc.lambda = self.agc_lambda;
        p.agc.enabled = self.agc_enabled;
        p.model.alpha = self.alpha;
        p.optim.lr = self.lr;
        p.optim.lr_scale = self.lr_scale;
        p.optim.weight_decay = self.weight_decay;
        p.optim.momentum = self.momentum;
        p.run.stats_every = self.stats_every;
    }
}

/// The JSON half of a [`TrainState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainMeta {
    pub format: u32,
    /// Steps completed: the next step to run.
    pub step: u64,
    /// Architecture name.
    pub model: String,
    /// The preset the run was started with, live values folded in.
    pub preset: Preset,
    pub live: LiveValues,
    /// Where the training data iterator stands (the data module's position, serialised).
    pub loader_position: serde_json::Value,
    /// Seed of the run; per-step randomness (stochastic depth, dropout) is derived from (seed, step).
    pub seed: u64,
    /// Consecutive non-finite steps at the time of the checkpoint.
    pub consecutive_bad: u32,
    /// Training images consumed so far.
    pub images_seen: u64,
    /// Parameter names in the trainer's order.
    pub param_names: Vec<String>,
    /// Epochs of the train split consumed.
    #[serde(default)]
    pub epoch: f64,
    /// Top-1 of the latest evaluation at or before this step (decides the "best" checkpoint).
    #[serde(default)]
    pub val_top1: Option<f64>,
}

/// A complete snapshot of a run.
#[derive(Debug, Clone)]
pub struct TrainState {
    /// Named tensors, on the host (CPU), in a stable order.
    pub tensors: Vec<(String, Tensor)>,
    pub meta: TrainMeta,
}

impl TrainState {
    /// The tensors by name.
    pub fn tensor_map(&self) -> HashMap<String, Tensor> {
        self.tensors.iter().cloned().collect()
    }

    /// A tensor by its full name (e.g. `param/stem.conv0.w`).
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Rebuild from named tensors and metadata (as read back by the run record).
    pub fn from_parts(tensors: HashMap<String, Tensor>, meta: TrainMeta) -> Result<Self> {
        if meta.format != STATE_FORMAT {
            return Err(TrainError::Checkpoint(format!(
                "unsupported state format {} (this build reads {STATE_FORMAT})",
                meta.format
            )));
        }
        let mut tensors: Vec<(String, Tensor)> = tensors.into_iter().collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self { tensors, meta })
    }

    /// Write `<stem>.safetensors` and `<stem>.json` (not atomic; the run record's writer is).
    pub fn save(&self, stem: &Path) -> Result<PathBuf> {
        let st = stem.with_extension("safetensors");
        let json = stem.with_extension("json");
        if let Some(dir) = stem.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", dir.display())))?;
        }
        candle_core::safetensors::save(&self.tensor_map(), &st)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", st.display())))?;
        let text = serde_json::to_string_pretty(&self.meta)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", json.display())))?;
        std::fs::write(&json, text)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", json.display())))?;
        Ok(st)
    }

    /// Read what [`TrainState::save`] wrote; `path` is the `.safetensors` file or the common stem.
    pub fn load(path: &Path) -> Result<Self> {
        let st = path.with_extension("safetensors");
        let json = path.with_extension("json");
        let tensors = candle_core::safetensors::load(&st, &Device::Cpu)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", st.display())))?;
        let text = std::fs::read_to_string(&json)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", json.display())))?;
        let meta: TrainMeta = serde_json::from_str(&text)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", json.display())))?;
        Self::from_parts(tensors, meta)
    }
}

/// Writes checkpoints for the trainer; returns the path written (reported in `Event::Checkpoint`).
pub trait CheckpointWriter: Send {
    fn write(&mut self, state: &TrainState) -> std::result::Result<PathBuf, String>;
}

/// The fallback writer: `<dir>/step-<N>.safetensors` + `.json`.
pub struct SafetensorsWriter {
    pub dir: PathBuf,
}

impl CheckpointWriter for SafetensorsWriter {
    fn write(&mut self, state: &TrainState) -> std::result::Result<PathBuf, String> {
        let stem = self.dir.join(format!("step-{:08}", state.meta.step));
        state.save(&stem).map_err(|e| e.to_string())
    }
}
