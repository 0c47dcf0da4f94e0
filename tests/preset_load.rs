//! Loading presets: shipped files, `extends`, and every kind of bad input giving a positioned error, never a panic.

use nfbench::preset::{self, ErrorKind, Position, Preset, PresetError};
use std::fs;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

fn load_err(text: &str) -> (PresetError, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "p.toml", text);
    let err = preset::load(&path).expect_err("the preset should be rejected");
    (err, path, dir)
}

fn pos(line: usize, column: usize) -> Option<Position> {
    Some(Position { line, column })
}

#[test]
fn every_shipped_preset_parses_and_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets");
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            preset::load(&path).unwrap_or_else(|e| panic!("{e}"));
            count += 1;
        }
    }
    assert!(count >= 7, "only {count} presets in {}", dir.display());
    for name in [
        "default",
        "nf_resnet50_imagenet",
        "nfnet_f0_imagenet",
        "bn_resnet_baseline",
        "plain_resnet_baseline",
        "no_agc",
        "large_batch_agc",
    ] {
        assert!(
            dir.join(format!("{name}.toml")).is_file(),
            "{name}.toml missing"
        );
    }
}

#[test]
fn empty_file_is_the_schema_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "p.toml", "# nothing\n");
    assert_eq!(preset::load(&path).unwrap(), Preset::default());
}

#[test]
fn malformed_toml_names_line_and_column() {
    let (e, path, _d) = load_err("[agc]\nlambda = 0.02\nenabled = tru\n");
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert_eq!(e.origin, path.display().to_string());
    assert_eq!(e.position, pos(3, 11));
    assert!(
        e.to_string()
            .starts_with(&format!("{}:3:11", path.display())),
        "{e}"
    );
}

#[test]
fn unknown_field_names_the_field() {
    let (e, _p, _d) = load_err("[agc]\nlambda = 0.02\nlamda = 0.1\n");
    assert_eq!(e.kind, ErrorKind::UnknownField);
    assert_eq!(e.field.as_deref(), Some("agc.lamda"));
    assert_eq!(e.position, pos(3, 1));
    let (e, _p, _d) = load_err("[optimizer]\nlr = 0.1\n");
    assert_eq!(e.kind, ErrorKind::UnknownField);
    assert_eq!(e.field.as_deref(), Some("optimizer"));
}

#[test]
fn wrong_type_names_the_field() {
    let (e, _p, _d) = load_err("[run]\nsteps = 10\n[agc]\nlambda = \"small\"\n");
    assert_eq!(e.kind, ErrorKind::Type);
    assert_eq!(e.field.as_deref(), Some("agc.lambda"));
    assert_eq!(e.position.map(|p| p.line), Some(4));
    let (e, _p, _d) = load_err("[data]\nbatch_size = -3\n");
    assert_eq!(e.kind, ErrorKind::Type);
    assert_eq!(e.field.as_deref(), Some("data.batch_size"));
}

#[test]
fn out_of_range_points_at_the_key() {
    let (e, _p, _d) = load_err("[model]\nname = \"nf_resnet_cifar\"\n  alpha = 1.5\n");
    assert_eq!(e.kind, ErrorKind::Range);
    assert_eq!(e.field.as_deref(), Some("model.alpha"));
    assert_eq!(e.position, pos(3, 3));
    let (e, _p, _d) = load_err("agc.lambda = 0.0\n");
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::Range, Some("agc.lambda"))
    );
    assert_eq!(e.position, pos(1, 5));
    let (e, _p, _d) = load_err("[data]\nbatch_size = 0\n");
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::Range, Some("data.batch_size"))
    );
    let (e, _p, _d) = load_err("[run]\ndevice = \"gpu\"\n");
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::Range, Some("run.device"))
    );
}

#[test]
fn nan_and_infinity_are_rejected() {
    for text in [
        "[optim]\nlr = nan\n",
        "[optim]\nlr = inf\n",
        "[optim]\nlr = -inf\n",
    ] {
        let (e, _p, _d) = load_err(text);
        assert_eq!(e.kind, ErrorKind::Range, "{text}");
        assert_eq!(e.field.as_deref(), Some("optim.lr"));
        assert_eq!(e.position, pos(2, 1));
    }
}

#[test]
fn non_utf8_file_gives_a_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    fs::write(&path, b"[agc]\nlambda = 0.02 # \xff\xfe\n").unwrap();
    let e = preset::load(&path).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Encoding);
    assert_eq!(e.position, pos(2, 17));
    assert!(e.to_string().contains("0xff"), "{e}");
}

#[test]
fn missing_file_names_it() {
    let e = preset::load("/nonexistent/nfbench/p.toml").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Io);
    assert!(e.to_string().contains("/nonexistent/nfbench/p.toml"), "{e}");
}

#[test]
fn extends_merges_key_by_key() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("base")).unwrap();
    write(
        &dir.path().join("base"),
        "root.toml",
        "[agc]\nlambda = 0.05\nexclude = [\"a\", \"b\"]\n[run]\nsteps = 77\nseed = 3\n",
    );
    write(
        dir.path(),
        "mid.toml",
        "extends = \"base/root.toml\"\n[run]\nseed = 4\n",
    );
    let top = write(
        dir.path(),
        "top.toml",
        "extends = \"mid.toml\"\n[agc]\nexclude = [\"c\"]\n",
    );
    let loaded = preset::load_chain(&top).unwrap();
    let p = &loaded.preset;
    assert_eq!(p.agc.lambda, 0.05);
    assert_eq!(p.agc.exclude, vec!["c".to_string()]);
    assert_eq!((p.run.steps, p.run.seed), (77, 4));
    assert_eq!(p.extends, None);
    assert_eq!(p.optim, Preset::default().optim);
    assert_eq!(loaded.files.len(), 3);
}

#[test]
fn range_error_from_a_parent_points_into_the_parent() {
    let dir = tempfile::tempdir().unwrap();
    let parent = write(
        dir.path(),
        "parent.toml",
        "[run]\nsteps = 10\n\n[optim]\nmomentum = 1.0\n",
    );
    let top = write(
        dir.path(),
        "top.toml",
        "extends = \"parent.toml\"\n[run]\nsteps = 20\n",
    );
    let e = preset::load(&top).unwrap_err();
    assert_eq!(e.origin, parent.display().to_string());
    assert_eq!(e.position, pos(5, 1));
    assert_eq!(e.field.as_deref(), Some("optim.momentum"));
    // The child fixing the value wins.
    fs::write(&top, "extends = \"parent.toml\"\noptim.momentum = 0.5\n").unwrap();
    assert_eq!(preset::load(&top).unwrap().optim.momentum, 0.5);
}

#[test]
fn extends_cycle_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.toml", "extends = \"b.toml\"\n");
    write(
        dir.path(),
        "b.toml",
        "# loops back\nextends = \"./a.toml\"\n",
    );
    let e = preset::load(dir.path().join("a.toml")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Cycle);
    assert!(e.origin.ends_with("b.toml"), "{e}");
    assert_eq!(e.position, pos(2, 11));
    assert_eq!(e.field.as_deref(), Some("extends"));
    // A file extending itself.
    write(dir.path(), "c.toml", "extends = \"c.toml\"\n");
    assert_eq!(
        preset::load(dir.path().join("c.toml")).unwrap_err().kind,
        ErrorKind::Cycle
    );
}

#[test]
fn missing_parent_points_at_extends() {
    let (e, path, _d) = load_err("[run]\nsteps = 5\n\nextends = \"nope.toml\"\n");
    // `extends` after a table header belongs to [run]: an unknown field there.
    assert_eq!(e.kind, ErrorKind::UnknownField);
    assert_eq!(e.field.as_deref(), Some("run.extends"));
    fs::write(&path, "extends = \"nope.toml\"\n").unwrap();
    let e = preset::load(&path).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Io);
    assert_eq!(e.position, pos(1, 11));
    assert!(e.to_string().contains("nope.toml"), "{e}");
}

#[test]
fn unknown_architecture_is_rejected_with_the_known_names() {
    let (e, _p, _d) = load_err("[model]\nname = \"nf_resnet_49\"\n");
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::Range, Some("model.name"))
    );
    assert_eq!(e.position, pos(2, 1));
    assert!(e.message.contains("nf_resnet50"), "{e}");
    for name in [
        "nf_resnet_cifar",
        "bn_resnet_cifar",
        "plain_resnet_cifar",
        "nf_resnet26",
        "nf_resnet50",
        "nf_resnet101",
        "nf_resnet152",
        "bn_resnet50",
        "plain_resnet50",
        "nfnet_f0",
        "nfnet_f7",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "p.toml", &format!("model.name = \"{name}\"\n"));
        preset::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn unreadable_or_empty_extends_points_at_extends() {
    let (e, path, dir) = load_err("extends = \"\"\n");
    assert_eq!((e.kind, e.position), (ErrorKind::Range, pos(1, 11)));
    fs::create_dir(dir.path().join("sub")).unwrap();
    fs::write(&path, "\nextends = \"sub\"\n").unwrap();
    let e = preset::load(&path).unwrap_err();
    assert_eq!((e.kind, e.position), (ErrorKind::Io, pos(2, 11)));
    assert_eq!(e.origin, path.display().to_string());
}

#[test]
fn duplicate_keys_and_wrong_extends_type_are_positioned() {
    let (e, _p, _d) = load_err("[agc]\nlambda = 0.1\nlambda = 0.2\n");
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert_eq!(e.position.map(|p| p.line), Some(3));
    let (e, _p, _d) = load_err("extends = 5\n");
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::Type, Some("extends"))
    );
}

#[test]
fn the_old_default_spellings_of_activation_and_dropout_still_mean_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let left_out = preset::load(write(dir.path(), "new.toml", "[model]\nalpha = 0.3\n")).unwrap();
    assert_eq!(
        (left_out.model.activation.as_deref(), left_out.model.dropout),
        (None, None)
    );
    for old in [
        "[model]\nalpha = 0.3\nactivation = \"\"\ndropout = -1\n",
        "[model]\nalpha = 0.3\nactivation = \"\"\ndropout = -1.0\n",
        "[model]\nalpha = 0.3\ndropout = -0.5\n",
    ] {
        let p = preset::load(write(dir.path(), "old.toml", old)).unwrap();
        assert_eq!(p, left_out, "{old}");
    }
    let set = preset::load(write(
        dir.path(),
        "set.toml",
        "[model]\nactivation = \"gelu\"\ndropout = 0.0\n",
    ))
    .unwrap();
    assert_eq!(
        (set.model.activation.as_deref(), set.model.dropout),
        (Some("gelu"), Some(0.0))
    );
}

#[test]
fn wrong_activation_dropout_device_and_dtype_name_the_field_and_the_accepted_values() {
    for (text, field, words) in [
        (
            "[model]\nactivation = \"swish\"\n",
            "model.activation",
            "`gelu`",
        ),
        ("[model]\ndropout = 1.0\n", "model.dropout", "0 <= p < 1"),
        ("[model]\ndropout = nan\n", "model.dropout", "0 <= p < 1"),
        (
            "[run]\ndevice = \"gpu\"\n",
            "run.device",
            "`auto`, `cpu` or `cuda:N`",
        ),
        ("[run]\ndevice = \"cuda:x\"\n", "run.device", "`cuda:N`"),
        ("[run]\ndtype = \"fp16\"\n", "run.dtype", "`f32` or `bf16`"),
    ] {
        let (e, _p, _d) = load_err(text);
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Range, Some(field)),
            "{text}: {e}"
        );
        let message = e.to_string();
        assert!(message.contains(words), "{text}: {message}");
        assert_eq!(e.position.map(|p| p.line), Some(2), "{text}: {message}");
    }
}
