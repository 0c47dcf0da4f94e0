//! What changed between two presets: live parameters for the trainer, restart-only changes to report.

use super::fields::{check_value, field, fields, to_value, value_at};
use super::schema::Preset;
use crate::train::messages::LiveParam;
use std::fmt;

/// One field whose value changed, as text for the TUI and the run record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// Dotted key, e.g. `data.batch_size`.
    pub field: &'static str,
    pub old: String,
    pub new: String,
}

impl fmt::Display for FieldChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} → {}", self.field, self.old, self.new)
    }
}

/// The difference between the preset in force and an edited one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PresetDiff {
    /// Live parameters with their new values, to send as one `Command::Set`.
    pub live: Vec<LiveParam>,
    /// The same live changes as old → new text, in the same order as `live`.
    pub live_changes: Vec<FieldChange>,
    /// Changes that only take effect at the next start: reported, never applied half.
    pub restart_only: Vec<FieldChange>,
}

impl PresetDiff {
    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.restart_only.is_empty()
    }

    /// One line for the events pane: `agc.lambda 0.02 → 0.01; data.batch_size 64 → 128 (restart only)`.
    pub fn summary(&self) -> String {
        let live = self.live_changes.iter().map(|c| c.to_string());
        let restart = self
            .restart_only
            .iter()
            .map(|c| format!("{c} (restart only)"));
        let parts: Vec<String> = live.chain(restart).collect();
        if parts.is_empty() {
            "no changes".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Compare `old` and `new` field by field (`extends` is not a setting and never differs).
pub fn diff(old: &Preset, new: &Preset) -> PresetDiff {
    let (a, b) = (to_value(old), to_value(new));
    let mut out = PresetDiff::default();
    for info in fields().iter().filter(|f| f.name != "extends") {
        let (va, vb) = (value_at(&a, info.name), value_at(&b, info.name));
        if va == vb {
            continue;
        }
        let change = FieldChange {
            field: info.name,
            old: va.map_or_else(|| "(unset)".into(), value_text),
            new: vb.map_or_else(|| "(unset)".into(), value_text),
        };
        match live_param(new, info.name) {
            Some(param) if info.live => {
                out.live.push(param);
                out.live_changes.push(change);
            }
            _ => out.restart_only.push(change),
        }
    }
    out
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

/// The live parameter `name` with its value in `preset`; None for a restart-only or unknown field.
pub fn live_param(preset: &Preset, name: &str) -> Option<LiveParam> {
    Some(match name {
        "agc.lambda" => LiveParam::AgcLambda(preset.agc.lambda),
        "agc.enabled" => LiveParam::AgcEnabled(preset.agc.enabled),
        "model.alpha" => LiveParam::Alpha(preset.model.alpha),
        "optim.lr" => LiveParam::Lr(preset.optim.lr),
        "optim.lr_scale" => LiveParam::LrScale(preset.optim.lr_scale),
        "optim.weight_decay" => LiveParam::WeightDecay(preset.optim.weight_decay),
        "optim.momentum" => LiveParam::Momentum(preset.optim.momentum),
        "run.stats_every" => LiveParam::StatsEvery(preset.run.stats_every),
        _ => return None,
    })
}

/// Every live parameter with its value in `preset`, in schema order.
pub fn live_params(preset: &Preset) -> Vec<LiveParam> {
    fields()
        .iter()
        .filter(|f| f.live)
        .filter_map(|f| live_param(preset, f.name))
        .collect()
}

/// Check a live value against its field's range (for keyboard edits, before they are sent).
pub fn check_live(param: LiveParam) -> Result<(), String> {
    let value = match param {
        LiveParam::AgcEnabled(b) => toml::Value::Boolean(b),
        LiveParam::StatsEvery(n) => toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
        LiveParam::AgcLambda(x)
        | LiveParam::Alpha(x)
        | LiveParam::Lr(x)
        | LiveParam::LrScale(x)
        | LiveParam::WeightDecay(x)
        | LiveParam::Momentum(x) => toml::Value::Float(x),
    };
    match field(param.key()) {
        Some(info) => check_value(info.check, &value).map_err(|m| format!("{}: {m}", param.key())),
        None => Err(format!("{} is not a preset field", param.key())),
    }
}

/// Write a live value into `preset` (what the trainer now runs with), e.g. before [`super::write_back`].
pub fn set_live(preset: &mut Preset, param: LiveParam) {
    match param {
        LiveParam::AgcLambda(x) => preset.agc.lambda = x,
        LiveParam::AgcEnabled(b) => preset.agc.enabled = b,
        LiveParam::Alpha(x) => preset.model.alpha = x,
        LiveParam::Lr(x) => preset.optim.lr = x,
        LiveParam::LrScale(x) => preset.optim.lr_scale = x,
        LiveParam::WeightDecay(x) => preset.optim.weight_decay = x,
        LiveParam::Momentum(x) => preset.optim.momentum = x,
        LiveParam::StatsEvery(n) => preset.run.stats_every = n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_live_field_maps_to_a_live_param_with_the_same_key() {
        let p = Preset::default();
        for f in fields() {
            match live_param(&p, f.name) {
                Some(param) => {
                    assert!(f.live, "{} maps to a LiveParam but is not live", f.name);
                    assert_eq!(param.key(), f.name);
                }
                None => assert!(!f.live, "live field {} has no LiveParam", f.name),
            }
        }
    }

    #[test]
    fn diff_splits_live_and_restart_only() {
        let old = Preset::default();
        let mut new = old.clone();
        new.agc.lambda = 0.02;
        new.optim.lr = 0.3;
        new.data.batch_size = 128;
        new.model.name = "nfnet_f0".into();
        let d = diff(&old, &new);
        assert_eq!(d.live, vec![LiveParam::Lr(0.3), LiveParam::AgcLambda(0.02)]);
        assert_eq!(d.live_changes[1].to_string(), "agc.lambda 0.01 → 0.02");
        let restart: Vec<&str> = d.restart_only.iter().map(|c| c.field).collect();
        assert_eq!(restart, vec!["model.name", "data.batch_size"]);
        assert_eq!(d.restart_only[0].new, "\"nfnet_f0\"");
        assert!(d
            .summary()
            .contains("data.batch_size 64 → 128 (restart only)"));
        assert!(diff(&old, &old).is_empty());
    }

    #[test]
    fn set_live_then_diff_round_trips() {
        let old = Preset::default();
        let mut new = old.clone();
        for p in [
            LiveParam::Alpha(0.5),
            LiveParam::StatsEvery(7),
            LiveParam::AgcEnabled(false),
        ] {
            assert!(check_live(p).is_ok());
            set_live(&mut new, p);
        }
        let d = diff(&old, &new);
        assert_eq!(d.live.len(), 3);
        assert!(d.restart_only.is_empty());
        assert!(check_live(LiveParam::AgcLambda(0.0)).is_err());
        assert!(check_live(LiveParam::Momentum(f64::NAN)).is_err());
        assert!(check_live(LiveParam::StatsEvery(0)).is_err());
    }
}
