//! Writing live values back into a preset file: comments and layout kept, parents untouched, atomic.

use nfbench::preset::{self, ErrorKind, Preset};
use std::fs;

const FILE: &str = "\
# My experiment.
extends = \"base.toml\"

[agc]
# The clipping threshold.
lambda = 0.01   # tuned by hand
enabled = true

[run]
steps = 100
";

#[test]
fn live_values_are_written_and_comments_kept() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("base.toml"), "[model]\nalpha = 0.3\n").unwrap();
    let path = dir.path().join("p.toml");
    fs::write(&path, FILE).unwrap();

    let mut p = preset::load(&path).unwrap();
    p.agc.lambda = 0.025;
    p.run.stats_every = 7;
    p.optim.momentum = 0.8;
    p.run.steps = 999; // restart-only: never written back
    let written = preset::write_back_fields(&path, &p).unwrap();
    assert_eq!(
        written,
        vec!["optim.momentum", "agc.lambda", "run.stats_every"]
    );

    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("# My experiment.\nextends = \"base.toml\"\n"),
        "{text}"
    );
    assert!(
        text.contains("# The clipping threshold.\nlambda = 0.025   # tuned by hand\n"),
        "{text}"
    );
    assert!(text.contains("steps = 100\n"), "{text}");
    let back = preset::load(&path).unwrap();
    assert_eq!(back.agc.lambda, 0.025);
    assert_eq!(back.run.stats_every, 7);
    assert_eq!(back.optim.momentum, 0.8);
    assert_eq!(back.run.steps, 100);
    // The inherited alpha did not change, so it stays inherited; the parent is untouched.
    assert!(!text.contains("alpha"));
    assert_eq!(
        fs::read_to_string(dir.path().join("base.toml")).unwrap(),
        "[model]\nalpha = 0.3\n"
    );
    // No temporary files left behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    // Writing the same values again changes nothing.
    assert!(preset::write_back_fields(&path, &back).unwrap().is_empty());
}

#[test]
fn dotted_and_inline_sections_are_edited_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    fs::write(&path, "agc.lambda = 0.01\nmodel = { alpha = 0.2 }\n").unwrap();
    let mut p = preset::load(&path).unwrap();
    p.agc.lambda = 0.5;
    p.model.alpha = 0.4;
    p.agc.enabled = false;
    preset::write_back(&path, &p).unwrap();
    let back = preset::load(&path).unwrap();
    assert_eq!(
        (back.agc.lambda, back.model.alpha, back.agc.enabled),
        (0.5, 0.4, false)
    );
    assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 3);
}

#[test]
fn an_invalid_file_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    fs::write(&path, "[agc]\nlambda = \n").unwrap();
    let e = preset::write_back(&path, &Preset::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert_eq!(fs::read_to_string(&path).unwrap(), "[agc]\nlambda = \n");
}
