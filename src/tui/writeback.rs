//! `w`: write the live values in force back into the preset file, keeping its comments and layout.

use crate::train::messages::LiveParam;
use std::path::{Path, PathBuf};
use toml_edit::{value, DocumentMut, Item, Table};

#[derive(Debug, thiserror::Error)]
pub enum WriteBackError {
    #[error("cannot read preset {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("preset {path} is not valid TOML: {source}")]
    Parse {
        path: PathBuf,
        source: toml_edit::TomlError,
    },
    #[error("preset {path}: `{section}` is not a table")]
    NotATable { path: PathBuf, section: String },
    #[error("cannot write preset {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Set each parameter's dotted key in the file at `path` (creating the section if needed), and write it back
/// atomically (a temporary file renamed over it, so a watcher never sees half a file).
pub fn write_back(path: &Path, params: &[LiveParam]) -> Result<(), WriteBackError> {
    let text = std::fs::read_to_string(path).map_err(|source| WriteBackError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut doc: DocumentMut = text.parse().map_err(|source| WriteBackError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    for p in params {
        let (section, field) = p.key().split_once('.').unwrap_or(("", p.key()));
        let item = doc
            .entry(section)
            .or_insert_with(|| Item::Table(Table::new()));
        let Some(table) = item.as_table_like_mut() else {
            return Err(WriteBackError::NotATable {
                path: path.to_path_buf(),
                section: section.to_string(),
            });
        };
        let v = match *p {
            LiveParam::AgcLambda(x)
            | LiveParam::Alpha(x)
            | LiveParam::Lr(x)
            | LiveParam::LrScale(x)
            | LiveParam::WeightDecay(x)
            | LiveParam::Momentum(x) => value(x),
            LiveParam::AgcEnabled(b) => value(b),
            LiveParam::StatsEvery(n) => value(i64::try_from(n).unwrap_or(i64::MAX)),
        };
        // Keep the comment that decorates an existing value.
        match table.get_mut(field) {
            Some(existing) if existing.is_value() => {
                let decor = existing.as_value().map(|v| v.decor().clone());
                *existing = v;
                if let (Some(d), Some(new)) = (decor, existing.as_value_mut()) {
                    *new.decor_mut() = d;
                }
            }
            _ => {
                table.insert(field, v);
            }
        }
    }
    let tmp = path.with_extension("toml.nfbench-tmp");
    let write = |source| WriteBackError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, doc.to_string()).map_err(write)?;
    std::fs::rename(&tmp, path).map_err(write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_replaced_and_comments_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            "# my preset\n[agc]\n# the threshold\nlambda = 0.01 # tuned\n\n[model]\nname = \"x\"\n",
        )
        .unwrap();
        write_back(
            &path,
            &[
                LiveParam::AgcLambda(0.02),
                LiveParam::Alpha(0.3),
                LiveParam::StatsEvery(10),
            ],
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("# my preset"));
        assert!(text.contains("# the threshold"));
        assert!(text.contains("lambda = 0.02 # tuned"), "{text}");
        assert!(text.contains("alpha = 0.3"));
        assert!(text.contains("[run]") && text.contains("stats_every = 10"));
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(v["agc"]["lambda"].as_float(), Some(0.02));
    }

    #[test]
    fn a_broken_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[agc\nlambda = ").unwrap();
        let err = write_back(&path, &[LiveParam::AgcLambda(0.02)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.toml"), "{err}");
        let missing = write_back(&dir.path().join("nope.toml"), &[])
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.toml"));
    }
}
