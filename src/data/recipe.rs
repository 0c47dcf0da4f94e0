//! `[augment]` of a preset: the NFNet training recipe's augmentations beyond crop and flip (RandAugment, MixUp,
//! CutMix), as plain serde data, and how a training batch applies them.
//!
//! It lives in the data layer (like [`super::config::DataConfig`]) so the loader is configured from it without
//! knowing about presets; `crate::preset::schema` re-exports it. The manual of each field is its entry in the preset
//! field table (`src/preset/fields.rs`). The recipe follows DeepMind's `nfnets/dataset.py` (deepmind-research commit
//! f5de0ede8430809180254ee957abf36ed62579ef): DeepMind's `augment_name = "cutmix_mixup_randaugment_405"` is
//! `mixing = "mixup_cutmix"`, `randaugment_layers = 4`, `randaugment_magnitude = 5` here.

use serde::{Deserialize, Serialize};

/// Which batch-level mixing a training batch gets (DeepMind's `augment_name` containing `mixup` and/or `cutmix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mixing {
    /// No mixing: hard labels.
    #[default]
    None,
    /// Every image is a MixUp of two (`my_mixup`).
    Mixup,
    /// Every image is a CutMix of two (`my_cutmix`).
    Cutmix,
    /// The first half of the batch MixUp, the second half CutMix (`my_mixup_cutmix`).
    MixupCutmix,
}

impl Mixing {
    /// Source images read per output image: two when mixing (DeepMind batches `2 * B` images and mixes pairs).
    pub fn rows_per_image(self) -> usize {
        if self == Mixing::None {
            1
        } else {
            2
        }
    }

    /// The spelling in presets.
    pub fn as_str(self) -> &'static str {
        match self {
            Mixing::None => "none",
            Mixing::Mixup => "mixup",
            Mixing::Cutmix => "cutmix",
            Mixing::MixupCutmix => "mixup_cutmix",
        }
    }
}

/// `[augment]`: RandAugment and batch mixing of training batches (evaluation is never augmented).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    pub randaugment_layers: u32,
    pub randaugment_magnitude: u32,
    pub translate_const: u32,
    pub cutout_const: u32,
    pub mixing: Mixing,
    pub mixup_alpha: f64,
    pub augment_before_mix: bool,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            randaugment_layers: 0,
            randaugment_magnitude: 0,
            translate_const: 100,
            cutout_const: 40,
            mixing: Mixing::None,
            mixup_alpha: 0.2,
            augment_before_mix: false,
        }
    }
}

impl AugmentConfig {
    /// Whether RandAugment runs.
    pub fn randaugment_on(&self) -> bool {
        self.randaugment_layers > 0
    }

    /// A one-line summary for the workbench and logs, e.g. `RandAugment 4x5 after MixUp/CutMix (alpha 0.2)`.
    pub fn summary(&self) -> String {
        let ra = self.randaugment_on().then(|| {
            format!(
                "RandAugment {}x{}",
                self.randaugment_layers, self.randaugment_magnitude
            )
        });
        let mix = match self.mixing {
            Mixing::None => None,
            Mixing::Mixup => Some(format!("MixUp (alpha {})", self.mixup_alpha)),
            Mixing::Cutmix => Some("CutMix".to_string()),
            Mixing::MixupCutmix => {
                Some(format!("MixUp (alpha {}) / CutMix 50:50", self.mixup_alpha))
            }
        };
        match (ra, mix) {
            (None, None) => "crop + flip only".into(),
            (Some(ra), None) => ra,
            (None, Some(mix)) => mix,
            (Some(ra), Some(mix)) => {
                let order = if self.augment_before_mix {
                    "before"
                } else {
                    "after"
                };
                format!("{ra} {order} {mix}")
            }
        }
    }
}
