//! `[data]` of a preset: the data set file and how batches are made from it, as plain serde data.
//!
//! It lives in the data layer so the loader is configured from it without knowing about presets; `crate::preset::schema`
//! re-exports it. The manual of each field (what it does, its unit and range) is its entry in the preset field table,
//! `nfbench preset fields` (`src/preset/fields.rs`), the only copy.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[data]`: the data set file and batch construction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub path: PathBuf,
    pub batch_size: usize,
    pub resolution: u32,
    pub eval_resolution: u32,
    pub crop_padding: u32,
    pub hflip: bool,
    pub workers: usize,
    pub prefetch: usize,
    pub eval_images: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("data/cifar10-subset.h5"),
            batch_size: 64,
            resolution: 0,
            eval_resolution: 0,
            crop_padding: 4,
            hflip: true,
            workers: 2,
            prefetch: 4,
            eval_images: 0,
        }
    }
}
