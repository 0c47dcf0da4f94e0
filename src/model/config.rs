//! `[model]` of a preset: which network and its normaliser-free knobs, as plain serde data.
//!
//! It lives in the model layer so the model builds from it without knowing about presets; `crate::preset::schema`
//! re-exports it. The manual of each field (what it does, its unit and range) is its entry in the preset field table,
//! `nfbench preset fields` (`src/preset/fields.rs`), the only copy.

use serde::{Deserialize, Serialize};

/// `[model]`: which network and its normaliser-free knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub name: String,
    pub alpha: f64,
    pub skip_gain_init: f64,
    pub activation: String,
    pub stochastic_depth: f64,
    pub dropout: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            name: "nf_resnet_cifar".into(),
            alpha: 0.2,
            skip_gain_init: 0.0,
            activation: String::new(),
            stochastic_depth: 0.0,
            dropout: -1.0,
        }
    }
}
