//! [`PresetError`]: every way a preset can be wrong, always naming where.

use std::path::{Path, PathBuf};

/// What kind of problem a [`PresetError`] reports; tests and the TUI match on it, users read the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be read (missing, permissions), or written back.
    Io,
    /// The file is not valid UTF-8.
    Encoding,
    /// The file is not valid TOML.
    Syntax,
    /// A key that no section of the schema has.
    UnknownField,
    /// A value of the wrong TOML type (a string where a number goes, ...).
    Type,
    /// A value of the right type outside its range (NaN, negative rate, ...).
    Range,
    /// The `extends` chain loops back on itself.
    Cycle,
    /// A `--set KEY=VALUE` argument that is not of that form.
    Override,
}

impl ErrorKind {
    /// The kind of a serde error while deserialising a preset, from its message: a key the schema lacks, a spelling
    /// outside an enum's words (`run.device = "gpu"`: the right TOML type, the wrong value, like a range), or
    /// otherwise a value of the wrong type.
    pub(crate) fn of_serde(message: &str) -> ErrorKind {
        if message.contains("unknown field") {
            ErrorKind::UnknownField
        } else if message.starts_with("invalid value: string")
            || message.starts_with("unknown variant")
        {
            ErrorKind::Range
        } else {
            ErrorKind::Type
        }
    }
}

/// A position in a file: 1-based line and column (the column counts characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text` (clamped to the end of the text).
    pub fn of_offset(text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.matches('\n').count() + 1;
        let mut column = before[line_start..].chars().count() + 1;
        // Editors do not show a byte-order mark as a column.
        if line == 1 && before.starts_with('\u{feff}') {
            column -= 1;
        }
        Position { line, column }
    }
}

/// A preset that could not be loaded, checked, overridden or written back.
///
/// Display: `FILE:LINE:COLUMN: field `a.b`: MESSAGE` (position and field when known). `origin` is a file path, or
/// for a `--set` argument the text `--set <argument>` with the column inside the argument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct PresetError {
    pub kind: ErrorKind,
    /// The file (or `--set` argument) the problem is in.
    pub origin: String,
    pub position: Option<Position>,
    /// The dotted field, e.g. `agc.lambda`, when the problem belongs to one.
    pub field: Option<String>,
    pub message: String,
}

impl PresetError {
    pub(crate) fn new(
        kind: ErrorKind,
        origin: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        PresetError {
            kind,
            origin: origin.into(),
            position: None,
            field: None,
            message: message.into(),
        }
    }

    pub(crate) fn in_file(kind: ErrorKind, path: &Path, message: impl Into<String>) -> Self {
        Self::new(kind, path.display().to_string(), message)
    }

    pub(crate) fn at(mut self, position: Position) -> Self {
        self.position = Some(position);
        self
    }

    pub(crate) fn at_offset(self, text: &str, offset: usize) -> Self {
        self.at(Position::of_offset(text, offset))
    }

    pub(crate) fn field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        if !field.is_empty() {
            self.field = Some(field);
        }
        self
    }

    /// The file this error is in, when it is in a file (not a `--set` argument).
    pub fn path(&self) -> Option<PathBuf> {
        (!self.origin.starts_with("--set ")).then(|| PathBuf::from(&self.origin))
    }
}

impl PresetError {
    fn render(&self) -> String {
        let mut out = self.origin.clone();
        if let Some(p) = self.position {
            out.push_str(&format!(":{}:{}", p.line, p.column));
        }
        if let Some(field) = &self.field {
            out.push_str(&format!(": field `{field}`"));
        }
        out.push_str(": ");
        out.push_str(&self.message);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let text = "a = 1\nbé = 2\n";
        // (byte offset, line, column): "bé = " is 6 bytes but 5 characters; past the end clamps to the end.
        for (offset, line, column) in [(0, 1, 1), (6, 2, 1), (12, 2, 6), (999, 3, 1)] {
            assert_eq!(
                Position::of_offset(text, offset),
                Position { line, column },
                "offset {offset}"
            );
        }
    }

    #[test]
    fn display_names_file_position_and_field() {
        let e = PresetError::new(ErrorKind::Range, "p.toml", "must be > 0")
            .at(Position { line: 3, column: 1 })
            .field("agc.lambda");
        assert_eq!(e.to_string(), "p.toml:3:1: field `agc.lambda`: must be > 0");
    }
}
