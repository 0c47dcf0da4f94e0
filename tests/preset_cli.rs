//! `nfbench preset fields` and `nfbench preset check`, run as the user runs them.

use std::path::Path;
use std::process::Command;

fn nfbench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nfbench"))
        .args(args)
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

#[test]
fn fields_lists_every_field() {
    let (ok, out, _) = nfbench(&["preset", "fields"]);
    assert!(ok);
    for f in nfbench::preset::fields() {
        assert!(
            out.lines().any(|l| l.starts_with(f.name)),
            "{} missing",
            f.name
        );
    }
    let lambda = out.lines().find(|l| l.starts_with("agc.lambda")).unwrap();
    assert!(
        lambda.contains("0.01") && lambda.contains("> 0") && lambda.ends_with("live"),
        "{lambda}"
    );
}

#[test]
fn check_prints_the_effective_configuration() {
    let preset = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/no_agc.toml");
    let (ok, out, _) = nfbench(&[
        "preset",
        "check",
        preset.to_str().unwrap(),
        "--set",
        "agc.lambda=0.5",
    ]);
    assert!(ok);
    assert!(out.contains("# extends:"), "{out}");
    // Each value says where it came from when that is not the file itself.
    assert!(out.contains("\nlambda = 0.5  # --set\n"), "{out}");
    assert!(out.contains("\nenabled = false\n"), "{out}");
    let steps = out.lines().find(|l| l.starts_with("steps = ")).unwrap();
    assert!(
        steps.contains("  # from ") && steps.ends_with("default.toml"),
        "{steps}"
    );
    assert!(out.contains("\neval_resolution = 0  # default\n"), "{out}");
    // Optional fields the preset leaves out are named with whose default applies.
    for name in ["model.activation", "model.dropout"] {
        assert!(
            out.contains(&format!("\n# {name}: not set (the architecture's)\n")),
            "{out}"
        );
    }
    assert!(!out.contains("# model.alpha: not set"), "{out}");
    let body: String = out
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let effective: nfbench::preset::Preset = toml::from_str(&body).unwrap();
    assert!(!effective.agc.enabled);
    assert_eq!(effective.agc.lambda, 0.5);
    assert_eq!(effective.model.name, "nf_resnet_cifar");
}

#[test]
fn check_fails_naming_file_position_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[optim]\nlr = 0.1\nmomentum = \"high\"\n").unwrap();
    let (ok, out, err) = nfbench(&["preset", "check", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(out.is_empty());
    assert!(err.contains(&format!("{}:3:12", path.display())), "{err}");
    assert!(err.contains("optim.momentum"), "{err}");
}
