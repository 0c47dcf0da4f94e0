//! Layers materialised from their plans: (Scaled WS) convs, BatchNorm, dense layers, Squeeze-Excite, pooling with
//! the reference's 'SAME' padding. Weights are drawn on the host from a seeded ChaCha8 stream per parameter name, so
//! two builds with the same seed are bit-identical whatever the device.

use super::config::PaddingMode;
use super::plan::{BnPlan, ConvPlan, LinearPlan};
use super::precision::{cast, f32};
use super::{Param, ParamKind};
use crate::kernels::{ConvFusion, Padding};
use candle_core::{DType, Device, Result, Tensor, Var, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Mutex;

/// WS's floor on N * Var(W), as the reference.
pub const WS_EPS: f64 = 1e-4;
/// BatchNorm's variance epsilon.
pub const BN_EPS: f64 = 1e-5;
/// Weight of the newest batch in the BN running statistics (decay 0.9).
pub const BN_MOMENTUM: f64 = 0.1;

/// A per-parameter RNG: the stream depends only on the build seed and the parameter's name.
pub fn param_rng(seed: u64, name: &str) -> ChaCha8Rng {
    // FNV-1a of the name, mixed with the seed: stable across platforms and releases.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    ChaCha8Rng::seed_from_u64(h ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// A standard normal sample (Box-Muller).
pub fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// `n` samples of N(0, std^2), optionally truncated at two deviations (resampled, as Haiku's `TruncatedNormal`,
/// which does not rescale: the truncated samples' std is about 0.88 std).
pub fn normal_vec(rng: &mut ChaCha8Rng, n: usize, std: f64, truncated: bool) -> Vec<f32> {
    (0..n)
        .map(|_| loop {
            let z = standard_normal(rng);
            if !truncated || z.abs() <= 2.0 {
                break (z * std) as f32;
            }
        })
        .collect()
}

fn var_from(data: Vec<f32>, shape: &[usize], device: &Device) -> Result<Var> {
    Var::from_tensor(&Tensor::from_vec(data, shape, device)?)
}

fn push_param(params: &mut Vec<Param>, name: String, var: &Var, kind: ParamKind) {
    params.push(Param {
        name,
        var: var.clone(),
        kind,
    });
}

/// Pad `x` (NCHW) on its spatial dims as TensorFlow's 'SAME' does for `kernel`/`stride`: the odd cell goes after.
/// Returns the pads `(top, bottom, left, right)`.
pub fn same_pads(h: usize, w: usize, kernel: usize, stride: usize) -> (usize, usize, usize, usize) {
    PaddingMode::Same.pads(h, w, kernel, stride)
}

/// A convolution, with Scaled Weight Standardisation when its plan says so.
#[derive(Debug)]
pub struct Conv {
    pub plan: ConvPlan,
    pub w: Var,
    pub gain: Option<Var>,
    pub b: Option<Var>,
}

impl Conv {
    /// Weights: variance scaling, fan-in, normal: std sqrt(init_gain / N) (see [`ConvPlan::init_gain`]).
    pub fn new(
        plan: &ConvPlan,
        seed: u64,
        device: &Device,
        params: &mut Vec<Param>,
    ) -> Result<Conv> {
        let std = (plan.init_gain / plan.fan_in() as f64).sqrt();
        let shape = plan.weight_shape();
        let n = shape.iter().product();
        let w_name = format!("{}.w", plan.name);
        let w = var_from(
            normal_vec(&mut param_rng(seed, &w_name), n, std, false),
            &shape,
            device,
        )?;
        push_param(params, w_name, &w, ParamKind::ConvWeight);
        let gain = if plan.ws {
            let g = Var::ones(plan.out_ch, DType::F32, device)?;
            push_param(params, format!("{}.gain", plan.name), &g, ParamKind::Gain);
            Some(g)
        } else {
            None
        };
        let b = if plan.bias {
            let b = Var::zeros(plan.out_ch, DType::F32, device)?;
            push_param(params, format!("{}.b", plan.name), &b, ParamKind::Bias);
            Some(b)
        } else {
            None
        };
        Ok(Conv {
            plan: plan.clone(),
            w,
            gain,
            b,
        })
    }

    /// The kernel actually convolved: standardised (inside the graph, so gradients flow through it) under WS.
    pub fn effective_weight(&self) -> Result<Tensor> {
        match &self.gain {
            Some(gain) => {
                crate::kernels::weight_standardize(self.w.as_tensor(), gain.as_tensor(), WS_EPS)
            }
            None => Ok(self.w.as_tensor().clone()),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_scaled(x, 1.0)
    }

    /// `conv(scale * x)`, with the scalar folded into the (small) kernel rather than the activations.
    pub fn forward_scaled(&self, x: &Tensor, scale: f64) -> Result<Tensor> {
        self.forward_scaled_act(x, scale, false)
    }

    /// [`Conv::forward_scaled`], then `relu` when `relu` is set: bias and relu fused into the convolution (one graph
    /// node) when the layer has a bias.
    pub fn forward_scaled_act(&self, x: &Tensor, scale: f64, relu: bool) -> Result<Tensor> {
        self.forward_fused(x, scale, ConvFusion::NONE.with_relu_output(relu))
    }

    /// `conv(scale * x)` with the relus `fusion` names fused into the convolution (`kernels::conv2d_fused`): an
    /// input relu, so a block's pre-activation is no tensor of its own, and an output relu.
    pub fn forward_fused(&self, x: &Tensor, scale: f64, fusion: ConvFusion) -> Result<Tensor> {
        let w = self.effective_weight()?;
        let w = if scale != 1.0 { (w * scale)? } else { w };
        // Standardised in f32, then cast to the activations' precision (a no-op in f32).
        let w = cast(&w, x.dtype())?;
        let (_, _, h, wd) = x.dims4()?;
        let (top, bottom, left, right) =
            self.plan
                .padding
                .pads(h, wd, self.plan.kernel, self.plan.stride);
        // 'SAME' padding is asymmetric for strided convs on even inputs: padded inside the kernel, no copy.
        let pad = Padding {
            top,
            bottom,
            left,
            right,
        };
        let bias = self
            .b
            .as_ref()
            .map(|b| cast(b.as_tensor(), x.dtype()))
            .transpose()?;
        let (stride, groups) = (self.plan.stride, self.plan.groups);
        crate::kernels::conv2d_fused(x, &w, bias.as_ref(), stride, pad, groups, fusion)
    }
}

/// Per-channel mean and population variance over (N, H, W) of an NCHW tensor, each `[C]`.
pub fn channel_moments(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let (b, c, h, w) = x.dims4()?;
    let flat = x.transpose(0, 1)?.reshape((c, b * h * w))?;
    let mean = flat.mean_keepdim(D::Minus1)?;
    let var = flat.broadcast_sub(&mean)?.sqr()?.mean(D::Minus1)?;
    Ok((mean.squeeze(1)?, var))
}

/// BatchNorm: batch statistics in training (and an update of the running statistics), running statistics in eval.
#[derive(Debug)]
pub struct BatchNorm {
    pub plan: BnPlan,
    pub scale: Var,
    pub offset: Var,
    /// (running mean, running var), detached, `[C]` each.
    pub running: Mutex<(Tensor, Tensor)>,
}

impl BatchNorm {
    pub fn new(plan: &BnPlan, device: &Device, params: &mut Vec<Param>) -> Result<BatchNorm> {
        let scale = Var::ones(plan.ch, DType::F32, device)?;
        let offset = Var::zeros(plan.ch, DType::F32, device)?;
        push_param(
            params,
            format!("{}.scale", plan.name),
            &scale,
            ParamKind::Gain,
        );
        push_param(
            params,
            format!("{}.offset", plan.name),
            &offset,
            ParamKind::Bias,
        );
        let running = (
            Tensor::zeros(plan.ch, DType::F32, device)?,
            Tensor::ones(plan.ch, DType::F32, device)?,
        );
        Ok(BatchNorm {
            plan: plan.clone(),
            scale,
            offset,
            running: Mutex::new(running),
        })
    }

    /// Normalises in f32 whatever the activations' precision, and returns the input's dtype.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_act(x, train, false)
    }

    /// [`BatchNorm::forward`], then relu when `relu`: fused into the normalisation in training on the CPU.
    pub fn forward_act(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        let c = self.plan.ch;
        let dtype = x.dtype();
        let x = &f32(x)?;
        if train {
            let fused = crate::kernels::batch_norm_train_act(
                x,
                self.scale.as_tensor(),
                self.offset.as_tensor(),
                BN_EPS,
                relu,
            )?;
            if let Some((y, mean, var)) = fused {
                self.update_running(&mean, &var)?;
                return cast(&y, dtype);
            }
        }
        let (mean, var) = if train {
            let (mean, var) = channel_moments(x)?;
            self.update_running(&mean.detach(), &var.detach())?;
            (mean, var)
        } else {
            let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            running.clone()
        };
        let inv = (var + BN_EPS)?.sqrt()?.recip()?;
        let scale = (inv * self.scale.as_tensor())?;
        let shift = (self.offset.as_tensor() - (&mean * &scale)?)?;
        let y = x
            .broadcast_mul(&scale.reshape((1, c, 1, 1))?)?
            .broadcast_add(&shift.reshape((1, c, 1, 1))?)?;
        let y = if relu { crate::kernels::relu(&y)? } else { y };
        cast(&y, dtype)
    }

    /// Moves the running statistics towards this batch's (detached) mean and variance.
    fn update_running(&self, mean: &Tensor, var: &Tensor) -> Result<()> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let m = BN_MOMENTUM;
        let new_mean = ((&running.0 * (1.0 - m))? + (mean * m)?)?;
        let new_var = ((&running.1 * (1.0 - m))? + (var * m)?)?;
        *running = (new_mean, new_var);
        Ok(())
    }

    /// Buffer names: `<name>.mean`, `<name>.var`.
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        vec![
            (format!("{}.mean", self.plan.name), running.0.clone()),
            (format!("{}.var", self.plan.name), running.1.clone()),
        ]
    }
}

/// A dense layer, weight `[out, in]`.
#[derive(Debug)]
pub struct Linear {
    pub plan: LinearPlan,
    pub w: Var,
    pub b: Var,
}

impl Linear {
    pub fn new(
        plan: &LinearPlan,
        seed: u64,
        device: &Device,
        params: &mut Vec<Param>,
    ) -> Result<Linear> {
        let w_name = format!("{}.w", plan.name);
        let data = normal_vec(
            &mut param_rng(seed, &w_name),
            plan.in_f * plan.out_f,
            plan.init_std,
            plan.truncated,
        );
        let w = var_from(data, &[plan.out_f, plan.in_f], device)?;
        let b = Var::zeros(plan.out_f, DType::F32, device)?;
        push_param(params, w_name, &w, ParamKind::LinearWeight);
        push_param(params, format!("{}.b", plan.name), &b, ParamKind::Bias);
        Ok(Linear {
            plan: plan.clone(),
            w,
            b,
        })
    }

    /// `x [B, in] -> [B, out]`, in `x`'s precision.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = cast(self.w.as_tensor(), x.dtype())?;
        let b = cast(self.b.as_tensor(), x.dtype())?;
        x.matmul(&w.t()?)?.broadcast_add(&b)
    }
}

/// Squeeze-Excite: mean pool -> linear -> relu (no gamma) -> linear -> sigmoid; the caller multiplies by 2x this.
#[derive(Debug)]
pub struct SqueezeExcite {
    pub fc0: Linear,
    pub fc1: Linear,
}

impl SqueezeExcite {
    /// The excitation `sigmoid(...)`, shaped `[B, C, 1, 1]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, _, _) = x.dims4()?;
        // Rows averaged in the activations' precision, then the (small) rest in f32.
        let pooled = f32(&x.mean(D::Minus1)?)?.mean(D::Minus1)?;
        let h = self.fc1.forward(&self.fc0.forward(&pooled)?.relu()?)?;
        // sigmoid as (tanh(h/2) + 1) / 2: candle's fused sigmoid has no gradient on every backend.
        let s = (((h * 0.5)?.tanh()? + 1.0)? * 0.5)?;
        cast(&s.reshape((b, c, 1, 1))?, x.dtype())
    }
}

/// 3x3 stride-2 max pool padded as `mode` says (padded cells never win).
pub fn max_pool_3x3_s2(x: &Tensor, mode: PaddingMode) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (top, bottom, left, right) = mode.pads(h, w, 3, 2);
    crate::kernels::max_pool2d_padded(
        x,
        3,
        2,
        Padding {
            top,
            bottom,
            left,
            right,
        },
    )
}

/// 2x2 stride-2 'SAME' average pool; at an odd edge only the cells inside the input are averaged (as Haiku).
pub fn avg_pool_same(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h % 2 == 0 && w % 2 == 0 {
        return x.avg_pool2d_with_stride(2, 2);
    }
    let xp = x.pad_with_zeros(2, 0, h % 2)?.pad_with_zeros(3, 0, w % 2)?;
    let pooled = xp.avg_pool2d_with_stride(2, 2)?;
    let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
    // Correction 4 / (cells inside the input) per output cell.
    let mut corr = Vec::with_capacity(oh * ow);
    for i in 0..oh {
        for j in 0..ow {
            let rows = if 2 * i + 1 < h { 2 } else { 1 };
            let cols = if 2 * j + 1 < w { 2 } else { 1 };
            corr.push(4.0 / (rows * cols) as f32);
        }
    }
    let corr = Tensor::from_vec(corr, (1, 1, oh, ow), x.device())?.to_dtype(x.dtype())?;
    pooled.broadcast_mul(&corr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_pads_match_tensorflow() {
        // 3x3 stride 2 on 32: out 16, total pad 1, the odd cell after.
        assert_eq!(same_pads(32, 32, 3, 2), (0, 1, 0, 1));
        // 7x7 stride 2 on 224: total 5 -> 2 before, 3 after.
        assert_eq!(same_pads(224, 224, 7, 2), (2, 3, 2, 3));
        // 3x3 stride 1: symmetric 1.
        assert_eq!(same_pads(17, 9, 3, 1), (1, 1, 1, 1));
        // 1x1 stride 2 on odd input: no padding.
        assert_eq!(same_pads(7, 7, 1, 2), (0, 0, 0, 0));
    }

    #[test]
    fn symmetric_pads_match_pytorch_and_keep_the_output_size() {
        // timm's get_padding: ((stride - 1) + (kernel - 1)) / 2.
        assert_eq!(PaddingMode::Symmetric.pads(32, 32, 3, 2), (1, 1, 1, 1));
        assert_eq!(PaddingMode::Symmetric.pads(224, 224, 7, 2), (3, 3, 3, 3));
        assert_eq!(PaddingMode::Symmetric.pads(9, 9, 1, 2), (0, 0, 0, 0));
        for n in [7usize, 8, 31, 32] {
            for (k, s) in [(3usize, 2usize), (7, 2), (1, 2), (3, 1)] {
                let (t, b, _, _) = PaddingMode::Symmetric.pads(n, n, k, s);
                assert_eq!((n + t + b - k) / s + 1, n.div_ceil(s), "n {n} k {k} s {s}");
            }
        }
    }

    #[test]
    fn avg_pool_same_averages_only_inside_cells() -> Result<()> {
        let x = Tensor::arange(0f32, 9.0, &Device::Cpu)?.reshape((1, 1, 3, 3))?;
        let y = avg_pool_same(&x)?.flatten_all()?.to_vec1::<f32>()?;
        // [[0,1,2],[3,4,5],[6,7,8]]: windows {0,1,3,4}, {2,5}, {6,7}, {8}.
        assert_eq!(y, vec![2.0, 3.5, 6.5, 8.0]);
        Ok(())
    }

    #[test]
    fn normal_samples_have_the_requested_std() {
        let mut rng = param_rng(7, "x");
        let v = normal_vec(&mut rng, 20000, 0.5, false);
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / v.len() as f64;
        assert!(mean.abs() < 0.02, "{mean}");
        assert!((var.sqrt() - 0.5).abs() < 0.01, "{var}");
    }
}
