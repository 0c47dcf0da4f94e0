//! `[model]` of a preset: which network and its normaliser-free knobs, as plain serde data.
//!
//! It lives in the model layer so the model builds from it without knowing about presets; `crate::preset::schema`
//! re-exports it. The manual of each field (what it does, its unit and range) is its entry in the preset field table,
//! `nfbench preset fields` (`src/preset/fields.rs`), the only copy.

use serde::{Deserialize, Deserializer, Serialize};

/// `[model]`: which network and its normaliser-free knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub name: String,
    pub alpha: f64,
    pub skip_gain_init: f64,
    /// `None` (the field left out) keeps the architecture's own.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "activation_or_default"
    )]
    pub activation: Option<String>,
    pub stochastic_depth: f64,
    /// `None` (the field left out) keeps the architecture's own.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "dropout_or_default"
    )]
    pub dropout: Option<f64>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            name: "nf_resnet_cifar".into(),
            alpha: 0.2,
            skip_gain_init: 0.0,
            activation: None,
            stochastic_depth: 0.0,
            dropout: None,
        }
    }
}

/// `activation = ""`, the spelling of "the architecture's default" before the field became optional, still means it.
fn activation_or_default<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let name = String::deserialize(d)?;
    Ok((!name.is_empty()).then_some(name))
}

/// A negative `dropout` (the old files say `-1`), the spelling of "the architecture's default" before the field
/// became optional, still means it. NaN and infinities stay values, for validation to reject.
fn dropout_or_default<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let p = f64::deserialize(d)?;
    Ok((!(p.is_finite() && p < 0.0)).then_some(p))
}
