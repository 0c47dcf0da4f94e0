//! The loader over JPEG bytes: u8 NHWC batches at the training resolution, normalised on the device by
//! `model_input`; batches bit-identical across thread counts and across a resume mid-epoch; evaluation in order;
//! a bad image names itself; a JPEG folder read as a split.

use nfbench::data::augment::{EvalCrop, EvalTransform, InceptionCrop, TrainTransform};
use nfbench::data::decode::DecoderKind;
use nfbench::data::{
    model_input, Batch, DataError, DatasetInfo, EncodedEvalConfig, EncodedMeta, EncodedSplit,
    EncodedTrainConfig, FolderSplit, Loader, LoaderPosition, MemorySplit,
};
use nfbench::data::{AugmentConfig, Mixing};
use std::sync::Arc;

/// A photo-like JPEG whose content depends on `k` (so batches of different images differ).
fn jpeg(k: u32, width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 7 + k * 31) as u8,
            (y * 5 + k * 17) as u8,
            ((x ^ y) + k * 3) as u8,
        ])
    });
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(&img)
        .unwrap();
    bytes
}

fn split(n: u32) -> Arc<dyn EncodedSplit> {
    let mut s = MemorySplit::new();
    for k in 0..n {
        // Sizes vary like a real data set's; labels cycle through 3 classes.
        let (w, h) = (60 + (k % 4) * 13, 48 + (k % 3) * 11);
        s.push(
            EncodedMeta {
                label: k % 3,
                height: h,
                width: w,
            },
            jpeg(k, w, h),
        );
    }
    Arc::new(s)
}

fn info(train: usize) -> DatasetInfo {
    DatasetInfo {
        path: "memory".into(),
        format_version: 2,
        storage: nfbench::data::format::Storage::Jpeg,
        num_classes: 3,
        class_names: vec!["a".into(), "b".into(), "c".into()],
        train_count: train,
        val_count: 0,
        height: 0,
        width: 0,
        channels: 3,
        mean: vec![0.485, 0.456, 0.406],
        std: vec![0.229, 0.224, 0.225],
        source: "test".into(),
    }
}

fn train_cfg(workers: usize, decoder: DecoderKind) -> EncodedTrainConfig {
    EncodedTrainConfig {
        batch_size: 4,
        workers,
        prefetch: 2,
        seed: 11,
        decoder,
        transform: TrainTransform {
            resolution: 32,
            hflip: true,
            crop: InceptionCrop::default(),
            ops: Vec::new(),
        },
        augment: AugmentConfig::default(),
    }
}

fn bytes(b: &Batch) -> Vec<u8> {
    b.images.flatten_all().unwrap().to_vec1::<u8>().unwrap()
}

fn take(loader: Loader, n: usize) -> Vec<(Vec<u8>, Vec<u32>, LoaderPosition)> {
    loader
        .take(n)
        .map(|b| {
            let b = b.expect("batch");
            (bytes(&b), b.labels.to_vec1::<u32>().unwrap(), b.position)
        })
        .collect()
}

#[test]
fn batches_are_u8_nhwc_and_identical_across_thread_counts_and_a_resume() {
    let data = split(22); // 5 batches of 4 per epoch, 2 images dropped
    let run = |workers| {
        let l = Loader::train_encoded(
            info(22),
            Arc::clone(&data),
            &train_cfg(workers, DecoderKind::best()),
            LoaderPosition::default(),
        )
        .unwrap();
        assert_eq!(l.batches_per_epoch(), 5);
        assert_eq!(l.resolution(), 32);
        take(l, 12)
    };
    let one = run(1);
    assert_eq!(one[0].0.len(), 4 * 32 * 32 * 3);
    assert_eq!(one[4].2, LoaderPosition { epoch: 1, batch: 0 });
    assert_ne!(one[0].0, one[5].0, "epochs are reshuffled and re-augmented");
    for workers in [2, 3] {
        assert!(
            run(workers) == one,
            "{workers} workers give the 1-worker batches"
        );
    }
    // Resume mid-epoch (epoch 1, batch 2) from the position batch 6 handed out.
    let pos = one[6].2;
    assert_eq!(pos, LoaderPosition { epoch: 1, batch: 2 });
    let resumed = take(
        Loader::train_encoded(
            info(22),
            Arc::clone(&data),
            &train_cfg(2, DecoderKind::best()),
            pos,
        )
        .unwrap(),
        5,
    );
    assert!(
        resumed[..] == one[7..12],
        "a resumed loader continues exactly"
    );
}

#[test]
fn labels_follow_the_images_and_model_input_normalises_on_the_device() {
    let data = split(8);
    let b = Loader::train_encoded(
        info(8),
        Arc::clone(&data),
        &train_cfg(1, DecoderKind::Zune),
        LoaderPosition::default(),
    )
    .unwrap()
    .next()
    .unwrap()
    .unwrap();
    assert_eq!(b.images.dims(), &[4, 32, 32, 3]);
    assert_eq!(b.images.dtype(), candle_core::DType::U8);
    let raw = bytes(&b);
    let x = model_input(&b.images, &candle_core::Device::Cpu).unwrap();
    assert_eq!(x.dims(), &[4, 3, 32, 32]);
    let x = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    // Image 1, row 5, column 7, channel 2 in both layouts.
    let v = raw[((32 + 5) * 32 + 7) * 3 + 2];
    let got = x[((3 + 2) * 32 + 5) * 32 + 7];
    let want = (f32::from(v) / 255.0 - 0.406) / 0.225;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    // Every label is one of the split's.
    assert!(b.labels.to_vec1::<u32>().unwrap().iter().all(|&l| l < 3));
}

#[test]
fn evaluation_reads_the_split_once_in_order() {
    let data = split(10);
    let cfg = EncodedEvalConfig {
        batch_size: 4,
        max_images: 0,
        decoder: DecoderKind::best(),
        transform: EvalTransform {
            resolution: 24,
            crop: EvalCrop::ResizeCrop32,
            crop_pct: 0.875,
        },
    };
    let run = || -> Vec<(Vec<u8>, Vec<u32>)> {
        Loader::eval_encoded(info(10), Arc::clone(&data), &cfg)
            .unwrap()
            .map(|b| {
                let b = b.unwrap();
                (bytes(&b), b.labels.to_vec1::<u32>().unwrap())
            })
            .collect()
    };
    let batches = run();
    let labels: Vec<u32> = batches.iter().flat_map(|b| b.1.clone()).collect();
    assert_eq!(labels, (0..10).map(|k| k % 3).collect::<Vec<_>>());
    assert_eq!(
        batches[2].0.len(),
        2 * 24 * 24 * 3,
        "the last batch is partial"
    );
    assert!(batches == run(), "evaluation is deterministic");
}

#[test]
fn an_undecodable_image_is_an_error_naming_it() {
    let mut s = MemorySplit::new();
    for k in 0..4 {
        s.push(
            EncodedMeta {
                label: 0,
                height: 40,
                width: 40,
            },
            jpeg(k, 40, 40),
        );
    }
    s.push(
        EncodedMeta {
            label: 0,
            height: 40,
            width: 40,
        },
        b"not a jpeg at all".to_vec(),
    );
    let mut cfg = train_cfg(1, DecoderKind::best());
    cfg.batch_size = 5;
    let err = Loader::train_encoded(info(5), Arc::new(s), &cfg, LoaderPosition::default())
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, DataError::Decode { .. }), "{err}");
    assert!(err.to_string().contains("image 4"), "{err}");
}

#[test]
fn a_jpeg_folder_is_a_split_with_sorted_classes() {
    let dir = tempfile::tempdir().unwrap();
    for (class, n) in [("zebra", 2), ("ant", 3)] {
        std::fs::create_dir_all(dir.path().join("train").join(class)).unwrap();
        std::fs::create_dir_all(dir.path().join("val").join(class)).unwrap();
        for k in 0..n {
            let name = format!("{k:02}.JPEG");
            std::fs::write(
                dir.path().join("train").join(class).join(&name),
                jpeg(k, 50 + k, 40),
            )
            .unwrap();
        }
        std::fs::write(
            dir.path().join("val").join(class).join("v.jpg"),
            jpeg(9, 30, 30),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("train").join(class).join("notes.txt"),
            "skip me",
        )
        .unwrap();
    }
    let (info, train, val) = FolderSplit::open_root(dir.path()).unwrap();
    assert_eq!(info.class_names, ["ant", "zebra"]);
    assert_eq!((info.train_count, info.val_count), (5, 2));
    assert_eq!(
        (0..5).map(|i| train.label(i)).collect::<Vec<_>>(),
        [0, 0, 0, 1, 1]
    );
    assert_eq!(
        train.meta(4),
        EncodedMeta {
            label: 1,
            height: 40,
            width: 51
        }
    );
    assert!(train.describe(3).ends_with("00.JPEG"));
    let mut buf = Vec::new();
    val.read_into(1, &mut buf).unwrap();
    assert_eq!(buf, jpeg(9, 30, 30));
    assert!(FolderSplit::open_root(&dir.path().join("val").join("ant")).is_err());
}

fn mixed_cfg(workers: usize, randaugment_layers: u32) -> EncodedTrainConfig {
    let mut cfg = train_cfg(workers, DecoderKind::best());
    cfg.augment = AugmentConfig {
        randaugment_layers,
        randaugment_magnitude: 5,
        mixing: Mixing::MixupCutmix,
        ..AugmentConfig::default()
    };
    cfg
}

fn mix_of(b: &Batch) -> (Vec<u32>, Vec<f32>) {
    let m = b.mix.as_ref().expect("a mixed batch carries its targets");
    (
        m.labels_b.to_vec1::<u32>().unwrap(),
        m.weight_a.to_vec1::<f32>().unwrap(),
    )
}

#[test]
fn the_jpeg_loader_mixes_pairs_of_its_own_crops_as_the_recipe_says() {
    let data = split(22);
    let first = |cfg: &EncodedTrainConfig| {
        Loader::train_encoded(info(22), Arc::clone(&data), cfg, LoaderPosition::default())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
    };
    // The 8 sources of mixed batch 0 are exactly the unmixed batch of 8 (same permutation slice, same crop keys).
    let mut plain_cfg = train_cfg(1, DecoderKind::best());
    plain_cfg.batch_size = 8;
    let plain = first(&plain_cfg);
    let (src, src_labels) = (bytes(&plain), plain.labels.to_vec1::<u32>().unwrap());
    let mixed = first(&mixed_cfg(1, 0));
    let (out, labels) = (bytes(&mixed), mixed.labels.to_vec1::<u32>().unwrap());
    let (labels_b, weight_a) = mix_of(&mixed);
    assert_eq!(labels, src_labels[..4]);
    assert_eq!(labels_b, src_labels[4..]);
    let len = 32 * 32 * 3;
    for j in 0..4 {
        let (a, b, o) = (
            &src[j * len..(j + 1) * len],
            &src[(4 + j) * len..(5 + j) * len],
            &out[j * len..(j + 1) * len],
        );
        let r = weight_a[j];
        assert!((0.0..=1.0).contains(&r), "weight {r}");
        if j < 2 {
            // MixUp: the rounded blend with the drawn ratio.
            for ((&a, &b), &o) in a.iter().zip(b).zip(o) {
                let want = (r * f32::from(a) + (1.0 - r) * f32::from(b)).round();
                assert!((f32::from(o) - want).abs() <= 1.0, "{o} vs {want}");
            }
        } else {
            // CutMix: every pixel from one source, the first's share equal to its weight.
            let from_a = o
                .chunks_exact(3)
                .zip(a.chunks_exact(3).zip(b.chunks_exact(3)))
                .filter(|(o, (a, b))| o == a && o != b)
                .count();
            let from_b = o
                .chunks_exact(3)
                .zip(a.chunks_exact(3).zip(b.chunks_exact(3)))
                .filter(|(o, (a, b))| o == b && o != a)
                .count();
            assert!(o
                .chunks_exact(3)
                .zip(a.chunks_exact(3).zip(b.chunks_exact(3)))
                .all(|(o, (a, b))| o == a || o == b));
            let share = r * 1024.0;
            assert!(
                from_a as f32 <= share + 0.5 && 1024.0 - from_b as f32 >= share - 0.5,
                "{from_a} {from_b} {share}"
            );
        }
    }
}

#[test]
fn mixed_and_randaugmented_jpeg_batches_are_identical_across_thread_counts() {
    let data = split(22);
    let run = |workers| {
        let l = Loader::train_encoded(
            info(22),
            Arc::clone(&data),
            &mixed_cfg(workers, 2),
            LoaderPosition::default(),
        )
        .unwrap();
        assert_eq!(
            l.batches_per_epoch(),
            2,
            "two sources per image halve the epoch"
        );
        l.take(5)
            .map(|b| {
                let b = b.unwrap();
                (bytes(&b), mix_of(&b), b.position)
            })
            .collect::<Vec<_>>()
    };
    let one = run(1);
    assert!(run(3) == one);
    // RandAugment after mixing changes the images of the same keys.
    let data2 = Arc::clone(&data);
    let no_ra = Loader::train_encoded(info(22), data2, &mixed_cfg(1, 0), LoaderPosition::default())
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_ne!(bytes(&no_ra), one[0].0);
    assert_eq!(
        mix_of(&no_ra),
        one[0].1,
        "the mixing draws do not depend on RandAugment"
    );
}
