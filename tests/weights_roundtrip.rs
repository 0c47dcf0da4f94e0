//! The Rust side of the weight import, always run (the comparison with timm itself is tests/weights_timm.rs, run by
//! scripts/check-timm.sh): a network with every parameter perturbed, exported to timm's layout (with the inverse
//! folds) or DeepMind's naming and imported back (with the folds), gives the same logits; our weights file loads
//! into a network (`model.init_from`) strictly, replacing the head only when asked; every bad input is an error
//! naming the file and the tensor.

use candle_core::{DType, Device, Tensor};
use nfbench::model::config::PaddingMode;
use nfbench::model::layers::{normal_vec, param_rng};
use nfbench::model::zoo::ShortcutKind;
use nfbench::model::{ForwardOptions, ModelConfig, Network, ParamKind};
use nfbench::weights::{self, ExportTarget, HeadPolicy, ImportOptions, LoadOptions, WeightsError};
use std::collections::HashMap;
use std::path::Path;

/// Every parameter off its init (skip gains non-zero and not 1, gains and biases random, small kernels).
fn perturb(net: &Network, seed: u64) {
    for p in net.params() {
        let n = p.var.elem_count();
        let z = normal_vec(&mut param_rng(seed, &p.name), n, 1.0, false);
        let v: Vec<f32> = z
            .iter()
            .map(|&z| match p.kind {
                ParamKind::ConvWeight => 0.02 * z,
                ParamKind::LinearWeight => 0.05 * z,
                ParamKind::Gain => 1.0 + 0.2 * z,
                ParamKind::Bias => 0.05 * z,
                ParamKind::SkipGain => 0.4 + 0.1 * z.abs(),
            })
            .collect();
        let t = Tensor::from_vec(v, p.var.dims(), &Device::Cpu).unwrap();
        p.var.set(&t).unwrap();
    }
}

fn logits(net: &Network, x: &Tensor) -> Tensor {
    net.forward(x, &ForwardOptions::default()).unwrap().logits
}

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
    let s = b.abs().unwrap().max_all().unwrap();
    f64::from(d.to_scalar::<f32>().unwrap()) / f64::from(s.to_scalar::<f32>().unwrap())
}

fn input(h: usize, w: usize) -> Tensor {
    let v = normal_vec(&mut param_rng(5, "x"), 2 * 3 * h * w, 1.0, false);
    Tensor::from_vec(v, (2, 3, h, w), &Device::Cpu).unwrap()
}

fn build(cfg: &ModelConfig, classes: usize) -> Network {
    Network::build(cfg, classes, 3, 0, &Device::Cpu, 1).unwrap()
}

fn tiny_timm_config() -> ModelConfig {
    ModelConfig {
        name: "nfnet_tiny".into(),
        activation: Some("gelu_erf".into()),
        ..ModelConfig::default()
    }
}

/// Export to `target`, write, import as `model`: the logits of the imported network against the original's.
fn round_trip(net: &Network, target: ExportTarget, model: &str, x: &Tensor, dir: &Path) -> f64 {
    let exported = weights::export(net, target).unwrap();
    assert!(exported.warnings.is_empty(), "{:?}", exported.warnings);
    let path = dir.join(format!("{model}-{target:?}.safetensors"));
    weights::save_exported(&exported, &path).unwrap();
    let opts = ImportOptions {
        model: model.into(),
        omit_fold: None,
    };
    let back = weights::import(&path, &opts)
        .unwrap()
        .build(&Device::Cpu)
        .unwrap();
    rel_err(&logits(&back, x), &logits(net, x))
}

#[test]
fn timm_and_deepmind_round_trips_keep_the_function() {
    let dir = tempfile::tempdir().unwrap();
    // A dm_nfnet-like net (erf GELU, 'SAME'); inputs with even and odd intermediate sizes.
    let net = build(&tiny_timm_config(), 10);
    perturb(&net, 3);
    for x in [input(64, 64), input(72, 90)] {
        let e = round_trip(&net, ExportTarget::Timm, "nfnet_tiny", &x, dir.path());
        assert!(e < 1e-5, "nfnet_tiny via timm: {e:.2e}");
    }
    // DeepMind's naming needs no fold: the layouts only transpose, so the logits are identical.
    let dm = build(
        &ModelConfig {
            name: "nfnet_tiny".into(),
            ..ModelConfig::default()
        },
        10,
    );
    perturb(&dm, 4);
    assert_eq!(
        round_trip(
            &dm,
            ExportTarget::DeepMind,
            "nfnet_tiny",
            &input(64, 64),
            dir.path()
        ),
        0.0
    );
    // timm's NF-ResNet: symmetric padding, pooled shortcuts, gamma out of the convs, skip gains folded into the
    // last conv (timm has none).
    let cfg = ModelConfig {
        name: "nf_resnet26".into(),
        padding: PaddingMode::Symmetric,
        shortcut: Some(ShortcutKind::AvgPoolConv),
        ..ModelConfig::default()
    };
    let res = build(&cfg, 10);
    perturb(&res, 5);
    let e = round_trip(
        &res,
        ExportTarget::Timm,
        "nf_resnet26",
        &input(40, 36),
        dir.path(),
    );
    assert!(e < 1e-5, "nf_resnet26 via timm: {e:.2e}");
}

#[test]
fn timm_exports_use_timms_keys_and_shapes() {
    let net = build(&tiny_timm_config(), 10);
    let exported = weights::export(&net, ExportTarget::Timm).unwrap();
    let shapes: HashMap<&str, &[usize]> = exported
        .tensors
        .iter()
        .map(|(n, t)| (n.as_str(), t.dims()))
        .collect();
    assert_eq!(shapes["stem.conv1.weight"], &[4, 3, 3, 3]);
    assert_eq!(shapes["stem.conv4.gain"], &[32, 1, 1, 1]);
    assert_eq!(shapes["stages.0.0.downsample.conv.weight"], &[64, 32, 1, 1]);
    assert_eq!(shapes["stages.1.0.conv2b.weight"], &[64, 16, 3, 3]);
    assert_eq!(shapes["stages.3.0.attn_last.fc1.weight"], &[128, 256, 1, 1]);
    assert_eq!(shapes["stages.3.0.skipinit_gain"], &[] as &[usize]);
    assert_eq!(shapes["final_conv.weight"], &[512, 256, 1, 1]);
    assert_eq!(shapes["head.fc.weight"], &[10, 512]);
    assert_eq!(exported.tensors.len(), net.params().len());
}

fn timm_file(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) -> std::path::PathBuf {
    let net = build(&tiny_timm_config(), 10);
    let mut exported = weights::export(&net, ExportTarget::Timm).unwrap();
    edit(&mut exported.tensors);
    let path = dir.join("edited.safetensors");
    weights::save_exported(&exported, &path).unwrap();
    path
}

fn import_err(path: &Path, model: &str) -> String {
    let opts = ImportOptions {
        model: model.into(),
        omit_fold: None,
    };
    weights::import(path, &opts).unwrap_err().to_string()
}

#[test]
fn bad_files_are_errors_naming_the_file_and_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    // Missing, mis-shaped and unexpected tensors: all named at once.
    let path = timm_file(dir.path(), |t| {
        t.retain(|(n, _)| n != "stages.1.0.conv2.gain");
        for (n, v) in t.iter_mut() {
            if n == "final_conv.bias" {
                *v = Tensor::zeros(7, DType::F32, &Device::Cpu).unwrap();
            }
        }
        t.push((
            "stages.9.0.conv1.weight".into(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        ));
    });
    let e = import_err(&path, "nfnet_tiny");
    assert!(e.contains(&path.display().to_string()), "{e}");
    assert!(e.contains("`stages.1.0.conv2.gain` missing"), "{e}");
    assert!(e.contains("`final_conv.bias` has shape [7]"), "{e}");
    assert!(e.contains("`stages.9.0.conv1.weight` unexpected"), "{e}");
    // The wrong architecture for the file.
    let good = timm_file(dir.path(), |_| {});
    let e = import_err(&good, "dm_nfnet_f0");
    assert!(e.contains("do not fit `nfnet_f0`"), "{e}");
    let e = import_err(&good, "resnet_cifar");
    assert!(e.contains("no timm model"), "{e}");
    // A truncated file.
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = import_err(&cut, "nfnet_tiny");
    assert!(
        e.contains("cut.safetensors") && e.contains("not a readable safetensors"),
        "{e}"
    );
    // A tensor of the wrong dtype.
    let ints = dir.path().join("ints.safetensors");
    let data = vec![0u8; 8 * 4];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![4], &data).unwrap();
    safetensors::serialize_to_file(vec![("head.fc.weight".to_string(), view)], None, &ints)
        .unwrap();
    let e = import_err(&ints, "nfnet_tiny");
    assert!(e.contains("`head.fc.weight`") && e.contains("I64"), "{e}");
    // A bare (dill) pickle, as DeepMind's F*_haiku.npz.
    let pickle = dir.path().join("F0_haiku.npz");
    std::fs::write(
        &pickle,
        b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.",
    )
    .unwrap();
    let e = import_err(&pickle, "nfnet_f0");
    assert!(
        e.contains("F0_haiku.npz") && e.contains("haiku_to_npz.py"),
        "{e}"
    );
    // A PyTorch zip whose state dict holds something else than a tensor: {'odd': 1}, pickled by hand.
    let odd = dir.path().join("odd.pth");
    {
        use std::io::Write;
        let mut z = zip::ZipWriter::new(std::fs::File::create(&odd).unwrap());
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file("archive/data.pkl", stored).unwrap();
        z.write_all(b"\x80\x02}q\x00X\x03\x00\x00\x00oddq\x01J\x01\x00\x00\x00s.")
            .unwrap();
        z.finish().unwrap();
    }
    let e = import_err(&odd, "nfnet_tiny");
    assert!(
        e.contains("odd.pth") && e.contains("no tensor") && e.contains("`odd`"),
        "{e}"
    );
    // A zip pickle that is no zip at all.
    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"PK\x03\x04 not really a zip archive").unwrap();
    let e = import_err(&junk, "nfnet_tiny");
    assert!(
        e.contains("junk.pth") && e.contains("PyTorch zip pickle"),
        "{e}"
    );
}

#[test]
fn our_weights_load_strictly_and_replace_the_head_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_timm_config();
    let net = build(&cfg, 10);
    perturb(&net, 6);
    let file = dir.path().join("w.safetensors");
    weights::save_network(&net, &cfg, "test", &file).unwrap();
    let x = input(64, 64);

    let mut same = build(&cfg, 10);
    let report = weights::load_into(&mut same, &file, LoadOptions::default()).unwrap();
    assert_eq!(report.replaced_head, None);
    assert_eq!(rel_err(&logits(&same, &x), &logits(&net, &x)), 0.0);

    // Five classes: strict refuses, naming the classifier; fine-tuning keeps the fresh head, loads the rest.
    let mut five = build(&cfg, 5);
    let e = weights::load_into(&mut five, &file, LoadOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("`linear.w` has shape [10, 512]"),
        "{e}"
    );
    let fresh_head = five
        .params()
        .iter()
        .find(|p| p.name == "linear.w")
        .unwrap()
        .var
        .as_tensor()
        .copy()
        .unwrap();
    let opts = LoadOptions {
        head: HeadPolicy::ReplaceOnClassMismatch,
        ema: false,
    };
    let report = weights::load_into(&mut five, &file, opts).unwrap();
    assert_eq!(report.replaced_head, Some((10, 5)));
    let get = |n: &Network, name: &str| {
        n.params()
            .iter()
            .find(|p| p.name == name)
            .unwrap()
            .var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(get(&five, "s2.b0.conv1.w"), get(&net, "s2.b0.conv1.w"));
    assert_eq!(
        get(&five, "linear.w"),
        fresh_head.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );

    // Weights made for another function (tanh GELU instead of erf) are refused, naming the field to set.
    let mut tanh = build(
        &ModelConfig {
            name: "nfnet_tiny".into(),
            ..ModelConfig::default()
        },
        10,
    );
    let e = weights::load_into(&mut tanh, &file, LoadOptions::default()).unwrap_err();
    assert!(matches!(e, WeightsError::File { .. }));
    assert!(
        e.to_string().contains("model.activation = \"gelu_erf\""),
        "{e}"
    );
}
