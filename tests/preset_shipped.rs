//! The shipped presets: all present, valid, and saying what their names promise.

use nfbench::preset::{self, Preset};
use std::path::Path;

fn shipped(name: &str) -> Preset {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("presets")
        .join(name);
    preset::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn default_is_a_small_nf_net_on_the_shipped_data_on_cpu() {
    let p = shipped("default.toml");
    assert_eq!(p.model.name, "nf_resnet_cifar");
    assert_eq!(p.data.path, Path::new("data/cifar10-subset.h5"));
    assert_eq!(p.data.batch_size, 64);
    assert_eq!(p.run.device, nfbench::preset::DeviceSpec::Cpu);
    assert!(p.agc.enabled);
}

#[test]
fn nfnet_f0_follows_the_paper_recipe() {
    let p = shipped("nfnet_f0_imagenet.toml");
    assert_eq!(p.model.name, "nfnet_f0");
    assert_eq!((p.model.alpha, p.model.skip_gain_init), (0.2, 0.0));
    assert_eq!(
        (p.model.stochastic_depth, p.model.dropout),
        (0.25, Some(0.2))
    );
    assert_eq!((p.data.resolution, p.data.eval_resolution), (192, 256));
    let o = &p.optim;
    assert_eq!(
        (o.lr, o.momentum, o.nesterov, o.weight_decay),
        (0.1, 0.9, true, 2e-5)
    );
    assert_eq!(
        (o.warmup_epochs, o.label_smoothing, o.ema_decay),
        (5.0, 0.1, 0.99999)
    );
    assert_eq!((p.agc.enabled, p.agc.lambda), (true, 0.01));
    assert_eq!(p.agc.exclude, vec![nfbench::model::CLASSIFIER_WEIGHT]);
    // 360 epochs of ImageNet's 1,281,167 training images.
    let epochs = p.run.steps as f64 * p.data.batch_size as f64 / 1_281_167.0;
    assert!((epochs - 360.0).abs() < 0.01, "{epochs}");
}

#[test]
fn variants_extend_default_and_change_only_their_point() {
    let base = shipped("default.toml");
    let changed = |name: &str| -> Vec<&'static str> {
        let d = preset::diff(&base, &shipped(name));
        let mut f: Vec<&str> = d
            .live_changes
            .iter()
            .chain(&d.restart_only)
            .map(|c| c.field)
            .collect();
        f.sort();
        f
    };
    assert_eq!(changed("no_agc.toml"), ["agc.enabled"]);
    assert_eq!(
        changed("bn_resnet_baseline.toml"),
        ["agc.enabled", "model.name"]
    );
    assert_eq!(
        changed("plain_resnet_baseline.toml"),
        ["agc.enabled", "model.name"]
    );
    let large = shipped("large_batch_agc.toml");
    assert!(large.data.batch_size >= 512 && large.agc.enabled);
    assert_eq!(large.agc.lambda, 0.01);
    assert_eq!(
        shipped("bn_resnet_baseline.toml").model.name,
        "bn_resnet_cifar"
    );
    assert_eq!(
        shipped("plain_resnet_baseline.toml").model.name,
        "plain_resnet_cifar"
    );
    assert_eq!(
        shipped("nf_resnet50_imagenet.toml").model.name,
        "nf_resnet50"
    );
}

#[test]
fn no_shipped_preset_uses_the_old_default_spellings() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines().map(str::trim) {
                assert!(
                    !(line.starts_with("activation = \"\"") || line.starts_with("dropout = -")),
                    "{}: `{line}` (leave the field out for the architecture's default)",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn jpeg_imagenet_presets_use_the_papers_data_pipeline() {
    use nfbench::data::augment::EvalCrop;
    let f0 = shipped("imagenet_nfnet_f0.toml");
    assert_eq!(f0.model.name, "nfnet_f0");
    assert_eq!((f0.data.resolution, f0.data.eval_resolution), (192, 256));
    assert_eq!(f0.data.eval_crop, EvalCrop::ResizeCrop32);
    assert_eq!(f0.data.batch_size, 4096);
    assert!(f0.data.hflip);
    let r50 = shipped("imagenet_nf_resnet50.toml");
    assert_eq!(r50.model.name, "nf_resnet50");
    assert_eq!((r50.data.resolution, r50.data.eval_resolution), (224, 224));
    assert_eq!(r50.data.eval_crop, EvalCrop::ResizeCrop32);
    // The recipes stay the base presets' (the JPEG presets change only [data]).
    for (jpeg, base) in [
        (&f0, "nfnet_f0_imagenet.toml"),
        (&r50, "nf_resnet50_imagenet.toml"),
    ] {
        let base = shipped(base);
        assert_eq!(
            (jpeg.optim.lr, jpeg.run.steps),
            (base.optim.lr, base.run.steps)
        );
    }
}
