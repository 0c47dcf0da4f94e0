//! The field table is the schema's manual, its only copy: it must have exactly one entry per schema field, the real
//! default, and liveness matching both the doc and the `LiveParam` mapping.

use nfbench::preset::{self, fields, Preset};

/// The dotted name of every leaf field of the schema, in declaration order, from serialising a preset in which
/// every optional field is set (so none is skipped).
fn schema_fields() -> Vec<String> {
    let mut preset = Preset {
        extends: Some("parent.toml".into()),
        ..Preset::default()
    };
    preset.model.activation = Some("gelu".into());
    preset.model.dropout = Some(0.1);
    preset.model.shortcut = Some(nfbench::model::zoo::ShortcutKind::AvgPoolConv);
    preset.model.init_from = Some("weights.safetensors".into());
    let root = toml::Value::try_from(&preset).unwrap();
    let mut out = Vec::new();
    fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let dotted = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&dotted, v, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    walk("", &root, &mut out);
    out
}

#[test]
fn every_schema_field_has_exactly_one_manual_entry() {
    let schema = schema_fields();
    for name in &schema {
        let entries = fields().iter().filter(|f| f.name == name).count();
        assert_eq!(entries, 1, "{name}: {entries} manual entries");
    }
    for f in fields() {
        assert!(
            schema.iter().any(|s| s == f.name),
            "{}: not a schema field",
            f.name
        );
        assert!(
            f.doc.ends_with('.') && f.doc.len() > 10,
            "{}: the manual entry is not a sentence",
            f.name
        );
    }
    assert_eq!(fields().len(), schema.len());
}

#[test]
fn defaults_are_the_schema_defaults() {
    let root = toml::Value::try_from(Preset::default()).unwrap();
    for f in fields().iter().filter(|f| f.name != "extends") {
        // An optional field left out by default is documented as whose default applies instead.
        let Some(actual) = f.name.split('.').try_fold(&root, |v, k| v.get(k)) else {
            assert!(
                ["(the architecture's)", "(none)"].contains(&f.default),
                "{}: {}",
                f.name,
                f.default
            );
            continue;
        };
        let parsed: toml::Table = toml::from_str(&format!("v = {}", f.default))
            .unwrap_or_else(|e| panic!("{}: default {} is not TOML: {e}", f.name, f.default));
        assert_eq!(&parsed["v"], actual, "{}", f.name);
        assert!(
            preset::check_value(f.check, actual).is_ok(),
            "{} default out of range",
            f.name
        );
    }
}

#[test]
fn liveness_matches_the_doc_and_live_params() {
    for f in fields() {
        // A doc that says "Live." must be right; the live table, not the doc, decides liveness.
        if f.doc.ends_with("Live.") {
            assert!(
                nfbench::preset::live::is_live(f.name),
                "{}: the doc says live, the live table does not",
                f.name
            );
        }
        assert_eq!(
            preset::live_param(&Preset::default(), f.name).is_some(),
            nfbench::preset::live::is_live(f.name),
            "{}",
            f.name
        );
    }
    let mut live: Vec<&str> = fields()
        .iter()
        .filter(|f| nfbench::preset::live::is_live(f.name))
        .map(|f| f.name)
        .collect();
    let mut table: Vec<&str> = preset::LIVE.iter().map(|s| s.key).collect();
    live.sort_unstable();
    table.sort_unstable();
    assert_eq!(live, table, "every live parameter is a preset field");
    for key in [
        "model.alpha",
        "optim.lr",
        "optim.lr_scale",
        "optim.momentum",
        "optim.weight_decay",
        "agc.enabled",
        "agc.lambda",
        "run.stats_every",
    ] {
        assert!(live.contains(&key), "{key}");
    }
}

#[test]
fn every_listed_activation_is_one_the_model_builds() {
    for name in preset::ACTIVATIONS.iter().filter(|n| !n.is_empty()) {
        assert!(
            nfbench::model::Activation::from_name(name).is_some(),
            "{name}"
        );
    }
}
