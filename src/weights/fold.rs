//! The exact folds that make timm's parametrisation compute with our layers, in f64.
//!
//! **WS epsilon.** timm's `ScaledStdConv2d` standardises with `F.batch_norm` over each output channel's fan-in:
//! `W_t = g_t * s * (w - mu) / sqrt(var + eps_t)`, with `var` the population variance, `eps_t` = `std_conv_eps`
//! (1e-5), `s = gamma / sqrt(N)` (`gamma` = 1 under `gamma_in_act`). DeepMind's `WSConv2D` (and ours) computes
//! `W_d = g_d * (w - mu) / sqrt(max(N var, 1e-4))`. With the same `w`, both are `(w - mu)` times a per-channel
//! scalar, so `W_d = W_t` exactly when
//!
//! ```text
//! g_d = g_t * gamma_c * sqrt(max(N var, 1e-4)) / sqrt(N (var + eps_t)),
//! ```
//!
//! computed per channel from the imported `w` in f64 (`gamma_c` is the conv's share of gamma, below). Nothing else
//! is assumed: a channel whose `N var` is under 1e-4 (where DeepMind's floor binds) folds as exactly as any other,
//! and a constant channel (`w = mu`) gives a zero kernel on both sides. The fold is exact as a function of the
//! imported weights; training afterwards moves `w` under our parametrisation, which is a different (and the
//! reference's) function of `w` from there on. No WS variant is needed.
//!
//! **Where gamma sits.** timm's non-`dm_` models (`gamma_in_act = False`) apply no gamma in the activations and
//! instead put `gamma` into every conv's scale `s`. Every conv but two follows an activation, where that is the
//! same as our `gamma * act(x)`: the exceptions are the stem's first conv (on the image) and `final_conv` (on the
//! last stage's output), which timm scales by gamma and we do not (`gamma_c = gamma` there, 1 elsewhere), and the
//! final activation, to which timm applies no gamma and we do: our classifier weight is timm's divided by gamma.
//! All three are scalings of a linear map, so they fold exactly.
//!
//! **SkipInit.** Without `skipinit` timm's blocks have no skip gain: ours is 1. On export to such a model ours folds
//! into the last branch conv's gain and bias, exact when nothing non-linear follows that conv (no SE).

/// The per-channel factor `sqrt(max(N var, 1e-4)) / sqrt(N (var + eps))` of timm's (`eps`) WS in terms of ours,
/// for an OIHW kernel `w` flattened, `out_ch` channels of `fan_in` values each.
pub fn ws_eps_factors(w: &[f32], out_ch: usize, fan_in: usize, eps: f64) -> Vec<f64> {
    (0..out_ch)
        .map(|o| {
            let row = &w[o * fan_in..(o + 1) * fan_in];
            let n = fan_in as f64;
            let mean = row.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
            let var = row
                .iter()
                .map(|&x| (f64::from(x) - mean).powi(2))
                .sum::<f64>()
                / n;
            let ours = (n * var).max(crate::model::layers::WS_EPS).sqrt();
            let theirs = (n * (var + eps)).sqrt();
            ours / theirs
        })
        .collect()
}

/// Multiply each value by its factor (in f64, one rounding to f32).
pub fn scale_each(values: &[f32], factors: &[f64]) -> Vec<f32> {
    values
        .iter()
        .zip(factors)
        .map(|(&v, &f)| (f64::from(v) * f) as f32)
        .collect()
}

/// Divide each value by its factor (in f64, one rounding to f32).
pub fn unscale_each(values: &[f32], factors: &[f64]) -> Vec<f32> {
    values
        .iter()
        .zip(factors)
        .map(|(&v, &f)| (f64::from(v) / f) as f32)
        .collect()
}

/// Multiply every value by one scalar, in f64.
pub fn scale_all(values: &[f32], factor: f64) -> Vec<f32> {
    values
        .iter()
        .map(|&v| (f64::from(v) * factor) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// timm's standardised kernel, written out from its definition (F.batch_norm over the fan-in).
    fn timm_ws(w: &[f32], gain: f64, eps: f64) -> Vec<f64> {
        let n = w.len() as f64;
        let mean = w.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = w
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        w.iter()
            .map(|&x| gain / n.sqrt() * (f64::from(x) - mean) / (var + eps).sqrt())
            .collect()
    }

    /// DeepMind's, from its definition (rsqrt(max(N var, 1e-4))).
    fn dm_ws(w: &[f32], gain: f64) -> Vec<f64> {
        let n = w.len() as f64;
        let mean = w.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = w
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        w.iter()
            .map(|&x| gain * (f64::from(x) - mean) / (n * var).max(1e-4).sqrt())
            .collect()
    }

    #[test]
    fn the_eps_fold_makes_deepminds_ws_equal_timms() {
        // Ordinary weights, tiny ones (the 1e-4 floor binds: N var = 9 * 1e-8), and a constant channel.
        for w in [
            vec![0.3f32, -0.2, 0.5, 0.1, -0.7, 0.05, 0.2, -0.1, 0.4],
            vec![1e-4f32, -1e-4, 2e-4, 0.0, -2e-4, 1e-4, 0.0, 1e-4, -1e-4],
            vec![0.25f32; 9],
        ] {
            let f = ws_eps_factors(&w, 1, 9, 1e-5)[0];
            let want = timm_ws(&w, 1.3, 1e-5);
            let got = dm_ws(&w, 1.3 * f);
            for (a, b) in want.iter().zip(&got) {
                assert!((a - b).abs() <= 1e-12 * (1.0 + a.abs()), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn without_the_fold_they_differ() {
        let w = vec![0.01f32, -0.02, 0.015, 0.0, -0.01, 0.005, 0.02, -0.01, 0.004];
        let (t, d) = (timm_ws(&w, 1.0, 1e-5), dm_ws(&w, 1.0));
        assert!(t
            .iter()
            .zip(&d)
            .any(|(a, b)| (a - b).abs() > 1e-3 * a.abs().max(1e-9)));
    }
}
