//! Everything needed to resume a run exactly, as named tensors plus JSON metadata, and who writes it.
//!
//! Tensor names: `param/<name>` (weights), `momentum/<name>` (SGD buffers; zeros before the first update),
//! `ema/<name>` (EMA of the weights, when enabled), `buffer/<name>` (non-trainable model state, e.g. BatchNorm running
//! statistics). The metadata holds the step, the live hyperparameters, the loader position, the seed and the
//! effective preset. The run record serialises both (safetensors + JSON, `crate::record::trainer_checkpoint`).

use super::{BoxError, Result, TrainError};
use crate::preset::Preset;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;

/// Version of [`TrainMeta`]'s layout.
pub const STATE_FORMAT: u32 = 1;

/// The live hyperparameters at their current values, declared in the preset's live table.
pub use crate::preset::live::LiveValues;

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
            return Err(TrainError::checkpoint(format!(
                "unsupported state format {} (this build reads {STATE_FORMAT})",
                meta.format
            )));
        }
        let mut tensors: Vec<(String, Tensor)> = tensors.into_iter().collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self { tensors, meta })
    }
}

/// Writes checkpoints for the trainer; returns the path written (reported in `Event::Checkpoint`). The error is
/// boxed because the writer lives above the trainer (the run record), whose error type the trainer cannot name.
pub trait CheckpointWriter: Send {
    fn write(&mut self, state: &TrainState) -> std::result::Result<PathBuf, BoxError>;

    /// The newest readable checkpoint at or before step `at_most`, with its path, for a divergence rescue's
    /// rollback; `Ok(None)` when there is none. The default reads nothing back (a writer that only writes).
    fn load_at_most(
        &mut self,
        at_most: u64,
    ) -> std::result::Result<Option<(PathBuf, TrainState)>, String> {
        let _ = at_most;
        Ok(None)
    }
}
