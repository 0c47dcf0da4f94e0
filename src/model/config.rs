//! `[model]` of a preset: which network and its normaliser-free knobs, as plain serde data.
//!
//! It lives in the model layer so the model builds from it without knowing about presets; `crate::preset::schema`
//! re-exports it. The manual of each field (what it does, its unit and range) is its entry in the preset field table,
//! `nfbench preset fields` (`src/preset/fields.rs`), the only copy.

use super::zoo::ShortcutKind;
use serde::{Deserialize, Deserializer, Serialize};
use std::path::PathBuf;

/// How convolutions and the stem's max pool pad their input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaddingMode {
    /// TensorFlow's 'SAME' (DeepMind's reference, timm's `dm_` models): total `(ceil(n/s) - 1) s + k - n`, the odd
    /// cell after, so a strided conv on an even input pads 0 before and 1 after.
    #[default]
    Same,
    /// PyTorch's static padding (timm's other NF models): `((s - 1) + (k - 1)) / 2` cells on every side. For the odd
    /// kernels used here the output size is `ceil(n / s)` as under 'SAME'; only where the window sits differs.
    Symmetric,
}

impl PaddingMode {
    /// The pads `(top, bottom, left, right)` of an `h x w` input for a `kernel x kernel` window at `stride`.
    pub fn pads(
        self,
        h: usize,
        w: usize,
        kernel: usize,
        stride: usize,
    ) -> (usize, usize, usize, usize) {
        match self {
            PaddingMode::Same => {
                let total =
                    |n: usize| ((n.div_ceil(stride) - 1) * stride + kernel).saturating_sub(n);
                let (th, tw) = (total(h), total(w));
                (th / 2, th - th / 2, tw / 2, tw - tw / 2)
            }
            PaddingMode::Symmetric => {
                let p = (stride - 1 + kernel - 1) / 2;
                (p, p, p, p)
            }
        }
    }
}

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
    /// Padding of every conv and of the stem's max pool (`same`, the reference's, unless imported from timm).
    pub padding: PaddingMode,
    /// Transition blocks' shortcut; `None` keeps the architecture's own (timm's `nf_resnet50` pools, then 1x1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shortcut: Option<ShortcutKind>,
    /// Weights to start from (`nfbench weights import` writes them); `None` starts from the seeded initialisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    /// Globs over parameter names (`*` any run of characters, `?` one) whose parameters are never updated.
    pub freeze: Vec<String>,
    /// Learning-rate multiplier of the classifier (`linear.*`), e.g. 10 when fine-tuning a new head.
    pub head_lr_multiplier: f64,
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
            padding: PaddingMode::Same,
            shortcut: None,
            init_from: None,
            freeze: Vec::new(),
            head_lr_multiplier: 1.0,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_fields_parse_from_toml_and_default_to_todays_network() {
        let cfg: ModelConfig = toml::from_str(
            "name = \"nf_resnet50\"\npadding = \"symmetric\"\nshortcut = \"avg_pool_conv\"\n\
             freeze = [\"stem*\"]\nhead_lr_multiplier = 10.0\ninit_from = \"w.safetensors\"",
        )
        .unwrap();
        assert_eq!(cfg.padding, PaddingMode::Symmetric);
        assert_eq!(cfg.shortcut, Some(ShortcutKind::AvgPoolConv));
        assert_eq!(cfg.freeze, vec!["stem*".to_string()]);
        assert_eq!(cfg.init_from, Some(PathBuf::from("w.safetensors")));
        let default: ModelConfig = toml::from_str("name = \"nf_resnet50\"").unwrap();
        assert_eq!(default.padding, PaddingMode::Same);
        assert_eq!(default.shortcut, None);
        assert_eq!(default.head_lr_multiplier, 1.0);
        let bad = toml::from_str::<ModelConfig>("padding = \"valid\"").unwrap_err();
        assert!(bad.to_string().contains("valid"), "{bad}");
    }
}
