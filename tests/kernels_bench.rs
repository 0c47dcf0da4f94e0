//! `nfbench bench`: runs the preset's model end to end and writes a plan that describes every parameter of it
//! (what `benches/torch_reference.py` rebuilds in PyTorch).

use nfbench::cli::bench::{run, BenchArgs};
use nfbench::model::NetPlan;
use nfbench::preset::ModelConfig;
use serde_json::Value;

fn conv_params(c: &Value) -> u64 {
    let f = |k: &str| c[k].as_u64().expect("conv field");
    let per_out = f("in") / f("groups") * f("kernel") * f("kernel");
    let extra =
        u64::from(c["ws"].as_bool() == Some(true)) + u64::from(c["bias"].as_bool() == Some(true));
    f("out") * (per_out + extra)
}

#[test]
fn bench_runs_and_plan_accounts_for_every_parameter() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plan_path = dir.path().join("plan.json");
    let args = BenchArgs {
        preset: "presets/default.toml".into(),
        set: vec!["data.batch_size=2".into()],
        steps: 1,
        warmup: 0,
        json: true,
        plan_out: Some(plan_path.clone()),
        device: Default::default(),
    };
    run(args).expect("bench runs");
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_path).expect("plan written"))
            .expect("json");
    let mut total = 0;
    for op in plan["stem"].as_array().expect("stem") {
        if op["op"] == "conv" {
            total += conv_params(op);
        }
    }
    for b in plan["blocks"].as_array().expect("blocks") {
        for c in b["convs"].as_array().expect("convs") {
            total += conv_params(c);
        }
        if !b["shortcut"].is_null() {
            total += conv_params(&b["shortcut"]);
        }
        total += u64::from(b["skip_gain"].as_bool() == Some(true));
        assert!(b["beta"].as_f64().expect("beta") > 0.0);
    }
    let lin = &plan["head"]["linear"];
    total += lin["in"].as_u64().expect("in") * lin["out"].as_u64().expect("out")
        + lin["out"].as_u64().expect("out");
    // nf_resnet_cifar as the model zoo plans it (`nfbench model info nf_resnet_cifar --classes 10`).
    assert_eq!(plan["name"], "nf_resnet_cifar");
    assert_eq!(plan["batch_size"], 2);
    let cfg = ModelConfig {
        name: "nf_resnet_cifar".into(),
        ..ModelConfig::default()
    };
    let zoo = NetPlan::new(&cfg, 10, 3, 32).expect("nf_resnet_cifar plans");
    assert_eq!(total, zoo.param_count() as u64);
}

#[test]
fn bench_reports_a_bad_override() {
    let args = BenchArgs {
        preset: "presets/default.toml".into(),
        set: vec!["data.batch_size=banana".into()],
        steps: 1,
        warmup: 0,
        json: true,
        plan_out: None,
        device: Default::default(),
    };
    assert!(run(args).is_err());
}

#[test]
fn peak_rss_is_read_from_proc() {
    let mb = nfbench::cli::bench::peak_rss_mb();
    assert!(mb.is_nan() || mb > 1.0, "{mb}");
}
