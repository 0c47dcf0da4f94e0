//! `--set KEY=VALUE` overrides on a loaded preset.

use super::error::{ErrorKind, Position, PresetError};
use super::fields::{check_value, field, to_value};
use super::schema::Preset;

/// Apply `--set` arguments in order: `agc.lambda=0.02`, `model.name=nfnet_f0`, `agc.exclude=["linear.w"]`.
///
/// Values are TOML values; for string and path fields a bare word is taken as the string. Each value is type- and
/// range-checked; on error `preset` is left as it was before that argument, and the error names the argument, the
/// column in it, and the field.
pub fn apply_overrides(preset: &mut Preset, sets: &[String]) -> Result<(), PresetError> {
    for arg in sets {
        apply_one(preset, arg)?;
    }
    Ok(())
}

fn apply_one(preset: &mut Preset, arg: &str) -> Result<(), PresetError> {
    let origin = format!("--set {arg}");
    let err = |kind, column: usize, message: String| {
        PresetError::new(kind, origin.clone(), message).at(Position { line: 1, column })
    };
    let Some((key, raw)) = arg.split_once('=') else {
        return Err(err(
            ErrorKind::Override,
            1,
            "expected KEY=VALUE, e.g. agc.lambda=0.02".into(),
        ));
    };
    let key = key.trim();
    let value_column = arg[..key_end(arg)].chars().count() + 2;
    let info = match field(key) {
        Some(f) if f.name != "extends" => f,
        _ => {
            let message = format!("unknown field `{key}` (`nfbench preset fields` lists them)");
            return Err(err(ErrorKind::UnknownField, 1, message));
        }
    };
    let value = parse_value(raw, matches!(info.ty, "string" | "path"))
        .map_err(|m| err(ErrorKind::Syntax, value_column, m).field(key))?;

    let mut root = to_value(preset);
    set_at(&mut root, key, value.clone());
    let updated: Preset = root.try_into().map_err(|e: toml::de::Error| {
        let message = e.message().to_string();
        err(ErrorKind::of_serde(&message), value_column, message).field(key)
    })?;
    check_value(info.check, &value)
        .map_err(|m| err(ErrorKind::Range, value_column, m).field(key))?;
    *preset = updated;
    Ok(())
}

/// Byte index of the `=` in `arg` (the caller has checked there is one).
fn key_end(arg: &str) -> usize {
    arg.find('=').unwrap_or(arg.len())
}

/// A TOML value; a bare word counts as a string where the field is one.
fn parse_value(raw: &str, bare_word_is_string: bool) -> Result<toml::Value, String> {
    let raw = raw.trim();
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").ok_or_else(|| "no value".to_string()),
        Err(_) if bare_word_is_string && !raw.starts_with(['"', '\'', '[', '{']) => {
            Ok(toml::Value::String(raw.to_string()))
        }
        Err(e) => Err(format!("`{raw}` is not a TOML value: {}", e.message())),
    }
}

/// Set a dotted key in a tree of tables (the tables exist: every field's section is always serialised).
fn set_at(root: &mut toml::Value, dotted: &str, value: toml::Value) {
    let mut node = root;
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some(table) = node.as_table_mut() else {
            return;
        };
        if parts.peek().is_none() {
            table.insert(part.to_string(), value);
            return;
        }
        node = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
    }
}
