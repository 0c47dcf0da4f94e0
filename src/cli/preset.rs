//! `nfbench preset fields|check`.

use crate::preset::{self, FieldInfo};
use anyhow::Context;
use clap::Subcommand;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum PresetCommand {
    /// Every preset field: name, type, default, range, live or restart-only, and its documentation.
    Fields,
    /// Validate a preset and print the effective configuration (after `extends` and `--set`).
    Check {
        file: PathBuf,
        /// Override preset fields, e.g. `--set agc.lambda=0.02` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

pub fn run(cmd: PresetCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PresetCommand::Fields => {
            print!("{}", fields_table(preset::fields()));
            Ok(ExitCode::SUCCESS)
        }
        PresetCommand::Check { file, set } => {
            print!("{}", check(&file, &set)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The effective configuration of `file` as TOML, headed by the files it came from.
pub fn check(file: &std::path::Path, set: &[String]) -> anyhow::Result<String> {
    let mut loaded = preset::load_chain(file)?;
    preset::apply_overrides(&mut loaded.preset, set)?;
    let body =
        toml::to_string_pretty(&loaded.preset).context("printing the effective configuration")?;
    let mut out = String::new();
    let chain: Vec<String> = loaded
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let _ = writeln!(
        out,
        "# effective configuration of {} (valid)",
        file.display()
    );
    if chain.len() > 1 {
        let _ = writeln!(out, "# extends: {}", chain.join(" -> "));
    }
    for s in set {
        let _ = writeln!(out, "# --set {s}");
    }
    out.push('\n');
    out.push_str(&annotate(&body, &loaded, set));
    out.push_str(&not_set(&body));
    Ok(out)
}

/// `# model.dropout: not set (the architecture's)` for each optional field the effective TOML leaves out, so the
/// listing still names every field and says whose default applies.
fn not_set(body: &str) -> String {
    let Ok(root) = toml::from_str::<toml::Value>(body) else {
        return String::new();
    };
    let mut out = String::new();
    for f in preset::fields().iter().filter(|f| f.name != "extends") {
        if f.name.split('.').try_fold(&root, |v, k| v.get(k)).is_none() {
            let _ = writeln!(out, "# {}: not set {}", f.name, f.default);
        }
    }
    out
}

/// Mark each `key = value` line of the effective TOML with where its value came from, when that is not simply
/// the file itself: `# from parent.toml`, `# --set`, or `# default`.
fn annotate(body: &str, loaded: &preset::LoadedPreset, set: &[String]) -> String {
    let overridden: Vec<&str> = set
        .iter()
        .filter_map(|s| s.split_once('='))
        .map(|(k, _)| k.trim())
        .collect();
    let mut section = String::new();
    let mut out = String::new();
    for line in body.lines() {
        out.push_str(line);
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((key, _)) = line.split_once(" = ") {
            let dotted = if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            };
            let origin = if overridden.contains(&dotted.as_str()) {
                Some("--set".to_string())
            } else {
                match loaded.set_by.get(&dotted) {
                    Some(0) => None,
                    Some(&i) => loaded.files.get(i).map(|f| format!("from {}", f.display())),
                    None => Some("default".to_string()),
                }
            };
            if let Some(origin) = origin {
                out.push_str(&format!("  # {origin}"));
            }
        }
        out.push('\n');
    }
    out
}

/// One row per field, aligned, each followed by its documentation, indented and wrapped.
pub fn fields_table(fields: &[FieldInfo]) -> String {
    let head = ["field", "type", "default", "range", "when"];
    let rows: Vec<[&str; 5]> = fields
        .iter()
        .map(|f| {
            let when = if crate::preset::live::is_live(f.name) {
                "live"
            } else {
                "restart"
            };
            [f.name, f.ty, f.default, f.range, when]
        })
        .collect();
    let mut widths = head.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str; 5]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                let _ = write!(s, "{cell:<w$}  ");
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&head);
    for (row, f) in rows.iter().zip(fields) {
        out.push_str(&line(row));
        for doc_line in wrap(f.doc, 96) {
            let _ = writeln!(out, "    {doc_line}");
        }
    }
    out
}

/// Greedy word wrap.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let current = lines.last_mut().map_or(0, |l| l.chars().count());
        if current > 0 && current + 1 + word.chars().count() > width {
            lines.push(String::new());
        }
        if let Some(last) = lines.last_mut() {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_every_field_with_its_doc() {
        let table = fields_table(preset::fields());
        for f in preset::fields() {
            assert!(
                table.lines().any(|l| l.starts_with(f.name)),
                "{} missing",
                f.name
            );
        }
        assert!(table.contains("agc.lambda"));
        assert!(wrap("a bb ccc dddd", 6) == vec!["a bb", "ccc", "dddd"]);
    }
}
