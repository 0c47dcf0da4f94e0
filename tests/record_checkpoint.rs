//! Checkpoints: bit-exact round trip, keep-K + best, injected write failures, torn files.

use candle_core::{DType, Device, Tensor};
use nfbench::record::checkpoint::{
    self, list_checkpoints, load_latest, save_checkpoint, save_checkpoint_with, CheckpointMeta,
    CheckpointState, Fault,
};
use nfbench::train::messages::LiveParam;
use std::path::Path;

fn state(step: u64, val_top1: Option<f64>) -> CheckpointState {
    let dev = Device::Cpu;
    let w = Tensor::arange(0f32, 24f32, &dev)
        .unwrap()
        .reshape((2, 3, 4))
        .unwrap();
    let w = (w * (0.1 + step as f64)).unwrap();
    let m = Tensor::new(&[1e-30f32, -0.0, f32::MIN_POSITIVE, 3.5], &dev).unwrap();
    let h = Tensor::new(&[1.5f32, -2.25], &dev)
        .unwrap()
        .to_dtype(DType::BF16)
        .unwrap();
    let u = Tensor::new(&[7u32, 8, 9], &dev).unwrap();
    CheckpointState {
        meta: CheckpointMeta {
            step,
            epoch: step as f64 / 10.0,
            seed: 42,
            model: "nf_resnet_cifar".into(),
            loader: serde_json::json!({"epoch": 3, "offset": 128, "permutation_seed": 99}),
            rng: serde_json::json!({"chacha": [1u64, 2, 3]}),
            live: vec![
                LiveParam::AgcLambda(0.02),
                LiveParam::Alpha(0.2),
                LiveParam::AgcEnabled(false),
            ],
            preset_toml: "[run]\nsteps = 10\n".into(),
            val_top1,
            extra: Default::default(),
        },
        tensors: vec![
            ("param/s1.b0.conv1.w".into(), w),
            ("momentum/s1.b0.conv1.w".into(), m),
            ("ema/x".into(), h),
            ("buffer/count".into(), u),
        ],
    }
}

fn bytes_of(t: &Tensor) -> Vec<u8> {
    let t = t.flatten_all().unwrap();
    match t.dtype() {
        DType::F32 => t
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_bits().to_le_bytes())
            .collect(),
        DType::BF16 => t
            .to_vec1::<half::bf16>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_bits().to_le_bytes())
            .collect(),
        DType::U32 => t
            .to_vec1::<u32>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        other => panic!("unexpected {other:?}"),
    }
}

fn assert_same_state(loaded: &checkpoint::LoadedCheckpoint, expected: &CheckpointState) {
    assert_eq!(loaded.meta, expected.meta);
    assert_eq!(loaded.tensors.len(), expected.tensors.len());
    for (name, t) in &expected.tensors {
        let got = loaded.tensor(name).unwrap();
        assert_eq!(got.dtype(), t.dtype(), "{name}");
        assert_eq!(got.dims(), t.dims(), "{name}");
        assert_eq!(bytes_of(got), bytes_of(t), "{name} is not bit-exact");
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn round_trip_is_bit_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let st = state(10, Some(0.5));
    let path = save_checkpoint(&tmp.path().join("checkpoints"), &st, 3).unwrap();
    assert_eq!(path.file_name().unwrap(), "step-10.safetensors");
    let loaded = load_latest(tmp.path(), &Device::Cpu).unwrap().unwrap();
    assert_eq!(loaded.path, path);
    assert!(loaded.skipped.is_empty());
    assert_same_state(&loaded, &st);
    assert_eq!(checkpoint::read_meta(&path).unwrap(), st.meta);
    let err = loaded.tensor("param/nope").unwrap_err().to_string();
    assert!(
        err.contains("step-10.safetensors") && err.contains("param/nope"),
        "{err}"
    );
}

#[test]
fn keeps_the_last_k_and_the_best() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("checkpoints");
    let tops = [Some(0.1), Some(0.9), None, Some(0.4), Some(0.5), Some(0.6)];
    for (i, top) in tops.iter().enumerate() {
        save_checkpoint(&dir, &state(100 * (i as u64 + 1), *top), 2).unwrap();
    }
    assert_eq!(
        names_in(&dir),
        [
            "step-200.safetensors",
            "step-500.safetensors",
            "step-600.safetensors"
        ]
    );
    let listed = list_checkpoints(&dir).unwrap();
    assert_eq!(checkpoint::best_of(&listed).map(|c| c.step), Some(200));
    assert_eq!(
        load_latest(tmp.path(), &Device::Cpu)
            .unwrap()
            .unwrap()
            .meta
            .step,
        600
    );
}

#[test]
fn an_injected_write_failure_leaves_the_previous_checkpoint_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("checkpoints");
    let first = state(10, Some(0.3));
    save_checkpoint(&dir, &first, 1).unwrap();
    let before = std::fs::read(dir.join("step-10.safetensors")).unwrap();

    let err =
        save_checkpoint_with(&dir, &state(20, Some(0.4)), 1, Fault::FailMidWrite).unwrap_err();
    // The file is this error's own level; the injected OS failure is its cause (printed by the chain).
    let chain = nfbench::train::error_chain(&err);
    assert!(chain.contains("injected write failure"), "{chain}");
    assert!(
        err.to_string().contains("step-20.safetensors"),
        "the error names the file: {err}"
    );
    assert_eq!(
        names_in(&dir),
        ["step-10.safetensors"],
        "no partial file is left"
    );
    assert_eq!(
        std::fs::read(dir.join("step-10.safetensors")).unwrap(),
        before
    );
    assert_same_state(
        &load_latest(tmp.path(), &Device::Cpu).unwrap().unwrap(),
        &first,
    );

    // The same through the environment hook a real training process uses (only step 777 fails).
    std::env::set_var(checkpoint::FAIL_WRITE_ENV, "777");
    let err = save_checkpoint(&dir, &state(777, None), 1);
    std::env::remove_var(checkpoint::FAIL_WRITE_ENV);
    assert!(err.is_err());
    assert_eq!(names_in(&dir), ["step-10.safetensors"]);
}

#[test]
fn a_torn_newer_file_and_temp_leftovers_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("checkpoints");
    let good = state(20, None);
    save_checkpoint(&dir, &good, 5).unwrap();
    // A newer checkpoint cut short (e.g. copied by hand, or a disk error) and a temp file from a crash.
    let bytes = std::fs::read(dir.join("step-20.safetensors")).unwrap();
    std::fs::write(dir.join("step-30.safetensors"), &bytes[..bytes.len() - 7]).unwrap();
    std::fs::write(dir.join(".step-40.safetensors.tmp"), &bytes[..10]).unwrap();
    std::fs::write(dir.join("notes.txt"), b"hello").unwrap();

    let loaded = load_latest(tmp.path(), &Device::Cpu).unwrap().unwrap();
    assert_same_state(&loaded, &good);
    assert_eq!(loaded.skipped.len(), 1);
    assert!(
        loaded.skipped[0].contains("step-30.safetensors"),
        "{:?}",
        loaded.skipped
    );
    assert!(
        checkpoint::read_meta(&dir.join("step-30.safetensors")).is_err(),
        "the header check sees the tear"
    );
    assert_eq!(list_checkpoints(&dir).unwrap().len(), 1);
}

#[test]
fn no_checkpoint_and_unreadable_ones() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(load_latest(tmp.path(), &Device::Cpu).unwrap().is_none());
    let dir = tmp.path().join("checkpoints");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(load_latest(tmp.path(), &Device::Cpu).unwrap().is_none());
    std::fs::write(dir.join("step-5.safetensors"), b"garbage").unwrap();
    let err = load_latest(tmp.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no readable checkpoint") && err.contains("step-5.safetensors"),
        "{err}"
    );

    // A plain safetensors file without nfbench metadata is refused by name.
    let t = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("a", t)]),
        dir.join("step-6.safetensors"),
    )
    .unwrap();
    let err = checkpoint::load_checkpoint(&dir.join("step-6.safetensors"), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("step-6.safetensors") && err.contains("metadata"),
        "{err}"
    );
}
