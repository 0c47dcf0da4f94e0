//! RandAugment against DeepMind's `nfnets/autoaugment.py` (commit f5de0ede): each op against its formula on a
//! fixture image, the level-to-argument table, the layer/magnitude code of `cutmix_mixup_randaugment_405`, and the
//! same keys giving the same image on any thread count.

use nfbench::data::augment::rng_for;
use nfbench::data::randaugment::{
    apply_op, equalize_lut, greyscale, level_arg, Op, OpArg, PixelConsts, RandAugment, OPS, REPLACE,
};
use nfbench::data::RgbImage;

/// A 20 x 16 image whose pixel (x, y) channel c is `(7x + 13y + 50c) % 256`.
fn fixture() -> RgbImage {
    let (w, h) = (20u32, 16u32);
    let px = (0..h)
        .flat_map(|y| {
            (0..w).flat_map(move |x| (0..3).map(move |c| ((7 * x + 13 * y + 50 * c) % 256) as u8))
        })
        .collect();
    RgbImage::from_raw(w, h, px).unwrap()
}

fn applied(img: &RgbImage, op: OpArg) -> RgbImage {
    let mut out = img.clone();
    apply_op(&mut out, op);
    out
}

/// Every byte of `out` against `f(input byte)`.
fn per_value(op: OpArg, f: impl Fn(u8) -> u8) {
    let img = fixture();
    let out = applied(&img, op);
    for (a, b) in img.pixels().iter().zip(out.pixels()) {
        assert_eq!(*b, f(*a), "{op:?} at input {a}");
    }
}

#[test]
fn the_op_list_and_level_table_are_deepminds() {
    let names: Vec<String> = OPS.iter().map(|o| format!("{o:?}")).collect();
    let deepmind = [
        "AutoContrast",
        "Equalize",
        "Invert",
        "Rotate",
        "Posterize",
        "Solarize",
        "Color",
        "Contrast",
        "Brightness",
        "Sharpness",
        "ShearX",
        "ShearY",
        "TranslateX",
        "TranslateY",
        "Cutout",
        "SolarizeAdd",
    ];
    assert_eq!(names, deepmind);
    let k = PixelConsts::default();
    assert_eq!((k.translate, k.cutout), (100, 40), "RandAugment's hparams");
    // level_to_arg at the levels the NFNet configs use (5, 10, 15) and at 0, from the Python formulas.
    let table: &[(Op, [f64; 4])] = &[
        (Op::Rotate, [0.0, 15.0, 30.0, 45.0]),
        (Op::Posterize, [0.0, 2.0, 4.0, 6.0]),
        (Op::Solarize, [0.0, 128.0, 256.0, 384.0]),
        (Op::SolarizeAdd, [0.0, 55.0, 110.0, 165.0]),
        (Op::Color, [0.1, 1.0, 1.9, 2.8]),
        (Op::Contrast, [0.1, 1.0, 1.9, 2.8]),
        (Op::Brightness, [0.1, 1.0, 1.9, 2.8]),
        (Op::Sharpness, [0.1, 1.0, 1.9, 2.8]),
        (Op::ShearX, [0.0, 0.15, 0.3, 0.45]),
        (Op::ShearY, [0.0, 0.15, 0.3, 0.45]),
        (Op::TranslateX, [0.0, 50.0, 100.0, 150.0]),
        (Op::TranslateY, [0.0, 50.0, 100.0, 150.0]),
        (Op::Cutout, [0.0, 20.0, 40.0, 60.0]),
        (Op::AutoContrast, [0.0; 4]),
        (Op::Equalize, [0.0; 4]),
        (Op::Invert, [0.0; 4]),
    ];
    assert_eq!(table.len(), 16);
    for (op, want) in table {
        for (level, w) in [0.0, 5.0, 10.0, 15.0].iter().zip(want) {
            let got = level_arg(*op, *level, k);
            assert!((got - w).abs() < 1e-9, "{op:?} at {level}: {got} vs {w}");
        }
    }
    // int() truncates: Posterize at 7 is int(2.8) = 2, Solarize at 3 int(76.8) = 76, Cutout at 3 int(12) = 12.
    assert_eq!(level_arg(Op::Posterize, 7.0, k), 2.0);
    assert_eq!(level_arg(Op::Solarize, 3.0, k), 76.0);
    assert_eq!(level_arg(Op::SolarizeAdd, 3.0, k), 33.0);
}

#[test]
fn the_augment_name_code_is_layers_then_magnitude() {
    let k = PixelConsts::default();
    for (code, layers, mag) in [
        (405, 4, 5),
        (410, 4, 10),
        (415, 4, 15),
        (205, 2, 5),
        (15, 2, 15),
    ] {
        let ra = RandAugment::from_code(code, k);
        assert_eq!((ra.layers(), ra.magnitude()), (layers, mag), "{code}");
    }
}

#[test]
fn value_ops_follow_their_formulas() {
    per_value(OpArg::Invert, |v| 255 - v);
    per_value(OpArg::Posterize(2), |v| v & 0b1100_0000);
    per_value(OpArg::Posterize(5), |v| v & 0b1111_1000);
    per_value(OpArg::Posterize(8), |v| v);
    per_value(OpArg::Solarize(128), |v| if v < 128 { v } else { 255 - v });
    per_value(OpArg::Solarize(256), |v| v);
    per_value(OpArg::SolarizeAdd(55), |v| {
        if v < 128 {
            (v as u32 + 55).min(255) as u8
        } else {
            v
        }
    });
    per_value(OpArg::Brightness(0.5), |v| (v as f32 * 0.5) as u8);
    per_value(OpArg::Brightness(1.9), |v| {
        (v as f32 * 1.9).min(255.0) as u8
    });
    per_value(OpArg::Brightness(1.0), |v| v);
}

#[test]
fn posterize_keeps_the_stated_bits() {
    let img = fixture();
    for bits in 1..=8u32 {
        let out = applied(&img, OpArg::Posterize(bits));
        let low = (1u16 << (8 - bits)) - 1;
        assert!(
            out.pixels().iter().all(|&v| v as u16 & low == 0),
            "{bits} bits"
        );
        let kept: std::collections::BTreeSet<u8> = out.pixels().iter().copied().collect();
        assert!(kept.len() <= 1 << bits);
    }
}

#[test]
fn colour_blends_follow_deepminds_blend() {
    let img = fixture();
    let grey = greyscale(&img);
    for (i, p) in img.pixels().chunks_exact(3).enumerate() {
        let g = (p[0] as f32 / 255.0 * 0.2989
            + p[1] as f32 / 255.0 * 0.587
            + p[2] as f32 / 255.0 * 0.114)
            * 255.5;
        assert_eq!(grey[i], g as u8);
    }
    // Color 0.5 interpolates (truncated, unclipped); 1.9 extrapolates (clipped).
    for f in [0.5f64, 1.9] {
        let out = applied(&img, OpArg::Color(f));
        for (i, (a, b)) in img.pixels().iter().zip(out.pixels()).enumerate() {
            let d = grey[i / 3] as f32;
            let t = d + f as f32 * (*a as f32 - d);
            assert_eq!(*b, t.clamp(0.0, 255.0) as u8);
        }
    }
    // Contrast blends towards H * W / 256 (DeepMind's histogram sum over 256): 320 / 256 -> 1.
    let out = applied(&img, OpArg::Contrast(0.25));
    for (a, b) in img.pixels().iter().zip(out.pixels()) {
        assert_eq!(*b, (1.0 + 0.25 * (*a as f32 - 1.0)) as u8);
    }
}

#[test]
fn sharpness_smooths_the_interior_only() {
    let mut img = RgbImage::filled(5, 5, [10, 10, 10]);
    img.pixels_mut()[(2 * 5 + 2) * 3] = 140;
    let out = applied(&img, OpArg::Sharpness(0.0));
    // Factor 0 is the degenerate image: (8 * 10 + 5 * 140) / 13 = 60 at the centre, (7 * 10 + 140 + 5 * 10) / 13 = 20
    // beside it, the border untouched.
    assert_eq!(out.pixel(2, 2)[0], 60);
    assert_eq!(out.pixel(1, 2)[0], 20);
    assert_eq!(out.pixel(0, 2)[0], 10);
    assert_eq!(out.pixel(2, 2)[1], 10);
    // Factor 1 is the identity, factor 2 extrapolates away from the smoothed image.
    assert_eq!(applied(&img, OpArg::Sharpness(1.0)), img);
    assert_eq!(
        applied(&img, OpArg::Sharpness(2.0)).pixel(2, 2)[0],
        (60.0f32 + 2.0 * 80.0) as u8
    );
}

#[test]
fn autocontrast_stretches_each_channel() {
    let px: Vec<u8> = [50u8, 100, 150]
        .iter()
        .flat_map(|&v| [v, 7, v / 2])
        .collect();
    let img = RgbImage::from_raw(3, 1, px).unwrap();
    let out = applied(&img, OpArg::AutoContrast);
    let scale = 255.0f32 / 100.0;
    assert_eq!(out.pixel(0, 0)[0], 0);
    assert_eq!(out.pixel(1, 0)[0], (100.0 * scale - 50.0 * scale) as u8);
    assert_eq!(out.pixel(2, 0)[0], 255);
    assert_eq!(out.pixel(1, 0)[1], 7, "a flat channel stays");
    assert_eq!(out.pixel(2, 0)[2], 255);
}

#[test]
fn equalize_uses_deepminds_lookup_table() {
    // Two values, half the pixels each: step = (512 - 256) / 255 = 1, so 100 -> cumsum[99] = 0, 200 -> 256 -> 255.
    let mut hist = [0u64; 256];
    hist[100] = 256;
    hist[200] = 256;
    let lut = equalize_lut(&hist).unwrap();
    assert_eq!((lut[100], lut[200]), (0, 255));
    // A flat histogram of every value once is the identity; a single value has step 0 and is left alone.
    let lut = equalize_lut(&[1; 256]).unwrap();
    assert!((0..256).all(|v| lut[v] as usize == v));
    let mut one = [0u64; 256];
    one[42] = 1000;
    assert!(equalize_lut(&one).is_none());
    // Through the op: a three-valued channel, 3 x 200 pixels, step = 400 / 255 = 1.
    let px: Vec<u8> = (0..600)
        .flat_map(|i| [[10u8, 20, 30][i % 3], 9, 9])
        .collect();
    let img = RgbImage::from_raw(30, 20, px).unwrap();
    let out = applied(&img, OpArg::Equalize);
    let mut got: Vec<u8> = out.pixels().iter().step_by(3).copied().collect();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got, vec![0, 200, 255]);
    assert!(out.pixels().iter().skip(1).step_by(3).all(|&v| v == 9));
}

#[test]
fn shear_shears_by_the_stated_angle() {
    // A vertical line at x = 15; ShearX(s) samples input (x + s * y, y), so row y shows it at x = 15 - s * y:
    // the line leans by atan(s) (16.7 degrees for s = 0.3, DeepMind's level 10).
    let (w, h) = (32u32, 24u32);
    let mut img = RgbImage::filled(w, h, [0, 0, 0]);
    for y in 0..h {
        let i = ((y * w + 15) * 3) as usize;
        img.pixels_mut()[i..i + 3].fill(255);
    }
    let s = 0.3f64;
    let out = applied(&img, OpArg::ShearX(s));
    let mut xs = Vec::new();
    for y in 0..h {
        let hits: Vec<u32> = (0..w)
            .filter(|&x| out.pixel(x, y) == [255, 255, 255])
            .collect();
        assert_eq!(hits.len(), 1, "row {y}");
        assert_eq!((hits[0] as f64 + s * y as f64).round(), 15.0, "row {y}");
        xs.push(hits[0] as f64);
        // Pixels sampled from outside the image are the grey fill.
        for x in 0..w {
            if (x as f64 + s * y as f64).round() >= w as f64 {
                assert_eq!(out.pixel(x, y), [REPLACE; 3]);
            }
        }
    }
    let slope = (xs[0] - xs[h as usize - 1]) / (h - 1) as f64;
    assert!(
        (slope.atan().to_degrees() - s.atan().to_degrees()).abs() < 1.5,
        "{slope}"
    );
    // ShearY is the transpose.
    let out = applied(&fixture(), OpArg::ShearY(-0.15));
    let img = fixture();
    for (x, y) in [(3u32, 4u32), (10, 2), (19, 15)] {
        let sy = (-0.15 * x as f64 + y as f64).round();
        let want = if (0.0..16.0).contains(&sy) {
            img.pixel(x, sy as u32)
        } else {
            [REPLACE; 3]
        };
        assert_eq!(out.pixel(x, y), want);
    }
}

#[test]
fn rotate_translate_and_cutout_move_pixels_as_stated() {
    let img = fixture();
    let sq = RgbImage::from_raw(16, 16, img.pixels()[..16 * 16 * 3].to_vec()).unwrap();
    // 90 degrees through TF's transform: output (x, y) samples input (w - 1 - y, x).
    let out = applied(&sq, OpArg::Rotate(90.0));
    for (x, y) in [(0u32, 0u32), (3, 7), (15, 2), (9, 15)] {
        assert_eq!(out.pixel(x, y), sq.pixel(15 - y, x));
    }
    assert_eq!(applied(&sq, OpArg::Rotate(0.0)), sq);
    // TranslateX(p): output (x, y) is input (x + p, y); the last p columns are grey.
    let out = applied(&img, OpArg::TranslateX(5.0));
    assert_eq!(out.pixel(0, 3), img.pixel(5, 3));
    assert_eq!(out.pixel(15, 9), [REPLACE; 3]);
    let out = applied(&img, OpArg::TranslateY(-4.0));
    assert_eq!(out.pixel(6, 10), img.pixel(6, 6));
    assert_eq!(out.pixel(6, 3), [REPLACE; 3]);
    // Cutout: [cx - pad, cx + pad) x [cy - pad, cy + pad), clipped, grey; nothing else changes.
    let out = applied(
        &img,
        OpArg::Cutout {
            pad: 3,
            cx: 1,
            cy: 10,
        },
    );
    for y in 0..16 {
        for x in 0..20 {
            let inside = x < 4 && (7..13).contains(&y);
            assert_eq!(
                out.pixel(x, y) == [REPLACE; 3],
                inside || img.pixel(x, y) == [REPLACE; 3],
                "{x},{y}"
            );
        }
    }
}

#[test]
fn the_same_keys_give_the_same_image_on_any_thread_count() {
    let ra = RandAugment::from_code(415, PixelConsts::default());
    let run = |threads: usize| -> Vec<RgbImage> {
        let keys: Vec<u64> = (0..24).collect();
        let chunks: Vec<&[u64]> = keys.chunks(keys.len().div_ceil(threads)).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|ks| {
                    s.spawn(move || {
                        ks.iter()
                            .map(|&k| {
                                let mut img = fixture();
                                ra.apply(&mut img, &mut rng_for(9, &[3, 0, 1, k]));
                                img
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        })
    };
    let one = run(1);
    assert_eq!(one, run(4));
    assert_eq!(one, run(7));
    // The ops do something: most images change, and different keys differ.
    assert!(one.iter().filter(|i| **i != fixture()).count() > 18);
    assert_ne!(one[0], one[1]);
    // Every op gets drawn over many keys (the draw is uniform over the 16).
    let mut seen = std::collections::HashSet::new();
    for k in 0..400u64 {
        for op in
            RandAugment::new(1, 5, PixelConsts::default()).draw((20, 16), &mut rng_for(1, &[k]))
        {
            seen.insert(std::mem::discriminant(&op));
        }
    }
    assert_eq!(seen.len(), 16);
}
