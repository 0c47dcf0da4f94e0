//! The live parameters, declared once: each entry of the `live_params!` table below gives a parameter's variant
//! and type, its dotted key, where it lives in the [`Preset`], its field in the runner's [`LiveValues`] and how the
//! TUI's `+`/`-` step it. Its range is the field table's rule for the same key ([`super::fields`], the one rule
//! validation also runs); its doc line is the variant's doc comment.
//!
//! From the table come [`LiveParam`] (the message the trainer applies; its serde form is the variant name and
//! the value, as before), [`LiveValues`] (the values in force, in checkpoints), [`LIVE`] (key, doc, stepping) and
//! everything the preset diff, write-back, metrics rows, TUI and trainer do with a live value. Adding a live
//! parameter is one entry here plus its effect in the trainer's step.

use super::fields::{check_value, field};
use super::schema::Preset;
use serde::{Deserialize, Serialize};

/// How `+`/`-` move a live value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stepping {
    /// Along 1, 2, 5, 10, 20, ... (thresholds and rates that span decades); from 0 up to `floor`, never below
    /// `min`.
    Decades { floor: f64, min: f64 },
    /// By a fixed amount within [min, max].
    Linear { by: f64, min: f64, max: f64 },
    /// On / off.
    Toggle,
}

/// One live parameter as data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveSpec {
    /// Dotted preset key, e.g. `agc.lambda`.
    pub key: &'static str,
    /// One line on what it is.
    pub doc: &'static str,
    pub stepping: Stepping,
}

/// The types a live value can have.
pub trait LiveType: Copy + PartialEq {
    /// What typed text must look like, for the error.
    const EXPECTED: &'static str;
    fn to_toml(self) -> toml::Value;
    fn parse_text(text: &str) -> Option<Self>;
    fn text(self) -> String;
    fn stepped(self, stepping: Stepping, up: bool) -> Self;
}

impl LiveType for f64 {
    const EXPECTED: &'static str = "a number";
    fn to_toml(self) -> toml::Value {
        toml::Value::Float(self)
    }
    fn parse_text(text: &str) -> Option<Self> {
        text.trim().parse().ok()
    }
    fn text(self) -> String {
        format!("{self}")
    }
    fn stepped(self, stepping: Stepping, up: bool) -> Self {
        match stepping {
            Stepping::Decades { floor, min } => decade_step(self, up, floor).max(min),
            Stepping::Linear { by, min, max } => {
                tidy(if up { self + by } else { self - by }).clamp(min, max)
            }
            Stepping::Toggle => self,
        }
    }
}

impl LiveType for bool {
    const EXPECTED: &'static str = "true or false";
    fn to_toml(self) -> toml::Value {
        toml::Value::Boolean(self)
    }
    fn parse_text(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Some(true),
            "false" | "off" | "no" | "0" => Some(false),
            _ => None,
        }
    }
    fn text(self) -> String {
        format!("{self}")
    }
    fn stepped(self, _stepping: Stepping, _up: bool) -> Self {
        !self
    }
}

impl LiveType for u64 {
    const EXPECTED: &'static str = "a whole number";
    fn to_toml(self) -> toml::Value {
        toml::Value::Integer(i64::try_from(self).unwrap_or(i64::MAX))
    }
    fn parse_text(text: &str) -> Option<Self> {
        text.trim().parse().ok()
    }
    fn text(self) -> String {
        format!("{self}")
    }
    fn stepped(self, stepping: Stepping, up: bool) -> Self {
        let v = (self as f64).stepped(stepping, up).round();
        v.max(0.0) as u64
    }
}

/// Round to 6 significant digits so that stepping never shows 0.020000000000000004.
fn tidy(v: f64) -> f64 {
    format!("{v:.5e}").parse().unwrap_or(v)
}

/// The next value along 1, 2, 5, 10, ... up or down from `v` (> 0); from 0 up goes to `floor`.
pub fn decade_step(v: f64, up: bool, floor: f64) -> f64 {
    if v.is_nan() || v <= 0.0 || !v.is_finite() {
        return if up { floor } else { 0.0 };
    }
    let e = v.log10().floor();
    let base = 10f64.powf(e);
    let m = v / base;
    const TOL: f64 = 1e-9;
    let grid: [f64; 5] = [0.5, 1.0, 2.0, 5.0, 10.0];
    let next = if up {
        grid.iter()
            .find(|g| **g > m * (1.0 + TOL))
            .copied()
            .unwrap_or(20.0)
    } else {
        grid.iter()
            .rev()
            .find(|g| **g < m * (1.0 - TOL))
            .copied()
            .unwrap_or(0.5)
    };
    tidy(next * base)
}

macro_rules! live_params {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident($ty:ty) = $key:literal {
            preset: $($path:ident).+,
            runner: $field:ident,
            step: $step:expr $(,)?
        }
    )*) => {
        /// A hyperparameter that can change while the trainer runs, applied at the next step boundary.
        #[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
        pub enum LiveParam {
            $( $(#[doc = $doc])* $variant($ty), )*
        }

        /// The hyperparameters that can change while a run goes on, at their current values. A field missing in
        /// an older record reads as the default preset's value.
        #[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct LiveValues {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        /// Every live parameter, in the order the hyperparameter pane lists them.
        pub const LIVE: &[LiveSpec] = &[
            $( LiveSpec { key: $key, doc: concat!($($doc),*), stepping: $step }, )*
        ];

        impl LiveParam {
            /// The dotted preset key of this parameter, as in `--set` and the preset file.
            pub fn key(&self) -> &'static str {
                match self { $( LiveParam::$variant(_) => $key, )* }
            }

            /// The value as text, for logs, the event table and the metrics record.
            pub fn value_string(&self) -> String {
                match self { $( LiveParam::$variant(v) => v.text(), )* }
            }

            /// The value as a TOML value (what the field table checks and write-back writes).
            pub fn toml_value(&self) -> toml::Value {
                match self { $( LiveParam::$variant(v) => v.to_toml(), )* }
            }

            /// The live parameter `key` with its value in `preset`; None for a restart-only or unknown key.
            pub fn from_preset(preset: &Preset, key: &str) -> Option<LiveParam> {
                match key {
                    $( $key => Some(LiveParam::$variant(preset.$($path).+)), )*
                    _ => None,
                }
            }

            /// Write this value into `preset`.
            pub fn write_into(&self, preset: &mut Preset) {
                match *self { $( LiveParam::$variant(v) => preset.$($path).+ = v, )* }
            }

            /// Parse `text` as a value of the parameter `key` (not range-checked); None for an unknown key or
            /// unreadable text.
            pub fn parse(key: &str, text: &str) -> Option<LiveParam> {
                match key {
                    $( $key => <$ty as LiveType>::parse_text(text).map(LiveParam::$variant), )*
                    _ => None,
                }
            }

            /// Parse typed text as a new value of this parameter, range-checked.
            pub fn parse_as(&self, text: &str) -> Result<LiveParam, String> {
                let expected = match self { $( LiveParam::$variant(_) => <$ty as LiveType>::EXPECTED, )* };
                let p = LiveParam::parse(self.key(), text).ok_or_else(|| {
                    format!("{}: expected {expected}, got {:?}", self.key(), text.trim())
                })?;
                p.check()?;
                Ok(p)
            }

            /// The next value one `+` (up) or `-` away, by the parameter's stepping (not range-checked).
            pub fn stepped(&self, up: bool) -> LiveParam {
                match *self { $( LiveParam::$variant(v) => LiveParam::$variant(v.stepped($step, up)), )* }
            }
        }

        impl LiveValues {
            /// The values a preset starts with.
            pub fn from_preset(p: &Preset) -> Self {
                Self { $( $field: p.$($path).+, )* }
            }

            /// Write these values back into a preset (so a saved preset reproduces the live state).
            pub fn apply_to(&self, p: &mut Preset) {
                $( p.$($path).+ = self.$field; )*
            }

            /// Every value as a live parameter, in table order.
            pub fn params(&self) -> Vec<LiveParam> {
                vec![ $( LiveParam::$variant(self.$field), )* ]
            }

            /// Take one new value (not checked: see [`LiveParam::check`]).
            pub fn set(&mut self, p: LiveParam) {
                match p { $( LiveParam::$variant(v) => self.$field = v, )* }
            }
        }
    };
}

live_params! {
    /// `agc.lambda`: the AGC clipping threshold.
    AgcLambda(f64) = "agc.lambda" {
        preset: agc.lambda,
        runner: agc_lambda,
        step: Stepping::Decades { floor: 1e-3, min: 1e-6 },
    }
    /// `agc.enabled`: AGC on or off.
    AgcEnabled(bool) = "agc.enabled" {
        preset: agc.enabled,
        runner: agc_enabled,
        step: Stepping::Toggle,
    }
    /// `model.alpha`: the residual scale; every downstream beta is recomputed.
    Alpha(f64) = "model.alpha" {
        preset: model.alpha,
        runner: alpha,
        step: Stepping::Linear { by: 0.05, min: 0.05, max: 1.0 },
    }
    /// `optim.lr`: the base learning rate at batch 256 (the schedule's peak follows it).
    Lr(f64) = "optim.lr" {
        preset: optim.lr,
        runner: lr,
        step: Stepping::Decades { floor: 1e-3, min: 0.0 },
    }
    /// `optim.lr_scale`: multiplier on the scheduled learning rate.
    LrScale(f64) = "optim.lr_scale" {
        preset: optim.lr_scale,
        runner: lr_scale,
        step: Stepping::Linear { by: 0.1, min: 0.0, max: f64::INFINITY },
    }
    /// `optim.weight_decay`.
    WeightDecay(f64) = "optim.weight_decay" {
        preset: optim.weight_decay,
        runner: weight_decay,
        step: Stepping::Decades { floor: 1e-6, min: 0.0 },
    }
    /// `optim.momentum`.
    Momentum(f64) = "optim.momentum" {
        preset: optim.momentum,
        runner: momentum,
        step: Stepping::Linear { by: 0.01, min: 0.0, max: 0.99 },
    }
    /// `optim.label_smoothing`: label smoothing of the training loss's targets.
    LabelSmoothing(f64) = "optim.label_smoothing" {
        preset: optim.label_smoothing,
        runner: label_smoothing,
        step: Stepping::Linear { by: 0.05, min: 0.0, max: 0.95 },
    }
    /// `run.stats_every`: steps between statistics snapshots.
    StatsEvery(u64) = "run.stats_every" {
        preset: run.stats_every,
        runner: stats_every,
        step: Stepping::Decades { floor: 1.0, min: 1.0 },
    }
}

impl LiveParam {
    /// Why the value breaks its field's rule in the field table (the rule validation runs), without the key;
    /// None when it is fine.
    pub fn violation(&self) -> Option<String> {
        match field(self.key()) {
            Some(info) => check_value(info.check, &self.toml_value()).err(),
            None => Some("not a preset field".into()),
        }
    }

    /// [`LiveParam::violation`] as a result, the message naming the key.
    pub fn check(&self) -> Result<(), String> {
        match self.violation() {
            Some(m) => Err(format!("{}: {m}", self.key())),
            None => Ok(()),
        }
    }
}

impl Default for LiveValues {
    fn default() -> Self {
        Self::from_preset(&Preset::default())
    }
}

/// Whether `key` is a live parameter.
pub fn is_live(key: &str) -> bool {
    spec(key).is_some()
}

/// The live parameter `key` as data.
pub fn spec(key: &str) -> Option<&'static LiveSpec> {
    LIVE.iter().find(|s| s.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_reads_writes_and_parses_its_own_key() {
        let preset = Preset::default();
        let values = LiveValues::from_preset(&preset);
        let params = values.params();
        assert_eq!(params.len(), LIVE.len());
        for (p, s) in params.iter().zip(LIVE) {
            assert_eq!(p.key(), s.key);
            assert_eq!(LiveParam::from_preset(&preset, s.key), Some(*p));
            assert_eq!(LiveParam::parse(s.key, &p.value_string()), Some(*p));
            assert!(p.check().is_ok(), "{}: default out of range", s.key);
            assert!(field(s.key).is_some(), "{} is not a preset field", s.key);
            let mut other = Preset::default();
            let moved = p.stepped(true);
            moved.write_into(&mut other);
            assert_eq!(LiveParam::from_preset(&other, s.key), Some(moved));
            let mut v = values;
            v.set(moved);
            assert_eq!(LiveValues::from_preset(&other), v);
        }
    }

    #[test]
    fn serde_form_is_the_variant_and_the_value() {
        let json = serde_json::to_string(&LiveParam::AgcLambda(0.02)).unwrap();
        assert_eq!(json, r#"{"AgcLambda":0.02}"#);
        let v = serde_json::to_value(LiveValues::default()).unwrap();
        assert_eq!(v["agc_lambda"], 0.01);
        assert_eq!(
            v["stats_every"],
            serde_json::json!(Preset::default().run.stats_every)
        );
    }

    #[test]
    fn stepping_and_parsing_follow_the_table() {
        assert_eq!(
            LiveParam::AgcLambda(0.01).stepped(true),
            LiveParam::AgcLambda(0.02)
        );
        assert_eq!(
            LiveParam::AgcEnabled(true).stepped(false),
            LiveParam::AgcEnabled(false)
        );
        assert_eq!(
            LiveParam::StatsEvery(1).stepped(false),
            LiveParam::StatsEvery(1)
        );
        assert_eq!(LiveParam::Alpha(0.2).stepped(true), LiveParam::Alpha(0.25));
        assert!(LiveParam::Alpha(0.2).parse_as("1.5").is_err());
        assert!(LiveParam::StatsEvery(5)
            .parse_as("x")
            .unwrap_err()
            .contains("whole number"));
        assert_eq!(
            LiveParam::AgcEnabled(true).parse_as(" off "),
            Ok(LiveParam::AgcEnabled(false))
        );
    }
}
