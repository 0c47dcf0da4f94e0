//! AGC against hand-computed values: conv, linear, vector and scalar parameters, the clip boundary, the eps floor on
//! a zero weight, the 1e-6 floor on the gradient norm, statistics rows and exclusions.

use candle_core::{Device, Tensor};
use nfbench::optim::agc::{self, adaptive_clip, AgcStatsRow};

fn t(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
}

fn vals(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{got:?} vs {want:?}"
        );
    }
}

#[test]
fn linear_clips_per_output_unit_with_zero_weight_floor() {
    // Unit 0: ||W|| = 5, ||G|| = 0.5 > 0.05 * 5 -> scaled by 0.25 / 0.5.
    // Unit 1: ||W|| = 0 -> floor 1e-3, threshold 5e-5, ||G|| = 1 -> scaled by 5e-5.
    let w = t(&[3.0, 4.0, 0.0, 0.0], &[2, 2]);
    let g = t(&[0.3, 0.4, 0.0, 1.0], &[2, 2]);
    let out = adaptive_clip(&w, &g, 0.05, 1e-3).unwrap();
    assert_close(&vals(&out), &[0.15, 0.2, 0.0, 5e-5], 1e-5);
}

#[test]
fn conv_clips_per_output_channel() {
    // OIHW [2, 2, 1, 2]: channel 0 W = (1, 2, 2, 4), ||W|| = 5, G all 1, ||G|| = 2 > 0.2 * 5 = 1 -> factor 0.5.
    // Channel 1: W all 1, ||W|| = 2, G all 0.1, ||G|| = 0.2 < 0.4 -> unchanged.
    let w = t(&[1.0, 2.0, 2.0, 4.0, 1.0, 1.0, 1.0, 1.0], &[2, 2, 1, 2]);
    let g = t(&[1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1], &[2, 2, 1, 2]);
    let out = adaptive_clip(&w, &g, 0.2, 1e-3).unwrap();
    assert_eq!(out.dims(), &[2, 2, 1, 2]);
    assert_close(&vals(&out), &[0.5, 0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1], 1e-6);
}

#[test]
fn vectors_and_scalars_are_one_unit() {
    // ||W|| = 3, ||G|| = 5 > 1 * 3 -> factor 0.6.
    let w = t(&[1.0, 2.0, 2.0], &[3]);
    let g = t(&[3.0, 0.0, 4.0], &[3]);
    let out = adaptive_clip(&w, &g, 1.0, 1e-3).unwrap();
    assert_close(&vals(&out), &[1.8, 0.0, 2.4], 1e-6);

    let w = Tensor::new(2.0f32, &Device::Cpu).unwrap();
    let g = Tensor::new(-1.0f32, &Device::Cpu).unwrap();
    let out = adaptive_clip(&w, &g, 0.1, 1e-3).unwrap();
    assert_eq!(out.rank(), 0);
    assert_close(&vals(&out), &[-0.2], 1e-6);
}

#[test]
fn clip_boundary() {
    let w = t(&[3.0, 4.0], &[1, 2]);
    let g = t(&[0.3, 0.4], &[1, 2]); // ||G|| = 0.5
                                     // Exactly at the threshold (0.1 * 5 = 0.5): not clipped.
    let at = adaptive_clip(&w, &g, 0.1, 1e-3).unwrap();
    assert_close(&vals(&at), &[0.3, 0.4], 1e-7);
    // lambda 0.11: threshold 0.55 above the norm, unchanged.
    let below = adaptive_clip(&w, &g, 0.11, 1e-3).unwrap();
    assert_close(&vals(&below), &[0.3, 0.4], 1e-7);
    // lambda 0.09: threshold 0.45 below the norm, factor 0.9.
    let clipped = adaptive_clip(&w, &g, 0.09, 1e-3).unwrap();
    assert_close(&vals(&clipped), &[0.27, 0.36], 1e-6);
}

#[test]
fn gradient_norm_floor() {
    // Zero weight, lambda 1e-6: threshold 1e-9; ||G|| = 1e-7 is above it, and the divisor is floored at 1e-6:
    // factor = 1e-9 / 1e-6 = 1e-3.
    let w = t(&[0.0, 0.0], &[2]);
    let g = t(&[1e-7, 0.0], &[2]);
    let out = adaptive_clip(&w, &g, 1e-6, 1e-3).unwrap();
    assert_close(&vals(&out), &[1e-10, 0.0], 1e-4);
    // A zero gradient stays zero (no division by zero).
    let z = t(&[0.0, 0.0], &[2]);
    let out = adaptive_clip(&w, &z, 0.01, 1e-3).unwrap();
    assert_eq!(vals(&out), vec![0.0, 0.0]);
}

#[test]
fn eps_is_the_weight_floor() {
    // Zero weight with eps 0.5: threshold 1 * 0.5; ||G|| = 1 -> factor 0.5.
    let w = t(&[0.0], &[1]);
    let g = t(&[1.0], &[1]);
    let out = adaptive_clip(&w, &g, 1.0, 0.5).unwrap();
    assert_close(&vals(&out), &[0.5], 1e-6);
}

#[test]
fn statistics_row() {
    let w = t(&[3.0, 4.0, 0.0, 0.0], &[2, 2]);
    let g = t(&[0.3, 0.4, 0.0, 1.0], &[2, 2]);
    let (_, row) = agc::clip_with_stats(&w, &g, 0.05, 1e-3, true).unwrap();
    let row = AgcStatsRow::from_row(&vals(&row.unwrap()));
    assert!((row.weight_norm - 5.0).abs() < 1e-5);
    assert!((row.grad_norm - 1.25f64.sqrt()).abs() < 1e-5);
    // ratios: 0.5 / 5 = 0.1 and 1 / 1e-3 = 1000.
    assert!((row.max_ratio - 1000.0).abs() < 1e-2, "{row:?}");
    assert!((row.mean_ratio - 500.05).abs() < 1e-2, "{row:?}");
    assert_eq!(row.clipped_fraction, 1.0);

    // Only unit 1 clipped at lambda 0.2 (threshold 1.0 for unit 0).
    let (_, row) = agc::clip_with_stats(&w, &g, 0.2, 1e-3, true).unwrap();
    let row = AgcStatsRow::from_row(&vals(&row.unwrap()));
    assert_eq!(row.clipped_fraction, 0.5);
    // Not-applied rows report no clipping.
    let row = agc::stats_only(&w, &g, 0.2, 1e-3).unwrap();
    assert_eq!(AgcStatsRow::from_row(&vals(&row)).clipped_fraction, 0.0);
}

#[test]
fn exclusions_match_names_and_prefixes() {
    let exclude = vec![
        nfbench::model::CLASSIFIER_WEIGHT.to_string(),
        "stem.*".to_string(),
    ];
    assert!(agc::is_excluded("linear.w", &exclude));
    assert!(!agc::is_excluded("linear.b", &exclude));
    assert!(agc::is_excluded("stem.conv0.w", &exclude));
    assert!(!agc::is_excluded("s1.b0.conv0.w", &exclude));
    // The default preset excludes the classifier weight only.
    let default = nfbench::preset::AgcConfig::default();
    assert_eq!(default.exclude, vec!["linear.w".to_string()]);
    assert_eq!(agc::unit_count(&[8, 3, 3, 3]), 8);
    assert_eq!(agc::unit_count(&[10, 64]), 10);
    assert_eq!(agc::unit_count(&[64]), 1);
}
