//! `w` in the workbench: write the live values back into the preset file, keeping its comments and layout.

use super::diff::live_param;
use super::error::{ErrorKind, PresetError};
use super::fields::fields;
use super::load::{load_chain, parse_file};
use super::schema::Preset;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `preset`'s live values (agc.lambda, model.alpha, ...) into the preset file at `path`.
///
/// Only live values that differ from what the file (with its `extends` chain) already gives are written, into the
/// file itself (never into a parent), so an inherited value that did not change stays inherited. Existing keys
/// keep their comments and position; missing ones are added to their section (created at the end if needed). The
/// file is replaced atomically (a temporary file in the same directory, then a rename), so a watcher or a crash
/// never sees half a file. The file must currently be valid.
pub fn write_back(path: &Path, preset: &Preset) -> Result<(), PresetError> {
    write_back_fields(path, preset).map(drop)
}

/// [`write_back`], returning the fields it wrote (for the events pane and the run record).
pub fn write_back_fields(path: &Path, preset: &Preset) -> Result<Vec<&'static str>, PresetError> {
    let current = load_chain(path)?.preset;
    let file = parse_file(path)?;
    let mut doc: toml_edit::DocumentMut =
        file.text.parse().map_err(|e: toml_edit::TomlError| {
            PresetError::in_file(ErrorKind::Syntax, path, e.message().to_string())
        })?;
    let mut written = Vec::new();
    for info in fields().iter().filter(|f| super::live::is_live(f.name)) {
        let (Some(new), Some(old)) = (
            live_param(preset, info.name),
            live_param(&current, info.name),
        ) else {
            continue;
        };
        if new != old {
            set_key(&mut doc, info.name, edit_value(new))
                .map_err(|m| PresetError::in_file(ErrorKind::Io, path, m).field(info.name))?;
            written.push(info.name);
        }
    }
    if !written.is_empty() {
        replace_atomically(path, doc.to_string().as_bytes())?;
    }
    Ok(written)
}

fn edit_value(param: super::live::LiveParam) -> toml_edit::Value {
    match param.toml_value() {
        toml::Value::Boolean(b) => b.into(),
        toml::Value::Integer(n) => n.into(),
        toml::Value::Float(x) => x.into(),
        other => other.to_string().into(),
    }
}

/// Set `section.key` in the document, keeping the old value's surrounding whitespace and trailing comment.
fn set_key(
    doc: &mut toml_edit::DocumentMut,
    dotted: &str,
    mut value: toml_edit::Value,
) -> Result<(), String> {
    let (section, key) = dotted
        .split_once('.')
        .ok_or_else(|| format!("`{dotted}` has no section"))?;
    let root = doc.as_table_mut();
    if !root.contains_key(section) {
        root.insert(section, toml_edit::Item::Table(toml_edit::Table::new()));
    }
    let table = root
        .get_mut(section)
        .and_then(|item| item.as_table_like_mut())
        .ok_or_else(|| format!("`{section}` in the file is not a table"))?;
    match table.get_mut(key) {
        Some(item) => {
            if let Some(old) = item.as_value() {
                *value.decor_mut() = old.decor().clone();
            }
            *item = toml_edit::Item::Value(value);
        }
        None => {
            table.insert(key, toml_edit::Item::Value(value));
        }
    }
    Ok(())
}

/// Replace the file's contents via a temporary sibling and a rename (following a symlink to its target).
fn replace_atomically(path: &Path, bytes: &[u8]) -> Result<(), PresetError> {
    let io = |what: &str, e: std::io::Error| {
        PresetError::in_file(ErrorKind::Io, path, format!("{what}: {e}"))
    };
    let target =
        std::fs::canonicalize(path).map_err(|e| io("cannot resolve the preset's path", e))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = target.with_file_name(format!(".{name}.nfbench-{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        if let Ok(meta) = std::fs::metadata(&target) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, &target)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("cannot write the preset back", e)
    })
}
