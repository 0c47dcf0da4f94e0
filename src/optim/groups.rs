//! Parameter groups for fine-tuning: which parameters are frozen (`model.freeze`, globs over parameter names) and
//! each parameter's learning-rate multiplier (`model.head_lr_multiplier` for the classifier, 1 elsewhere).
//!
//! A frozen parameter gets no update at all: no step, no weight decay, no momentum, no AGC clipping and no AGC
//! statistics. The trainer asks [`ParamGroups::frozen`] and [`ParamGroups::lr_multiplier`] per parameter index.

use crate::model::{ModelError, CLASSIFIER_BIAS, CLASSIFIER_WEIGHT};

/// `*` matches any run of characters (also none), `?` exactly one; everything else itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Classic two-pointer match with backtracking to the last `*`.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// Per-parameter frozen flags and learning-rate multipliers, in the network's parameter order.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamGroups {
    frozen: Vec<bool>,
    lr_multiplier: Vec<f64>,
}

impl ParamGroups {
    /// Groups for parameters `names`: `freeze` globs (each must match at least one name, else an error naming
    /// it) and the classifier's multiplier `head_lr_multiplier`.
    pub fn new(
        names: &[&str],
        freeze: &[String],
        head_lr_multiplier: f64,
    ) -> Result<Self, ModelError> {
        for pattern in freeze {
            if !names.iter().any(|n| glob_match(pattern, n)) {
                let sample: Vec<&str> = names.iter().take(4).copied().collect();
                return Err(ModelError::invalid(
                    "model.freeze",
                    format!("{pattern:?}"),
                    format!(
                        "matches no parameter (names look like {}, ...)",
                        sample.join(", ")
                    ),
                ));
            }
        }
        let frozen = names
            .iter()
            .map(|n| freeze.iter().any(|p| glob_match(p, n)))
            .collect();
        let lr_multiplier = names
            .iter()
            .map(|n| {
                if *n == CLASSIFIER_WEIGHT || *n == CLASSIFIER_BIAS {
                    head_lr_multiplier
                } else {
                    1.0
                }
            })
            .collect();
        Ok(Self {
            frozen,
            lr_multiplier,
        })
    }

    /// Every parameter trained at the base learning rate.
    pub fn all_trained(count: usize) -> Self {
        Self {
            frozen: vec![false; count],
            lr_multiplier: vec![1.0; count],
        }
    }

    pub fn frozen(&self, index: usize) -> bool {
        self.frozen.get(index).copied().unwrap_or(false)
    }

    pub fn lr_multiplier(&self, index: usize) -> f64 {
        self.lr_multiplier.get(index).copied().unwrap_or(1.0)
    }

    /// How many parameters are frozen.
    pub fn frozen_count(&self) -> usize {
        self.frozen.iter().filter(|&&f| f).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_shells_do() {
        assert!(glob_match("stem*", "stem.conv0.w"));
        assert!(glob_match("s1*", "s1.b0.conv1.gain"));
        assert!(!glob_match("s1*", "s2.b0.conv1.gain"));
        assert!(glob_match("*.gain", "s3.b1.conv2.gain"));
        assert!(glob_match("s?.b0.*", "s4.b0.skip_gain"));
        assert!(!glob_match("s?.b0.*", "s4.b1.skip_gain"));
        assert!(glob_match("*", ""));
        assert!(glob_match("linear.w", "linear.w"));
        assert!(!glob_match("linear", "linear.w"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
    }

    #[test]
    fn groups_freeze_by_glob_and_scale_the_head() {
        let names = [
            "stem.conv.w",
            "s1.b0.conv0.w",
            "s2.b0.conv0.w",
            "linear.w",
            "linear.b",
        ];
        let g = ParamGroups::new(&names, &["stem*".into(), "s1*".into()], 10.0).unwrap();
        let frozen: Vec<bool> = (0..names.len()).map(|i| g.frozen(i)).collect();
        assert_eq!(frozen, [true, true, false, false, false]);
        let lr: Vec<f64> = (0..names.len()).map(|i| g.lr_multiplier(i)).collect();
        assert_eq!(lr, [1.0, 1.0, 1.0, 10.0, 10.0]);
        assert_eq!(g.frozen_count(), 2);
    }

    #[test]
    fn a_pattern_matching_nothing_is_an_error_naming_it() {
        let e = ParamGroups::new(&["stem.conv.w"], &["stage1*".into()], 1.0).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("model.freeze") && msg.contains("\"stage1*\""),
            "{msg}"
        );
    }
}
