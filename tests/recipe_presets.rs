//! The README's NFNet-recipe table against the shipped F0 preset: every row's "ours" value is what the preset
//! loads, every preset field has a row, a row whose value differs from DeepMind's says why, and F1 / F3 / the CIFAR
//! recipe preset extend and load with their variant's values.

use nfbench::preset::{self, fields, Preset};
use std::path::Path;

fn shipped(name: &str) -> Preset {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("presets")
        .join(name);
    preset::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// (field, DeepMind, ours, difference) of each table row (the difference cell is empty where the values agree).
fn table() -> Vec<[String; 4]> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("<!-- recipe-table")
        .expect("the recipe table's start marker");
    let end = readme
        .find("<!-- /recipe-table -->")
        .expect("the recipe table's end marker");
    readme[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<String> = l
                .trim()
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect();
            assert_eq!(cells.len(), 4, "{l}");
            [
                cells[0].clone(),
                cells[1].clone(),
                cells[2].clone(),
                cells[3].clone(),
            ]
        })
        .collect()
}

fn unquote(cell: &str) -> &str {
    cell.trim_matches('`')
}

#[test]
fn every_row_of_the_readme_table_is_what_the_f0_preset_loads() {
    let f0 = shipped("nfnet_f0_imagenet.toml");
    let root = toml::Value::try_from(&f0).unwrap();
    let rows = table();
    assert!(rows.len() > 40, "{} rows", rows.len());
    for [field, deepmind, ours, why] in &rows {
        let name = unquote(field);
        let actual = name.split('.').try_fold(&root, |v, k| v.get(k));
        if ours == "(the architecture's)" {
            assert!(actual.is_none(), "{name}: the preset sets it");
        } else {
            let want: toml::Table = toml::from_str(&format!("v = {}", unquote(ours)))
                .unwrap_or_else(|e| panic!("{name}: `{ours}` is not TOML: {e}"));
            assert_eq!(actual, Some(&want["v"]), "{name}");
        }
        // A field DeepMind has no counterpart for, or one whose value differs, says why.
        assert!(!deepmind.is_empty(), "{name}: no DeepMind cell");
        if deepmind == "—" {
            assert!(
                !why.is_empty(),
                "{name}: ours only, and the row does not say what it is"
            );
        }
    }
    // Every preset field has exactly one row.
    for f in fields().iter().filter(|f| f.name != "extends") {
        let n = rows.iter().filter(|r| unquote(&r[0]) == f.name).count();
        assert_eq!(n, 1, "{}: {n} rows in the README table", f.name);
    }
}

#[test]
fn variants_and_the_small_data_recipe_extend_f0_with_their_settings() {
    let f0 = shipped("nfnet_f0_imagenet.toml");
    assert_eq!(f0.data.batch_size % f0.optim.accumulate, 0);
    for (name, model, res, eval, drop, mag) in [
        ("nfnet_f1_imagenet.toml", "nfnet_f1", 224, 320, 0.3, 10),
        ("nfnet_f3_imagenet.toml", "nfnet_f3", 320, 416, 0.4, 15),
    ] {
        let p = shipped(name);
        assert_eq!(p.model.name, model);
        assert_eq!((p.data.resolution, p.data.eval_resolution), (res, eval));
        assert_eq!(p.model.dropout, Some(drop));
        assert_eq!(p.augment.randaugment_magnitude, mag);
        assert_eq!(p.data.batch_size % p.optim.accumulate, 0, "{name}");
        // Everything else is F0's.
        assert_eq!(p.augment.mixing, f0.augment.mixing);
        assert_eq!(
            (p.optim.ema_decay, p.optim.ema_warmup),
            (f0.optim.ema_decay, f0.optim.ema_warmup)
        );
        assert_eq!(p.agc, f0.agc);
        assert_eq!(p.run.steps, f0.run.steps);
        assert!(preset::violations(&p).is_empty(), "{name}");
    }
    let cifar = shipped("recipe_cifar.toml");
    let default = shipped("default.toml");
    assert_eq!(
        cifar.data, default.data,
        "the shipped data at 32 px, as default.toml"
    );
    assert_eq!(cifar.run.steps, default.run.steps);
    assert_eq!(
        (
            cifar.augment.randaugment_layers,
            cifar.augment.randaugment_magnitude
        ),
        (4, 5)
    );
    assert_eq!(cifar.augment.mixing, f0.augment.mixing);
    assert!(preset::violations(&cifar).is_empty());
}
