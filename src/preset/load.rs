//! Loading a preset: read, check encoding and syntax, follow `extends`, merge, deserialise, validate.
//!
//! Each file of the chain is parsed on its own first (every schema struct has serde defaults, so a partial file
//! deserialises), so syntax, unknown-field and type errors point into the file that has them. The files' tables are
//! then merged key by key, parent first, and the result validated; a range error points at the key in the file
//! that set the offending value.

use super::error::{ErrorKind, PresetError};
use super::fields::violations;
use super::schema::Preset;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Longest `extends` chain followed; deeper chains are almost certainly a mistake.
const MAX_CHAIN: usize = 64;

/// A loaded preset with the files it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedPreset {
    /// The effective configuration (its `extends` is cleared: the chain is already merged in).
    pub preset: Preset,
    /// The file asked for, then the files it extends, in order (as given, not canonicalised).
    pub files: Vec<PathBuf>,
    /// For every field some file sets: the index in `files` of the file whose value is in force.
    /// Fields missing here have their default.
    pub set_by: std::collections::BTreeMap<String, usize>,
}

/// Read the preset at `path` and its `extends` chain, merge, deserialise and validate it.
pub fn load(path: impl AsRef<Path>) -> Result<Preset, PresetError> {
    load_chain(path.as_ref()).map(|l| l.preset)
}

/// Like [`load`], also returning the chain of files (for the watcher).
pub fn load_chain(path: &Path) -> Result<LoadedPreset, PresetError> {
    let chain = read_chain(path)?;
    let mut merged = toml::Table::new();
    for file in chain.iter().rev() {
        merge_into(&mut merged, &file.table);
    }
    merged.remove("extends");
    let top = &chain[0];
    let preset: Preset = merged.try_into().map_err(|e: toml::de::Error| {
        PresetError::in_file(
            ErrorKind::of_serde(e.message()),
            &top.path,
            e.message().to_string(),
        )
    })?;
    if let Some((field, message)) = violations(&preset).into_iter().next() {
        return Err(locate(&chain, field, ErrorKind::Range, message));
    }
    let mut set_by = std::collections::BTreeMap::new();
    for info in super::fields::fields() {
        if let Some(i) = chain.iter().position(|f| f.span_of(info.name).is_some()) {
            set_by.insert(info.name.to_string(), i);
        }
    }
    Ok(LoadedPreset {
        preset,
        files: chain.into_iter().map(|f| f.path).collect(),
        set_by,
    })
}

/// One parsed file of an `extends` chain.
pub(crate) struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    pub table: toml::Table,
    pub keys: Vec<KeySpan>,
}

/// Where a dotted key and its value sit in a file (byte ranges).
#[derive(Debug, Clone)]
pub(crate) struct KeySpan {
    pub dotted: String,
    pub key: Range<usize>,
    pub value: Range<usize>,
}

impl SourceFile {
    /// The innermost key whose key or value covers byte `offset`.
    fn key_at(&self, offset: usize) -> Option<&KeySpan> {
        let covers = |r: &Range<usize>| r.contains(&offset) || (r.is_empty() && r.start == offset);
        self.keys
            .iter()
            .filter(|k| covers(&k.key) || covers(&k.value))
            .max_by_key(|k| k.dotted.len())
    }

    fn span_of(&self, dotted: &str) -> Option<&KeySpan> {
        self.keys.iter().find(|k| k.dotted == dotted)
    }

    fn error_at(&self, kind: ErrorKind, offset: usize, message: impl Into<String>) -> PresetError {
        let field = self
            .key_at(offset)
            .map(|k| k.dotted.clone())
            .unwrap_or_default();
        PresetError::in_file(kind, &self.path, message)
            .at_offset(&self.text, offset)
            .field(field)
    }
}

/// Read `path` and every file it extends, child first; detects cycles and missing parents.
fn read_chain(path: &Path) -> Result<Vec<SourceFile>, PresetError> {
    let mut chain: Vec<SourceFile> = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut current = path.to_path_buf();
    loop {
        let canonical = match std::fs::canonicalize(&current) {
            Ok(c) => c,
            Err(e) => return Err(missing(&chain, &current, &e)),
        };
        if let Some(first) = seen.iter().position(|p| *p == canonical) {
            let mut names: Vec<String> = chain[first..]
                .iter()
                .map(|f| f.path.display().to_string())
                .collect();
            names.push(current.display().to_string());
            let message = format!("`extends` cycle: {}", names.join(" -> "));
            return Err(at_extends(&chain, ErrorKind::Cycle, message));
        }
        if chain.len() >= MAX_CHAIN {
            let message = format!("`extends` chain longer than {MAX_CHAIN} files");
            return Err(at_extends(&chain, ErrorKind::Cycle, message));
        }
        let file = match parse_file(&current) {
            // A parent that exists but cannot be read (a directory, no permission): blame the `extends`.
            Err(e) if e.kind == ErrorKind::Io && !chain.is_empty() => {
                return Err(at_extends(&chain, ErrorKind::Io, e.message));
            }
            other => other?,
        };
        let next = file
            .table
            .get("extends")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        if next.as_deref().is_some_and(|n| n.trim().is_empty()) {
            let message = "`extends` is empty: name a preset file, or remove the key".to_string();
            return Err(at_extends(
                std::slice::from_ref(&file),
                ErrorKind::Range,
                message,
            ));
        }
        seen.push(canonical);
        chain.push(file);
        match next {
            None => return Ok(chain),
            Some(rel) => {
                let dir = current.parent().unwrap_or(Path::new(""));
                current = dir.join(rel);
            }
        }
    }
}

/// The error for a file that cannot be opened: at the `extends` that names it, or plain for the top file.
fn missing(chain: &[SourceFile], path: &Path, e: &std::io::Error) -> PresetError {
    if chain.is_empty() {
        PresetError::in_file(ErrorKind::Io, path, format!("cannot read preset: {e}"))
    } else {
        let message = format!("cannot read extended preset {}: {e}", path.display());
        at_extends(chain, ErrorKind::Io, message)
    }
}

/// An error placed on the `extends` value of the last file read.
fn at_extends(chain: &[SourceFile], kind: ErrorKind, message: String) -> PresetError {
    let Some(last) = chain.last() else {
        return PresetError::new(kind, "(no file)", message);
    };
    let offset = last.span_of("extends").map_or(0, |k| k.value.start);
    last.error_at(kind, offset, message)
}

/// A validation error placed on the key in the nearest file (child first) that set `field`.
fn locate(chain: &[SourceFile], field: &str, kind: ErrorKind, message: String) -> PresetError {
    for file in chain {
        if let Some(k) = file.span_of(field) {
            return PresetError::in_file(kind, &file.path, message)
                .at_offset(&file.text, k.key.start)
                .field(field);
        }
    }
    // Not set anywhere: the default itself is out of range (cannot happen for shipped defaults).
    PresetError::in_file(
        kind,
        &chain[0].path,
        format!("{message} (the default value)"),
    )
    .field(field)
}

/// Read and check one file on its own: encoding, TOML syntax, unknown fields and types.
pub(crate) fn parse_file(path: &Path) -> Result<SourceFile, PresetError> {
    let bytes = std::fs::read(path).map_err(|e| {
        PresetError::in_file(ErrorKind::Io, path, format!("cannot read preset: {e}"))
    })?;
    let text = decode(path, bytes)?;
    parse_text(path, text)
}

/// Check and index TOML `text` as if read from `path`.
pub(crate) fn parse_text(path: &Path, text: String) -> Result<SourceFile, PresetError> {
    // The partial tree of a broken file still indexes the keys before the error, to name the field.
    let (keys, syntax_error) = {
        let (doc, errors) = toml::de::DeTable::parse_recoverable(&text);
        let mut keys = Vec::new();
        index_table(doc.get_ref(), "", &mut keys);
        let first = errors
            .first()
            .map(|e| (e.span().map_or(0, |s| s.start), e.message().to_string()));
        (keys, first)
    };
    let file = SourceFile {
        path: path.to_path_buf(),
        text,
        table: toml::Table::new(),
        keys,
    };
    if let Some((offset, message)) = syntax_error {
        return Err(file.error_at(ErrorKind::Syntax, offset, message));
    }
    let mut file = file;
    if let Err(e) = toml::from_str::<Preset>(&file.text) {
        let kind = ErrorKind::of_serde(e.message());
        let offset = e.span().map_or(0, |s| s.start);
        return Err(file.error_at(kind, offset, e.message().to_string()));
    }
    file.table = toml::from_str(&file.text).map_err(|e: toml::de::Error| {
        let offset = e.span().map_or(0, |s| s.start);
        file.error_at(ErrorKind::Syntax, offset, e.message().to_string())
    })?;
    Ok(file)
}

/// UTF-8 text, or an error at the first bad byte.
fn decode(path: &Path, bytes: Vec<u8>) -> Result<String, PresetError> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let prefix = String::from_utf8_lossy(&bytes[..valid]);
        let message = format!(
            "not valid UTF-8 (byte 0x{:02x} at offset {valid})",
            bytes[valid]
        );
        PresetError::in_file(ErrorKind::Encoding, path, message).at_offset(&prefix, valid)
    })
}

/// Record every key of `table` (recursively) with its spans.
fn index_table(table: &toml::de::DeTable<'_>, prefix: &str, out: &mut Vec<KeySpan>) {
    for (key, value) in table.iter() {
        let dotted = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        out.push(KeySpan {
            dotted: dotted.clone(),
            key: key.span(),
            value: value.span(),
        });
        if let toml::de::DeValue::Table(inner) = value.get_ref() {
            index_table(inner, &dotted, out);
        }
    }
}

/// Merge `child` over `acc`: tables merge key by key, any other value (arrays included) replaces.
fn merge_into(acc: &mut toml::Table, child: &toml::Table) {
    for (key, value) in child {
        match (acc.get_mut(key), value) {
            (Some(toml::Value::Table(base)), toml::Value::Table(over)) => merge_into(base, over),
            _ => {
                acc.insert(key.clone(), value.clone());
            }
        }
    }
}
