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

#[test]
fn optional_and_enum_fields_take_their_spellings() {
    use nfbench::model::Precision;
    use nfbench::preset::DeviceSpec;
    let mut p = Preset::default();
    set(
        &mut p,
        &[
            "model.activation=gelu",
            "model.dropout=0.3",
            "run.device=cuda:1",
            "run.dtype=bf16",
        ],
    )
    .unwrap();
    assert_eq!(p.model.activation.as_deref(), Some("gelu"));
    assert_eq!(p.model.dropout, Some(0.3));
    assert_eq!(
        (p.run.device, p.run.dtype),
        (DeviceSpec::Cuda(1), Precision::Bf16)
    );
    // The old spellings of "the architecture's default" still say it.
    set(&mut p, &["model.activation=\"\"", "model.dropout=-1"]).unwrap();
    assert_eq!(
        (p.model.activation.as_deref(), p.model.dropout),
        (None, None)
    );
    for (arg, field) in [
        ("run.device=gpu0", "run.device"),
        ("run.dtype=fp16", "run.dtype"),
    ] {
        let e = set(&mut p, &[arg]).unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Range, Some(field)),
            "{e}"
        );
        assert!(
            e.to_string().contains(arg.split('=').nth(1).unwrap()),
            "{e}"
        );
    }
    assert_eq!(
        p.run.device,
        DeviceSpec::Cuda(1),
        "a rejected argument changes nothing"
    );
}
