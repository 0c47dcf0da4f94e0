//! Imported timm weights compute timm's function: logits and per-block signal statistics within 1e-4 of timm's
//! (relative to their scale, f32), for the fixtures `scripts/check-timm.sh` makes with timm (a small dm_nfnet
//! configuration, dm_nfnet_f0, nf_resnet50; square and non-square inputs). Negative controls: a fold left out or the
//! padding mode swapped misses by more than 10x the tolerance. The export to timm's layout is written to
//! `DIR/exported/` for the script's strict-load check.
//!
//! Needs `NFBENCH_TIMM_FIXTURES=DIR` (run `scripts/check-timm.sh`); without it the test says so and skips. The
//! Rust-only round trip in `tests/weights_roundtrip.rs` always runs.

use candle_core::{Device, Tensor};
use nfbench::model::config::PaddingMode;
use nfbench::model::{ForwardOptions, Network};
use nfbench::weights::{self, ExportTarget, Fold, ImportOptions};
use std::path::{Path, PathBuf};

const TOL: f64 = 1e-4;

#[derive(serde::Deserialize)]
struct Case {
    case: String,
    model: String,
    weights: String,
    inputs: usize,
}

/// max |a - b| / max |b|.
fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
    let s = b.abs().unwrap().max_all().unwrap();
    f64::from(d.to_scalar::<f32>().unwrap()) / f64::from(s.to_scalar::<f32>().unwrap()).max(1e-30)
}

/// Largest column-wise relative error of two `[blocks, 3]` statistics tables.
fn spp_err(a: &Tensor, b: &Tensor) -> f64 {
    (0..3)
        .map(|c| rel_err(&a.narrow(1, c, 1).unwrap(), &b.narrow(1, c, 1).unwrap()))
        .fold(0.0, f64::max)
}

fn forward(net: &Network, x: &Tensor) -> (Tensor, Tensor) {
    let out = net
        .forward(
            x,
            &ForwardOptions {
                train: false,
                spp: true,
                seed: 0,
            },
        )
        .unwrap();
    (out.logits, out.spp.unwrap())
}

fn io(dir: &Path, case: &Case) -> weights::TensorFile {
    weights::read_tensors(&dir.join(format!("{}_io.safetensors", case.case))).unwrap()
}

fn check_case(dir: &Path, case: &Case) {
    let path = dir.join(&case.weights);
    let opts = ImportOptions {
        model: case.model.clone(),
        omit_fold: None,
    };
    let imported = weights::import(&path, &opts).unwrap_or_else(|e| panic!("{}: {e}", case.case));
    let net = imported.build(&Device::Cpu).unwrap();
    let io = io(dir, case);
    for i in 0..case.inputs {
        let x = io.get(&format!("x{i}")).unwrap();
        let (logits, spp) = forward(&net, x);
        let want = io.get(&format!("logits{i}")).unwrap();
        let want_spp = io.get(&format!("spp{i}")).unwrap();
        let (e, es) = (rel_err(&logits, want), spp_err(&spp, want_spp));
        eprintln!(
            "{} input {i} {:?}: logits rel. error {e:.2e}, block statistics {es:.2e}",
            case.case,
            x.dims()
        );
        assert!(e <= TOL, "{}: logits off by {e:.2e}", case.case);
        assert!(es <= TOL, "{}: block statistics off by {es:.2e}", case.case);
    }
    let x = io.get("x0").unwrap();
    let want = io.get("logits0").unwrap();
    // Negative controls: each must miss by more than 10x the tolerance.
    let mut controls: Vec<(String, Network)> = Vec::new();
    for fold in [Fold::WsEps, Fold::Gamma] {
        // The gamma fold exists only where timm keeps gamma in its convs (not the dm_ models).
        let dm = case.model.starts_with("dm_") || case.model == "nfnet_tiny";
        if fold == Fold::Gamma && dm {
            continue;
        }
        let opts = ImportOptions {
            model: case.model.clone(),
            omit_fold: Some(fold),
        };
        let net = weights::import(&path, &opts)
            .unwrap()
            .build(&Device::Cpu)
            .unwrap();
        controls.push((format!("without the {fold:?} fold"), net));
    }
    let mut swapped = weights::import(&path, &opts).unwrap();
    swapped.meta.model.padding = match swapped.meta.model.padding {
        PaddingMode::Same => PaddingMode::Symmetric,
        PaddingMode::Symmetric => PaddingMode::Same,
    };
    controls.push((
        "with the padding swapped".into(),
        swapped.build(&Device::Cpu).unwrap(),
    ));
    for (what, net) in &controls {
        let e = rel_err(&forward(net, x).0, want);
        eprintln!(
            "{} {what}: logits rel. error {e:.2e} (must exceed {:.0e})",
            case.case,
            10.0 * TOL
        );
        assert!(
            e > 10.0 * TOL,
            "{}: {what} still matches ({e:.2e})",
            case.case
        );
    }
    let exported = weights::export(&net, ExportTarget::Timm).unwrap();
    assert!(exported.warnings.is_empty(), "{:?}", exported.warnings);
    let out: PathBuf = dir.join("exported");
    std::fs::create_dir_all(&out).unwrap();
    weights::save_exported(&exported, &out.join(format!("{}.safetensors", case.case))).unwrap();
}

#[test]
fn imported_timm_models_compute_timms_function() {
    let Some(dir) = std::env::var_os("NFBENCH_TIMM_FIXTURES") else {
        eprintln!(
            "SKIPPED weights_timm: NFBENCH_TIMM_FIXTURES is not set; run scripts/check-timm.sh for the timm comparison"
        );
        return;
    };
    let dir = PathBuf::from(dir);
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let cases: Vec<Case> = serde_json::from_str(&manifest).unwrap();
    assert!(!cases.is_empty(), "no cases in the manifest");
    for case in &cases {
        check_case(&dir, case);
    }
}
