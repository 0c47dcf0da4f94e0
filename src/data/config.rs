//! `[data]` of a preset: the data set file and how batches are made from it, as plain serde data.
//!
//! It lives in the data layer so the loader is configured from it without knowing about presets; `crate::preset::schema`
//! re-exports it. The manual of each field (what it does, its unit and range) is its entry in the preset field table,
//! `nfbench preset fields` (`src/preset/fields.rs`), the only copy.

pub use super::augment::EvalCrop;
use super::decode::DecoderKind;
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
    pub eval_crop: EvalCrop,
    pub crop_pct: f64,
    pub decoder: DecoderChoice,
}

/// `data.decoder`: which JPEG decoder reads JPEG data sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderChoice {
    /// libjpeg-turbo when the build has it, else zune-jpeg.
    #[default]
    Auto,
    Turbo,
    Zune,
}

impl DecoderChoice {
    /// The decoder this choice names in this build.
    pub fn kind(self) -> DecoderKind {
        match self {
            DecoderChoice::Auto => DecoderKind::best(),
            DecoderChoice::Turbo => DecoderKind::Turbo,
            DecoderChoice::Zune => DecoderKind::Zune,
        }
    }
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
            eval_crop: EvalCrop::ResizeCrop32,
            crop_pct: 0.875,
            decoder: DecoderChoice::Auto,
        }
    }
}
