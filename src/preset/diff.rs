//! What changed between two presets: live parameters for the trainer, restart-only changes to report.

use super::fields::{fields, to_value, value_at};
use super::live::LiveParam;
use super::schema::Preset;
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
            Some(param) => {
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
    LiveParam::from_preset(preset, name)
}

/// Every live parameter with its value in `preset`, in schema order.
pub fn live_params(preset: &Preset) -> Vec<LiveParam> {
    fields()
        .iter()
        .filter_map(|f| live_param(preset, f.name))
        .collect()
}

/// Check a live value against its field's range (for keyboard edits, before they are sent).
pub fn check_live(param: LiveParam) -> Result<(), String> {
    param.check()
}

/// Write a live value into `preset` (what the trainer now runs with), e.g. before [`super::write_back`].
pub fn set_live(preset: &mut Preset, param: LiveParam) {
    param.write_into(preset)
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
                    assert!(
                        crate::preset::live::is_live(f.name),
                        "{} maps to a LiveParam but is not live",
                        f.name
                    );
                    assert_eq!(param.key(), f.name);
                }
                None => assert!(
                    !crate::preset::live::is_live(f.name),
                    "live field {} has no LiveParam",
                    f.name
                ),
            }
        }
        for s in super::super::live::LIVE {
            assert!(fields().iter().any(|f| f.name == s.key), "{}", s.key);
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
