//! The range rules of [`Check`], applied to one TOML value.

use super::Bound::{self, Exclusive as Excl, Inclusive as Incl};
use super::{Check, ACTIVATIONS};

/// Check one value against a rule; the error says what was found and what is allowed.
pub fn check_value(check: Check, value: &toml::Value) -> Result<(), String> {
    match check {
        Check::Any => Ok(()),
        Check::Float(lo, hi) => check_float(value_f64(value)?, lo, hi),
        Check::AtLeast(min) => match value.as_integer() {
            Some(n) if n >= 0 && n as u64 >= min => Ok(()),
            Some(n) => Err(format!("{n} is out of range: must be >= {min}")),
            None => Err(format!("expected an integer, found {}", value.type_str())),
        },
        Check::NonEmpty => match value.as_str() {
            Some(s) if !s.trim().is_empty() => Ok(()),
            Some(_) => Err("must not be empty".into()),
            None => Err(format!("expected a string, found {}", value.type_str())),
        },
        Check::NonEmptyItems => match value.as_array() {
            Some(items)
                if items
                    .iter()
                    .all(|i| i.as_str().is_some_and(|s| !s.is_empty())) =>
            {
                Ok(())
            }
            _ => Err("every item must be a non-empty string".into()),
        },
        Check::Activation => match value.as_str() {
            Some("") => Ok(()),
            _ => check_value(Check::Choice(ACTIVATIONS), value),
        },
        Check::Choice(choices) => match value.as_str() {
            Some(s) if choices.contains(&s) => Ok(()),
            Some(s) => Err(format!(
                "`{s}` is not one of {}",
                choices
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None => Err(format!("expected a string, found {}", value.type_str())),
        },
        Check::Alpha => {
            let a = value_f64(value)?;
            if crate::model::alpha::is_valid(a) {
                Ok(())
            } else {
                Err(format!(
                    "{a} is out of range: must be {}",
                    crate::model::alpha::RULE
                ))
            }
        }
        Check::Dropout => {
            let p = value_f64(value)?;
            if p.is_finite() && p < 0.0 {
                Ok(())
            } else {
                check_float(p, Some(Incl(0.0)), Some(Excl(1.0))).map_err(|_| {
                    format!(
                        "{p} is out of range: must be 0 <= p < 1 (leave it out for the architecture's default)"
                    )
                })
            }
        }
        Check::Architecture => match value.as_str() {
            Some(s) if crate::model::zoo::find(s).is_some() => Ok(()),
            Some(s) => Err(format!(
                "unknown architecture `{s}`; known: {}",
                crate::model::zoo::names().join(", ")
            )),
            None => Err(format!("expected a string, found {}", value.type_str())),
        },
        Check::Device => match value.as_str() {
            Some(s) => s
                .parse::<crate::preset::schema::DeviceSpec>()
                .map(|_| ())
                .map_err(|_| format!("`{s}` is not {}", crate::preset::schema::DEVICE_SPELLINGS)),
            None => Err(format!("expected a string, found {}", value.type_str())),
        },
    }
}

fn value_f64(value: &toml::Value) -> Result<f64, String> {
    match value {
        toml::Value::Float(x) => Ok(*x),
        toml::Value::Integer(n) => Ok(*n as f64),
        other => Err(format!("expected a number, found {}", other.type_str())),
    }
}

fn check_float(x: f64, lo: Option<Bound>, hi: Option<Bound>) -> Result<(), String> {
    if !x.is_finite() {
        return Err(format!("{x} is not a finite number"));
    }
    let lo_ok = match lo {
        None => true,
        Some(Incl(b)) => x >= b,
        Some(Excl(b)) => x > b,
    };
    let hi_ok = match hi {
        None => true,
        Some(Incl(b)) => x <= b,
        Some(Excl(b)) => x < b,
    };
    if lo_ok && hi_ok {
        return Ok(());
    }
    let mut rule = Vec::new();
    match lo {
        Some(Incl(b)) => rule.push(format!(">= {b}")),
        Some(Excl(b)) => rule.push(format!("> {b}")),
        None => {}
    }
    match hi {
        Some(Incl(b)) => rule.push(format!("<= {b}")),
        Some(Excl(b)) => rule.push(format!("< {b}")),
        None => {}
    }
    Err(format!(
        "{x} is out of range: must be {}",
        rule.join(" and ")
    ))
}
