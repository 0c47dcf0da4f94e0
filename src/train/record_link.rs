//! The bridge between [`TrainState`] and the run record's checkpoint files (`crate::record::checkpoint`): the record
//! owns the file format (atomic safetensors, keep-K + best); the trainer's metadata travels in
//! `CheckpointMeta::extra["train"]`.

use super::state::{CheckpointWriter, TrainMeta, TrainState};
use super::{Result, TrainError};
use crate::record::checkpoint::{
    save_checkpoint, CheckpointMeta, CheckpointState, LoadedCheckpoint,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Key of the trainer's metadata in `CheckpointMeta::extra`.
pub const EXTRA_KEY: &str = "train";

impl TrainState {
    /// The record's checkpoint for this state.
    pub fn to_checkpoint(&self) -> Result<CheckpointState> {
        let m = &self.meta;
        let train = serde_json::to_value(m).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        let preset_toml = toml::to_string(&m.preset).unwrap_or_default();
        Ok(CheckpointState {
            meta: CheckpointMeta {
                step: m.step,
                epoch: m.epoch,
                seed: m.seed,
                model: m.model.clone(),
                loader: m.loader_position.clone(),
                rng: serde_json::json!({ "seed": m.seed, "step": m.step }),
                live: m.live.params(),
                preset_toml,
                val_top1: m.val_top1,
                extra: BTreeMap::from([(EXTRA_KEY.to_string(), train)]),
            },
            tensors: self.tensors.clone(),
        })
    }

    /// The state held by a checkpoint the run record read back.
    pub fn from_checkpoint(loaded: LoadedCheckpoint) -> Result<TrainState> {
        let path = loaded.path.display().to_string();
        let train = loaded.meta.extra.get(EXTRA_KEY).ok_or_else(|| {
            TrainError::Checkpoint(format!("{path}: no trainer metadata (`{EXTRA_KEY}`)"))
        })?;
        let meta: TrainMeta = serde_json::from_value(train.clone())
            .map_err(|e| TrainError::Checkpoint(format!("{path}: trainer metadata: {e}")))?;
        TrainState::from_parts(loaded.tensors, meta)
    }
}

/// Writes checkpoints through the run record: `<run>/checkpoints/step-<N>.safetensors`, atomic, keep-K + best.
pub struct RecordCheckpointWriter {
    pub dir: PathBuf,
    pub keep_last: usize,
}

impl CheckpointWriter for RecordCheckpointWriter {
    fn write(&mut self, state: &TrainState) -> std::result::Result<PathBuf, String> {
        let ck = state.to_checkpoint().map_err(|e| e.to_string())?;
        save_checkpoint(&self.dir, &ck, self.keep_last.max(1)).map_err(|e| e.to_string())
    }
}
