//! `--set KEY=VALUE` overrides.

use nfbench::preset::{apply_overrides, ErrorKind, Position, Preset};

fn set(p: &mut Preset, args: &[&str]) -> Result<(), nfbench::preset::PresetError> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    apply_overrides(p, &args)
}

#[test]
fn values_are_toml_and_bare_words_fill_strings() {
    let mut p = Preset::default();
    set(
        &mut p,
        &[
            "agc.lambda=0.02",
            "run.steps = 10",
            "model.name=nfnet_f0",
            "data.path=\"d/x.h5\"",
            "agc.exclude=[\"linear.w\", \"stem.*\"]",
            "optim.nesterov=false",
            "optim.lr=1",
        ],
    )
    .unwrap();
    assert_eq!(p.agc.lambda, 0.02);
    assert_eq!(p.run.steps, 10);
    assert_eq!(p.model.name, "nfnet_f0");
    assert_eq!(p.data.path.to_str(), Some("d/x.h5"));
    assert_eq!(p.agc.exclude, vec!["linear.w", "stem.*"]);
    assert!(!p.optim.nesterov);
    assert_eq!(p.optim.lr, 1.0);
}

#[test]
fn bad_overrides_name_argument_column_and_field_and_change_nothing() {
    let mut p = Preset::default();
    let e = set(&mut p, &["agc.lambda=0.03", "agc.lambda=-1"]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Range);
    assert_eq!(e.origin, "--set agc.lambda=-1");
    assert_eq!(
        e.position,
        Some(Position {
            line: 1,
            column: 12
        })
    );
    assert_eq!(e.field.as_deref(), Some("agc.lambda"));
    assert_eq!(
        p.agc.lambda, 0.03,
        "earlier arguments apply, the bad one does not"
    );

    let e = set(&mut p, &["agc.lambda=abc"]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Syntax);
    let e = set(&mut p, &["run.steps=1.5"]).unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_deref()),
        (ErrorKind::Type, Some("run.steps"))
    );
    let e = set(&mut p, &["optim.lr=nan"]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Range);
    let e = set(&mut p, &["agc.lamda=0.1"]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::UnknownField);
    assert!(e.to_string().contains("agc.lamda"), "{e}");
    let e = set(&mut p, &["extends=\"x.toml\""]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::UnknownField);
    let e = set(&mut p, &["agc.lambda"]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Override);
    assert_eq!(p.agc.lambda, 0.03);
}
