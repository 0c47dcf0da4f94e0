//! Properties: whatever the value, a preset is either accepted and in range, or rejected with a positioned error
//! naming the field; valid presets survive a write-and-load round trip.

use nfbench::preset::{self, ErrorKind, Preset};
use proptest::prelude::*;

fn any_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(1.0),
        -2.0..2.0f64,
    ]
}

fn toml_float(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{x:?}")
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn float_fields_are_accepted_exactly_when_in_range(
        idx in 0usize..8,
        x in any_float(),
    ) {
        let names = [
            "model.alpha", "model.stochastic_depth", "optim.lr", "optim.momentum",
            "optim.weight_decay", "optim.label_smoothing", "agc.lambda", "agc.eps",
        ];
        let name = names[idx];
        let info = preset::field(name).unwrap();
        let in_range = preset::check_value(info.check, &toml::Value::Float(x)).is_ok();
        let (section, key) = name.split_once('.').unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, format!("# p\n[{section}]\n{key} = {}\n", toml_float(x))).unwrap();
        match preset::load(&path) {
            Ok(p) => {
                prop_assert!(in_range, "{name} = {x} accepted");
                let v = toml::Value::try_from(&p).unwrap();
                prop_assert_eq!(v[section][key].as_float(), Some(x));
            }
            Err(e) => {
                prop_assert!(!in_range, "{name} = {x} rejected: {e}");
                prop_assert_eq!(e.kind, ErrorKind::Range);
                prop_assert_eq!(e.field.as_deref(), Some(name));
                prop_assert_eq!(e.position.map(|p| (p.line, p.column)), Some((3, 1)));
            }
        }
        let mut p = Preset::default();
        let set = preset::apply_overrides(&mut p, &[format!("{name}={}", toml_float(x))]);
        prop_assert_eq!(set.is_ok(), in_range);
    }

    #[test]
    fn valid_presets_round_trip_through_a_file(
        lambda in 1e-4..1.0f64,
        alpha in 0.01..1.0f64,
        batch in 1usize..5000,
        steps in 1u64..1_000_000,
        exclude in proptest::collection::vec("[a-z][a-z0-9_.]{0,12}\\*?", 0..4),
    ) {
        let mut p = Preset::default();
        p.agc.lambda = lambda;
        p.model.alpha = alpha;
        p.data.batch_size = batch;
        p.run.steps = steps;
        p.agc.exclude = exclude;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, toml::to_string_pretty(&p).unwrap()).unwrap();
        prop_assert_eq!(preset::load(&path).unwrap(), p);
    }
}
