//! `[rescue]`: the divergence-rescue policy (what the trainer does when a run diverges), plain serde data.
//!
//! The manual of each field is its entry in the field table ([`super::fields`], `nfbench preset fields`); the doc
//! comments here say the same in short. The trainer's state machine that follows this policy is
//! `crate::train::rescue`.
//!
//! `Default` is **off**: a rescue rolls a run back and changes its hyperparameters on its own, which is a choice
//! the user makes, not one an existing preset should start doing silently; off also keeps every existing run
//! behaving as before (N non-finite steps pause the run as `Diverged`). The other defaults are the values a
//! preset that turns it on gets.

use serde::{Deserialize, Serialize};

/// What a rescue changes after rolling back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Remedy {
    /// Halve `agc.lambda` (clip harder).
    HalveLambda,
    /// Halve `optim.lr_scale` (step smaller).
    HalveLrScale,
    /// Halve both.
    Both,
}

impl Remedy {
    /// Every remedy's TOML name, for the field table's check.
    pub const NAMES: &'static [&'static str] = &["halve_lambda", "halve_lr_scale", "both"];

    /// Whether this remedy halves `agc.lambda`.
    pub fn halves_lambda(self) -> bool {
        matches!(self, Remedy::HalveLambda | Remedy::Both)
    }

    /// Whether this remedy halves `optim.lr_scale`.
    pub fn halves_lr_scale(self) -> bool {
        matches!(self, Remedy::HalveLrScale | Remedy::Both)
    }
}

/// `[rescue]`: on N consecutive non-finite steps, or a loss above K x the running median of the last W finite
/// losses, roll back to the last good checkpoint, apply the remedy, skip the batches since that checkpoint and go
/// on; after M rescues give up (the run pauses as `Diverged`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RescueConfig {
    /// Turn the policy on (off: N non-finite steps pause the run, as without it).
    pub enabled: bool,
    /// N: consecutive non-finite steps that trigger a rescue (capped at `run.max_bad_steps`, so the rescue acts
    /// before the pause).
    pub bad_steps: u32,
    /// K: a finite loss above K x the running median triggers a rescue (> 1).
    pub spike_factor: f64,
    /// W: finite losses in the running median; 0 turns spike detection off. The detector is armed once it holds
    /// W losses.
    pub spike_window: usize,
    /// M: rescues allowed in a run; the next trigger gives up.
    pub max_rescues: u32,
    /// What a rescue changes after the rollback.
    pub remedy: Remedy,
}

impl Default for RescueConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            bad_steps: 3,
            spike_factor: 4.0,
            spike_window: 50,
            max_rescues: 3,
            remedy: Remedy::Both,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remedies_read_from_their_toml_names_and_say_what_they_halve() {
        for (name, lambda, lr) in [
            ("halve_lambda", true, false),
            ("halve_lr_scale", false, true),
            ("both", true, true),
        ] {
            let c: RescueConfig = toml::from_str(&format!("remedy = \"{name}\"")).unwrap();
            assert_eq!(
                (c.remedy.halves_lambda(), c.remedy.halves_lr_scale()),
                (lambda, lr)
            );
            assert!(Remedy::NAMES.contains(&name));
        }
        assert!(toml::from_str::<RescueConfig>("remedy = \"quarter\"").is_err());
    }

    #[test]
    fn the_default_is_off() {
        assert!(!RescueConfig::default().enabled);
        assert_eq!(
            toml::from_str::<RescueConfig>("").unwrap(),
            RescueConfig::default()
        );
    }
}
