//! The loader: shapes, normalisation, per-epoch shuffling, determinism across worker counts, exact resume,
//! augmentation keeping labels, resizing, evaluation order, and prompt shutdown.

mod data_support;

use data_support::{identity_pixel, label_pixel, label_value, Fixture};
use nfbench::data::augment::{crop_flip_normalise, Augmentation, Normaliser};
use nfbench::data::{
    eval_resolution, Batch, DataError, DatasetInfo, Loader, LoaderConfig, LoaderPosition, Split,
};
use std::path::{Path, PathBuf};

fn cfg(batch_size: usize, workers: usize, prefetch: usize, seed: u64) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        resolution: 0,
        crop_padding: 0,
        hflip: false,
        workers,
        prefetch,
        seed,
    }
}

fn pixels(b: &Batch) -> Vec<f32> {
    b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn labels(b: &Batch) -> Vec<u32> {
    b.labels.to_vec1::<u32>().unwrap()
}

/// Undo normalisation for channel `c`.
fn raw(info: &DatasetInfo, c: usize, x: f32) -> u8 {
    ((x * info.std[c] + info.mean[c]) * 255.0).round() as u8
}

/// The image indices of an identity-fixture batch (no augmentation, native resolution).
fn identities(info: &DatasetInfo, b: &Batch) -> Vec<usize> {
    let dims = b.images.dims4().unwrap();
    let per = dims.1 * dims.2 * dims.3;
    let px = pixels(b);
    (0..dims.0)
        .map(|i| {
            let lo = raw(info, 0, px[i * per]) as usize;
            let hi = raw(info, 0, px[i * per + 1]) as usize;
            lo + 256 * hi
        })
        .collect()
}

fn take(loader: Loader, n: usize) -> Vec<Batch> {
    loader.take(n).map(|b| b.expect("batch")).collect()
}

fn identity_fixture(dir: &Path, train: usize, val: usize) -> PathBuf {
    Fixture::new(train, val, 6, 6, 3, 5).write(&dir.join("id.h5"), identity_pixel)
}

#[test]
fn train_batches_have_shapes_labels_and_normalised_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = identity_fixture(dir.path(), 40, 10);
    let info = DatasetInfo::open(&path).unwrap();
    assert_eq!(
        (info.train_count, info.val_count, info.num_classes),
        (40, 10, 5)
    );
    let batches = take(
        Loader::train(&path, &cfg(8, 2, 2, 7), LoaderPosition::default()).unwrap(),
        2,
    );
    for b in &batches {
        assert_eq!(b.images.dims(), &[8, 3, 6, 6]);
        assert_eq!(b.images.dtype(), candle_core::DType::F32);
        assert_eq!(b.labels.dims(), &[8]);
        assert_eq!(b.labels.dtype(), candle_core::DType::U32);
        let ids = identities(&info, b);
        let px = pixels(b);
        for (i, (&id, &label)) in ids.iter().zip(&labels(b)).enumerate() {
            assert_eq!(label, (id % 5) as u32, "label follows the image");
            // Pixel (1, 1) channel 2 holds the label value; check the normalisation formula exactly.
            let x = px[i * 108 + 2 * 36 + 6 + 1];
            let want = (f32::from(label_value(label)) / 255.0 - info.mean[2]) / info.std[2];
            assert!((x - want).abs() < 1e-5, "{x} vs {want}");
        }
    }
    assert_eq!(batches[0].position, LoaderPosition { epoch: 0, batch: 1 });
    assert_eq!(batches[1].position, LoaderPosition { epoch: 0, batch: 2 });
}

#[test]
fn each_epoch_is_a_fresh_permutation_without_the_partial_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = identity_fixture(dir.path(), 50, 5);
    let info = DatasetInfo::open(&path).unwrap();
    let loader = Loader::train(&path, &cfg(8, 2, 3, 1), LoaderPosition::default()).unwrap();
    assert_eq!(loader.batches_per_epoch(), 6);
    let batches = take(loader, 12);
    let epoch = |e: usize| -> Vec<usize> {
        batches[e * 6..e * 6 + 6]
            .iter()
            .flat_map(|b| identities(&info, b))
            .collect()
    };
    let (e0, e1) = (epoch(0), epoch(1));
    for e in [&e0, &e1] {
        let mut sorted = e.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            48,
            "48 distinct images per epoch (the last partial batch dropped)"
        );
    }
    assert_ne!(e0, e1, "reshuffled each epoch");
    assert_eq!(batches[5].position, LoaderPosition { epoch: 1, batch: 0 });
}

#[test]
fn batches_depend_only_on_seed_not_on_threads() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::new(30, 5, 8, 8, 3, 3).write(&dir.path().join("a.h5"), identity_pixel);
    let mut a = cfg(4, 1, 1, 42);
    a.crop_padding = 2;
    a.hflip = true;
    let b = LoaderConfig {
        workers: 3,
        prefetch: 5,
        ..a.clone()
    };
    let xa = take(
        Loader::train(&path, &a, LoaderPosition::default()).unwrap(),
        17,
    );
    let xb = take(
        Loader::train(&path, &b, LoaderPosition::default()).unwrap(),
        17,
    );
    for (p, q) in xa.iter().zip(&xb) {
        assert_eq!(pixels(p), pixels(q));
        assert_eq!(labels(p), labels(q));
        assert_eq!(p.position, q.position);
    }
    let other = LoaderConfig { seed: 43, ..a };
    let xc = take(
        Loader::train(&path, &other, LoaderPosition::default()).unwrap(),
        3,
    );
    assert_ne!(
        pixels(&xa[0]),
        pixels(&xc[0]),
        "another seed gives other batches"
    );
}

#[test]
fn resuming_from_a_position_reproduces_the_uninterrupted_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::new(22, 5, 8, 8, 3, 4).write(&dir.path().join("r.h5"), identity_pixel);
    let mut c = cfg(5, 2, 2, 9);
    c.crop_padding = 3;
    c.hflip = true;
    let whole = take(
        Loader::train(&path, &c, LoaderPosition::default()).unwrap(),
        14,
    );
    // 4 batches per epoch; resume mid-epoch and at an epoch boundary.
    for cut in [6usize, 8] {
        let pos = whole[cut - 1].position;
        let resumed = take(Loader::train(&path, &c, pos).unwrap(), 14 - cut);
        for (k, (p, q)) in whole[cut..].iter().zip(&resumed).enumerate() {
            assert_eq!(
                pixels(p),
                pixels(q),
                "batch {} after resuming at {pos:?}",
                cut + k
            );
            assert_eq!(labels(p), labels(q));
            assert_eq!(p.position, q.position);
        }
    }
}

#[test]
fn augmentation_keeps_labels_shapes_and_only_adds_zero_padding() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Fixture::new(40, 5, 8, 8, 3, 4);
    let path = fx.write(&dir.path().join("aug.h5"), label_pixel);
    let info = DatasetInfo::open(&path).unwrap();
    let mut c = cfg(8, 2, 2, 3);
    c.crop_padding = 3;
    c.hflip = true;
    let mut padded_images = 0;
    for b in take(
        Loader::train(&path, &c, LoaderPosition::default()).unwrap(),
        10,
    ) {
        assert_eq!(b.images.dims(), &[8, 3, 8, 8]);
        let px = pixels(&b);
        for (i, &label) in labels(&b).iter().enumerate() {
            let mut zeros = 0;
            for ch in 0..3 {
                for k in 0..64 {
                    let v = raw(&info, ch, px[i * 192 + ch * 64 + k]);
                    assert!(
                        v == label_value(label) || v == 0,
                        "pixel {v} of an image labelled {label}"
                    );
                    zeros += usize::from(v == 0);
                }
            }
            assert!(zeros < 192, "some of the image survives the crop");
            padded_images += usize::from(zeros > 0);
        }
    }
    assert!(
        padded_images > 0,
        "random crops do shift images into the padding"
    );
}

#[test]
fn crop_and_flip_geometry() {
    // A 3x3 one-channel image with values 1..=9, mean 0 and std 1/255 so outputs are the raw values.
    let img: Vec<u8> = (1..=9).collect();
    let norm = Normaliser::new(&[0.0], &[1.0 / 255.0]);
    let mut out = vec![0f32; 9];
    let values = |out: &[f32]| out.iter().map(|v| v.round() as u8).collect::<Vec<_>>();
    crop_flip_normalise(&img, 3, 0, Augmentation::NONE, &norm, &mut out);
    assert_eq!(values(&out), img);
    let flip = Augmentation {
        dy: 0,
        dx: 0,
        flip: true,
    };
    crop_flip_normalise(&img, 3, 0, flip, &norm, &mut out);
    assert_eq!(values(&out), vec![3, 2, 1, 6, 5, 4, 9, 8, 7]);
    // Padding 1, window at (0, 0): shifted down-right by one, zeros enter from the top and left.
    let shift = Augmentation {
        dy: 0,
        dx: 0,
        flip: false,
    };
    crop_flip_normalise(&img, 3, 1, shift, &norm, &mut out);
    assert_eq!(values(&out), vec![0, 0, 0, 0, 1, 2, 0, 4, 5]);
    // Window at (2, 1) with a flip: rows 2..3 of the original, then mirrored.
    let other = Augmentation {
        dy: 2,
        dx: 1,
        flip: true,
    };
    crop_flip_normalise(&img, 3, 1, other, &norm, &mut out);
    assert_eq!(values(&out), vec![6, 5, 4, 9, 8, 7, 0, 0, 0]);
}

#[test]
fn resolution_resizes_train_and_eval_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::new(12, 6, 8, 8, 3, 3).write(&dir.path().join("s.h5"), label_pixel);
    let info = DatasetInfo::open(&path).unwrap();
    let mut c = cfg(4, 1, 1, 0);
    c.resolution = 16;
    c.crop_padding = 2;
    let b = take(
        Loader::train(&path, &c, LoaderPosition::default()).unwrap(),
        1,
    )
    .remove(0);
    assert_eq!(b.images.dims(), &[4, 3, 16, 16]);
    let e: Vec<Batch> = Loader::eval(&path, Split::Val, 4, 4, 0)
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(e[0].images.dims(), &[4, 3, 4, 4]);
    // Constant images stay constant through resizing.
    for b in &e {
        let px = pixels(b);
        for (i, &label) in labels(b).iter().enumerate() {
            for k in 0..16 {
                assert_eq!(raw(&info, 0, px[i * 48 + k]), label_value(label));
            }
        }
    }
}

#[test]
fn non_square_images_need_a_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::new(8, 4, 6, 10, 1, 2).write(&dir.path().join("ns.h5"), label_pixel);
    let err = Loader::train(&path, &cfg(4, 1, 1, 0), LoaderPosition::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("not square"), "{err}");
    let mut c = cfg(4, 1, 1, 0);
    c.resolution = 6;
    let b = take(
        Loader::train(&path, &c, LoaderPosition::default()).unwrap(),
        1,
    )
    .remove(0);
    assert_eq!(b.images.dims(), &[4, 1, 6, 6]);
}

#[test]
fn eval_yields_the_split_once_in_order_with_a_final_partial_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = identity_fixture(dir.path(), 10, 21);
    let info = DatasetInfo::open(&path).unwrap();
    let batches: Vec<Batch> = Loader::eval(&path, Split::Val, 8, 0, 0)
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    let sizes: Vec<usize> = batches.iter().map(|b| b.images.dims()[0]).collect();
    assert_eq!(sizes, vec![8, 8, 5]);
    let ids: Vec<usize> = batches.iter().flat_map(|b| identities(&info, b)).collect();
    assert_eq!(ids, (0..21).collect::<Vec<_>>());
    let some: Vec<usize> = Loader::eval(&path, Split::Val, 4, 0, 7)
        .unwrap()
        .flat_map(|b| identities(&info, &b.unwrap()))
        .collect();
    assert_eq!(some.len(), 7, "max_images takes exactly that many images");
    assert!(
        some.windows(2).all(|w| w[0] < w[1]) && some.iter().all(|&i| i < 21),
        "a subset of distinct images in file order: {some:?}"
    );
    let again: Vec<usize> = Loader::eval(&path, Split::Val, 4, 0, 7)
        .unwrap()
        .flat_map(|b| identities(&info, &b.unwrap()))
        .collect();
    assert_eq!(some, again, "every evaluation sees the same subset");
    let train: usize = Loader::eval(&path, Split::Train, 3, 0, 0)
        .unwrap()
        .map(|b| b.unwrap().images.dims()[0])
        .sum();
    assert_eq!(train, 10);
}

#[test]
fn dropping_a_loader_stops_its_threads() {
    let dir = tempfile::tempdir().unwrap();
    let path = identity_fixture(dir.path(), 64, 8);
    for workers in [1, 4] {
        let mut loader =
            Loader::train(&path, &cfg(4, workers, 1, 0), LoaderPosition::default()).unwrap();
        assert!(loader.next().unwrap().is_ok());
        drop(loader); // returns only once every worker has joined
    }
    let eval = Loader::eval(&path, Split::Train, 2, 0, 0).unwrap();
    drop(eval);
}

#[test]
fn bad_loader_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = identity_fixture(dir.path(), 10, 4);
    let cases = [
        (cfg(0, 1, 1, 0), "batch_size"),
        (cfg(4, 0, 1, 0), "workers"),
        (cfg(4, 1, 0, 0), "prefetch"),
        (cfg(11, 1, 1, 0), "fewer than one batch"),
    ];
    for (c, want) in cases {
        let err = Loader::train(&path, &c, LoaderPosition::default())
            .err()
            .unwrap();
        assert!(matches!(err, DataError::Config { .. }), "{err:?}");
        assert!(
            err.to_string().contains(want),
            "{err} should mention {want}"
        );
    }
    assert!(Loader::eval(&path, Split::Val, 0, 0, 0).is_err());
}

#[test]
fn config_from_preset_and_the_shipped_data_set() {
    let preset = nfbench::preset::schema::DataConfig::default();
    let c = LoaderConfig::from_preset(&preset, 5);
    assert_eq!(
        (c.batch_size, c.workers, c.prefetch, c.seed),
        (preset.batch_size, preset.workers, preset.prefetch, 5)
    );
    assert_eq!(eval_resolution(&preset), preset.resolution);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(&preset.path);
    let info = DatasetInfo::open(&path).unwrap();
    assert_eq!(
        (info.train_count, info.val_count, info.num_classes),
        (8000, 2000, 10)
    );
    assert_eq!((info.height, info.width, info.channels), (32, 32, 3));
    assert_eq!(info.class_names[0], "airplane");
    let b = take(
        Loader::train(&path, &c, LoaderPosition::default()).unwrap(),
        1,
    )
    .remove(0);
    assert_eq!(b.images.dims(), &[preset.batch_size, 3, 32, 32]);
    assert!(labels(&b).iter().all(|&l| l < 10));
}

#[test]
fn loader_and_batches_can_move_to_the_trainer_thread() {
    fn send<T: Send + 'static>() {}
    send::<Loader>();
    send::<Batch>();
    send::<DataError>();
    send::<DatasetInfo>();
}
