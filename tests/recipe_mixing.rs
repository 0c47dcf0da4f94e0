//! MixUp and CutMix as DeepMind's `nfnets/dataset.py` does them: label mass conserved, the CutMix weight equal to
//! the clipped box's area, the MixUp ratio Beta(alpha, alpha), and batches bit-identical for a seed on any thread
//! count.

mod data_support;

use data_support::{label_value, Fixture};
use nfbench::data::augment::rng_for;
use nfbench::data::mixing::{draw_cutmix_box, draw_mixup_ratio, plan, MixDraw, PlanOptions};
use nfbench::data::{
    AugmentConfig, Batch, DatasetInfo, Loader, LoaderConfig, LoaderPosition, Mixing,
};

fn cfg(batch_size: usize, workers: usize, seed: u64) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        resolution: 0,
        crop_padding: 0,
        hflip: false,
        workers,
        prefetch: 2,
        seed,
    }
}

fn mixing(m: Mixing) -> AugmentConfig {
    AugmentConfig {
        mixing: m,
        ..AugmentConfig::default()
    }
}

fn batches(path: &std::path::Path, c: &LoaderConfig, a: AugmentConfig, n: usize) -> Vec<Batch> {
    let loader = Loader::train_with(path, c, a, LoaderPosition::default()).unwrap();
    loader.take(n).map(|b| b.unwrap()).collect()
}

fn weights(b: &Batch) -> Vec<f32> {
    b.mix.as_ref().unwrap().weight_a.to_vec1::<f32>().unwrap()
}

#[test]
fn cutmix_box_area_is_the_weight_and_the_drawn_lambda_when_unclipped() {
    let (h, w) = (32usize, 24usize);
    let mut unclipped = 0;
    for k in 0..2000u64 {
        let mut rng = rng_for(7, &[k]);
        let MixDraw::Cutmix { cut, lambda } = draw_cutmix_box(&mut rng, h, w) else {
            panic!("a CutMix draw");
        };
        let d = draw_cutmix_box(&mut rng_for(7, &[k]), h, w);
        assert!((d.weight_a(h, w) - cut.area() as f32 / (h * w) as f32).abs() < 1e-7);
        assert!(cut.x1 <= w && cut.y1 <= h && cut.x0 <= cut.x1 && cut.y0 <= cut.y1);
        // DeepMind's side: int(sqrt(lambda) * side), halved by integer division on each side of the centre.
        let (rw, rh) = (
            (lambda.sqrt() * w as f32) as usize,
            (lambda.sqrt() * h as f32) as usize,
        );
        if cut.x0 > 0 && cut.y0 > 0 && cut.x1 < w && cut.y1 < h {
            unclipped += 1;
            assert_eq!(cut.x1 - cut.x0, 2 * (rw / 2), "{k}");
            assert_eq!(cut.y1 - cut.y0, 2 * (rh / 2), "{k}");
            // The area matches the drawn lambda up to the whole-pixel truncation of each side.
            let got = cut.area() as f32 / (h * w) as f32;
            let slack = 2.0 / h as f32 + 2.0 / w as f32;
            assert!((got - lambda).abs() <= slack, "{k}: {got} vs {lambda}");
        } else {
            // Clipping only shrinks the box: the weight is corrected below the drawn lambda.
            assert!(cut.area() as f32 / (h * w) as f32 <= lambda + 1e-6);
        }
    }
    assert!(unclipped > 20, "{unclipped} boxes inside the image");
}

#[test]
fn mixup_ratio_is_beta_alpha_alpha() {
    let alpha = 0.2;
    let n = 20_000;
    let r: Vec<f64> = (0..n)
        .map(|k| draw_mixup_ratio(&mut rng_for(3, &[k]), alpha) as f64)
        .collect();
    let mean = r.iter().sum::<f64>() / n as f64;
    let var = r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
    // Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)); with a = 0.2 most mass is near 0 and 1.
    assert!((mean - 0.5).abs() < 0.015, "{mean}");
    assert!(
        (var - 1.0 / (4.0 * (2.0 * alpha + 1.0))).abs() < 0.01,
        "{var}"
    );
    assert!(r.iter().all(|x| (0.0..=1.0).contains(x)));
    let extreme = r.iter().filter(|&&x| !(0.1..=0.9).contains(&x)).count() as f64 / n as f64;
    assert!(extreme > 0.5, "{extreme}");
}

#[test]
fn mixup_cutmix_splits_the_batch_in_halves() {
    let o = PlanOptions {
        mixing: Mixing::MixupCutmix,
        alpha: 0.2,
        height: 16,
        width: 16,
        seed: 1,
        epoch: 0,
        batch: 5,
    };
    let p = plan(9, o);
    assert_eq!(p.len(), 9);
    assert!(p[..4].iter().all(|d| matches!(d, MixDraw::Mixup { .. })));
    assert!(p[4..].iter().all(|d| matches!(d, MixDraw::Cutmix { .. })));
    assert!(plan(
        9,
        PlanOptions {
            mixing: Mixing::None,
            ..o
        }
    )
    .is_empty());
    assert_eq!(plan(9, o), plan(9, o));
    assert_ne!(plan(9, o), plan(9, PlanOptions { batch: 6, ..o }));
}

#[test]
fn loader_mixes_pixels_and_labels_consistently_and_reads_two_images_per_output() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Fixture::new(64, 8, 12, 12, 3, 4);
    let path = fx.write(&dir.path().join("mix.h5"), data_support::label_pixel);
    let info = DatasetInfo::open(&path).unwrap();
    let c = cfg(8, 1, 11);
    let raw = |x: f32, ch: usize| (x * info.std[ch] + info.mean[ch]) * 255.0;
    for m in [Mixing::Cutmix, Mixing::Mixup] {
        let loader = Loader::train_with(&path, &c, mixing(m), LoaderPosition::default()).unwrap();
        assert_eq!(
            loader.batches_per_epoch(),
            64 / 16,
            "two source images per output image"
        );
        for b in loader.take(4).map(|b| b.unwrap()) {
            let a = b.labels.to_vec1::<u32>().unwrap();
            let bl = b.mix.as_ref().unwrap().labels_b.to_vec1::<u32>().unwrap();
            let r = weights(&b);
            let img = b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let plane = 12 * 12;
            for j in 0..8 {
                assert!(
                    (0.0..=1.0).contains(&r[j]),
                    "weights are in [0, 1], so targets sum to 1"
                );
                let (va, vb) = (label_value(a[j]) as f32, label_value(bl[j]) as f32);
                let ch0 = &img[j * 3 * plane..j * 3 * plane + plane];
                match m {
                    Mixing::Cutmix if va != vb => {
                        let from_a = ch0
                            .iter()
                            .filter(|&&x| (raw(x, 0) - va).abs() < 0.01)
                            .count();
                        let from_b = ch0
                            .iter()
                            .filter(|&&x| (raw(x, 0) - vb).abs() < 0.01)
                            .count();
                        assert_eq!(from_a + from_b, plane);
                        assert!(
                            (from_a as f32 / plane as f32 - r[j]).abs() < 1e-6,
                            "box area = weight"
                        );
                    }
                    Mixing::Mixup => {
                        let want = r[j] * va + (1.0 - r[j]) * vb;
                        assert!(ch0.iter().all(|&x| (raw(x, 0) - want).abs() < 0.01));
                    }
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn mixed_batches_are_bit_identical_for_a_seed_on_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Fixture::new(96, 8, 10, 10, 3, 5);
    let path = fx.write(&dir.path().join("det.h5"), |i, l, y, x, c| {
        (i * 7 + l as usize * 13 + y * 3 + x * 5 + c) as u8
    });
    let aug = AugmentConfig {
        mixing: Mixing::MixupCutmix,
        randaugment_layers: 2,
        randaugment_magnitude: 9,
        ..AugmentConfig::default()
    };
    let one = batches(&path, &cfg(6, 1, 5), aug, 10);
    let three = batches(&path, &cfg(6, 3, 5), aug, 10);
    let again = batches(&path, &cfg(6, 2, 5), aug, 10);
    let other = batches(&path, &cfg(6, 1, 6), aug, 10);
    let bytes = |bs: &[Batch]| -> Vec<u32> {
        bs.iter()
            .flat_map(|b| {
                let mut v: Vec<u32> = b
                    .images
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect();
                v.extend(b.labels.to_vec1::<u32>().unwrap());
                v.extend(b.mix.as_ref().unwrap().labels_b.to_vec1::<u32>().unwrap());
                v.extend(weights(b).iter().map(|x| x.to_bits()));
                v
            })
            .collect()
    };
    assert_eq!(bytes(&one), bytes(&three));
    assert_eq!(bytes(&one), bytes(&again));
    assert_ne!(bytes(&one), bytes(&other));
    // Resuming mid-stream gives the same batches.
    let c = cfg(6, 2, 5);
    let resumed = Loader::train_with(&path, &c, aug, one[6].position).unwrap();
    let tail: Vec<Batch> = resumed.take(3).map(|b| b.unwrap()).collect();
    assert_eq!(bytes(&tail), bytes(&one[7..10]));
}
