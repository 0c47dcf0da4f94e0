//! The bridge between the trainer's [`TrainState`] and the run record's checkpoint files ([`super::checkpoint`]):
//! the record owns the file format (atomic safetensors, keep-K + best); the trainer's metadata travels in
//! `CheckpointMeta::extra["train"]`. It lives in the record layer because the record knows the trainer, never the
//! reverse: the trainer only sees the [`CheckpointWriter`] it is handed.

use super::checkpoint::{
    list_checkpoints, load_checkpoint, save_checkpoint, CheckpointMeta, CheckpointState,
    LoadedCheckpoint,
};
use crate::preset::Preset;
use crate::train::{
    BoxError, CheckpointWriter, LiveValues, Result, TrainError, TrainMeta, TrainState,
};
use candle_core::Device;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Key of the trainer's metadata in `CheckpointMeta::extra`.
pub const EXTRA_KEY: &str = "train";

/// The record's checkpoint for a trainer state.
pub fn to_checkpoint(state: &TrainState) -> Result<CheckpointState> {
    let m = &state.meta;
    let train =
        serde_json::to_value(m).map_err(|e| TrainError::checkpoint_from("trainer metadata", e))?;
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
        tensors: state.tensors.clone(),
    })
}

/// The trainer state held by a checkpoint the run record read back.
pub fn from_checkpoint(loaded: LoadedCheckpoint) -> Result<TrainState> {
    let path = loaded.path.display().to_string();
    let train = loaded.meta.extra.get(EXTRA_KEY).ok_or_else(|| {
        TrainError::checkpoint(format!("{path}: no trainer metadata (`{EXTRA_KEY}`)"))
    })?;
    let meta = read_meta(train)
        .map_err(|e| TrainError::checkpoint_from(format!("{path}: trainer metadata"), e))?;
    TrainState::from_parts(loaded.tensors, meta)
}

/// The trainer's metadata from its JSON. A record written before a parameter became live lacks it in `live`; the
/// run's preset (which has the live values folded in) holds the value the run had, so it fills the gap.
fn read_meta(train: &serde_json::Value) -> serde_json::Result<TrainMeta> {
    let mut train = train.clone();
    let preset = train
        .get("preset")
        .and_then(|p| serde_json::from_value::<Preset>(p.clone()).ok());
    if let (Some(preset), Some(live)) = (
        preset,
        train.get_mut("live").and_then(|l| l.as_object_mut()),
    ) {
        if let serde_json::Value::Object(full) =
            serde_json::to_value(LiveValues::from_preset(&preset))?
        {
            for (key, value) in full {
                live.entry(key).or_insert(value);
            }
        }
    }
    serde_json::from_value(train)
}

/// Writes checkpoints through the run record: `<run>/checkpoints/step-<N>.safetensors`, atomic, keep-K + best.
pub struct RecordCheckpointWriter {
    pub dir: PathBuf,
    pub keep_last: usize,
}

impl CheckpointWriter for RecordCheckpointWriter {
    fn write(&mut self, state: &TrainState) -> std::result::Result<PathBuf, BoxError> {
        let ck = to_checkpoint(state)?;
        Ok(save_checkpoint(&self.dir, &ck, self.keep_last.max(1))?)
    }

    /// The newest readable checkpoint at or before `at_most` (newer ones may hold a diverging state); unreadable
    /// ones are passed over, and named in the error when none is readable.
    fn load_at_most(
        &mut self,
        at_most: u64,
    ) -> std::result::Result<Option<(PathBuf, TrainState)>, String> {
        let all = list_checkpoints(&self.dir).map_err(|e| crate::train::error_chain(&e))?;
        let mut unreadable = Vec::new();
        for c in all.iter().rev().filter(|c| c.step <= at_most) {
            let state = load_checkpoint(&c.path, &Device::Cpu)
                .map_err(|e| crate::train::error_chain(&e))
                .and_then(|ck| from_checkpoint(ck).map_err(|e| crate::train::error_chain(&e)));
            match state {
                Ok(state) => return Ok(Some((c.path.clone(), state))),
                Err(e) => unreadable.push(e),
            }
        }
        if unreadable.is_empty() {
            Ok(None)
        } else {
            Err(format!("no readable checkpoint: {}", unreadable.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::state::STATE_FORMAT;

    #[test]
    fn a_live_value_missing_in_an_older_record_comes_from_its_preset() {
        let mut preset = Preset::default();
        preset.optim.label_smoothing = 0.3;
        preset.agc.lambda = 0.04;
        let meta = TrainMeta {
            format: STATE_FORMAT,
            step: 7,
            model: "mlp".into(),
            preset: preset.clone(),
            live: LiveValues::from_preset(&preset),
            loader_position: serde_json::json!({}),
            seed: 1,
            consecutive_bad: 0,
            images_seen: 0,
            param_names: Vec::new(),
            epoch: 0.0,
            val_top1: None,
        };
        let mut json = serde_json::to_value(&meta).unwrap();
        json["live"]
            .as_object_mut()
            .unwrap()
            .remove("label_smoothing");
        let back = read_meta(&json).unwrap();
        assert_eq!(back.live.label_smoothing, 0.3);
        assert_eq!(back, meta);
    }
}
