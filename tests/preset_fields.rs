//! The field table is the schema's manual: it must list every schema field with its doc comment verbatim, the
//! real default, and liveness matching both the doc and the `LiveParam` mapping.

use nfbench::preset::{self, fields, Preset};

/// (dotted name, doc) for every field declared in schema.rs, read from its source.
fn schema_fields() -> Vec<(String, String)> {
    let src = include_str!("../src/preset/schema.rs");
    let sections = [
        ("Preset", ""),
        ("ModelConfig", "model"),
        ("DataConfig", "data"),
        ("OptimConfig", "optim"),
        ("AgcConfig", "agc"),
        ("RunConfig", "run"),
    ];
    let mut out = Vec::new();
    for (name, section) in sections {
        let start = src.find(&format!("pub struct {name} {{")).expect(name);
        let body = &src[start..start + src[start..].find("\n}").unwrap()];
        let mut doc: Vec<&str> = Vec::new();
        for line in body.lines().skip(1) {
            let line = line.trim();
            if let Some(d) = line.strip_prefix("///") {
                doc.push(d.trim());
            } else if let Some(decl) = line.strip_prefix("pub ") {
                let (field, ty) = decl.split_once(':').unwrap();
                if !ty.trim().ends_with("Config,") {
                    let dotted = if section.is_empty() {
                        field.to_string()
                    } else {
                        format!("{section}.{field}")
                    };
                    out.push((dotted, doc.join(" ")));
                }
                doc.clear();
            }
        }
    }
    out
}

#[test]
fn every_schema_field_is_listed_with_its_doc_in_order() {
    let schema = schema_fields();
    let listed: Vec<(String, String)> = fields()
        .iter()
        .map(|f| (f.name.to_string(), f.doc.to_string()))
        .collect();
    assert_eq!(listed, schema);
}

#[test]
fn defaults_are_the_schema_defaults() {
    let root = toml::Value::try_from(Preset::default()).unwrap();
    for f in fields().iter().filter(|f| f.name != "extends") {
        let parsed: toml::Table = toml::from_str(&format!("v = {}", f.default))
            .unwrap_or_else(|e| panic!("{}: default {} is not TOML: {e}", f.name, f.default));
        let actual = f.name.split('.').try_fold(&root, |v, k| v.get(k)).unwrap();
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
                f.live(),
                "{}: the doc says live, the live table does not",
                f.name
            );
        }
        assert_eq!(
            preset::live_param(&Preset::default(), f.name).is_some(),
            f.live(),
            "{}",
            f.name
        );
    }
    let mut live: Vec<&str> = fields()
        .iter()
        .filter(|f| f.live())
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
