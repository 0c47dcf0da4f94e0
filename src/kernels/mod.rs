//! Compute kernels behind the model's layers. Every layer calls these rather than candle directly, so a faster
//! implementation (custom ops with their own backward) can replace one without touching the model code.
//!
//! On the CPU in f32 each entry point here runs a custom op; elsewhere (GPU, other dtypes) candle's composite ops
//! (`reference.rs`); bf16 on the CPU runs in f32. What only the tests and benchmarks call (those composites as
//! oracles, the im2col path, the slice-level kernels) they reach through the hidden module [`testing`]. Convolutions: `conv.rs`
//! holds the custom ops and the dispatch between three implementations (their shared geometry is `geometry.rs`,
//! the CPU-storage access of every op `storage.rs`, the per-thread partial sums `reduce.rs`): the shifted-frame kernels
//! for 3x3 stride-1 convolutions (`direct/`, AVX-512 or AVX2 + FMA micro-kernels), their stride-2 counterpart on
//! phase planes (`strided.rs`), and im2col + gemm (`conv.rs`, `gemm.rs`) for everything else.
//! `NFBENCH_CONV_DIRECT=0` / `=avx2` (read once per process) turns the shifted-frame kernels off or holds them to
//! AVX2. The element-wise passes of a block (`fused.rs`), GELU (`gelu.rs`), batch norm, weight standardisation and
//! max pooling have their own one-pass backward ops.

mod batchnorm;
mod conv;
mod direct;
mod fused;
mod gelu;
mod gemm;
mod geometry;
mod pool;
mod reduce;
mod reference;
mod runtime;
mod scratch;
mod storage;
mod strided;
#[doc(hidden)]
pub mod testing;
mod ws;

pub use runtime::configure_cpu_runtime;

pub use geometry::Padding;

use candle_core::{DType, Result, Tensor};

/// candle's CPU backend has no bf16 matrix product: on the CPU, bf16 convolutions run in f32 and round the result
/// back to bf16 (what a GPU's bf16 gemm with f32 accumulation gives), so bf16 training also runs (slowly) here.
fn cpu_bf16(ts: &[&Tensor]) -> bool {
    ts.iter().all(|t| t.device().is_cpu()) && ts.iter().any(|t| t.dtype() == DType::BF16)
}

/// `n` floats produced in parallel chunks of `chunk` (`fill(offset, values)` for the values at `offset..`), without
/// zero-filling the buffer first: for activation-sized outputs that memset was a few % of a training step.
///
/// # Safety
/// `fill` must write every value of every chunk it is given; the vector is then read as initialised.
pub(crate) unsafe fn par_fill(
    n: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [std::mem::MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    use rayon::prelude::*;
    let chunk = chunk.max(1);
    let mut v = Vec::with_capacity(n);
    v.spare_capacity_mut()[..n]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| fill(i * chunk, c));
    // SAFETY: the caller guarantees `fill` wrote every value.
    unsafe { v.set_len(n) };
    v
}

fn to_f32(t: &Tensor) -> Result<Tensor> {
    t.to_dtype(DType::F32)
}

/// The f32 data of a contiguous CPU tensor's storage (from `Tensor::storage_and_layout`), for code that reads tensors
/// outside a custom op (backward passes, the optimiser); an error naming `what` otherwise.
pub(crate) fn storage_f32<'a>(
    s: &'a candle_core::Storage,
    l: &candle_core::Layout,
    what: &str,
) -> Result<&'a [f32]> {
    match s {
        candle_core::Storage::Cpu(cs) => storage::f32_slice(cs, l, what),
        _ => candle_core::bail!("{what}: expected a CPU tensor"),
    }
}

/// 2-D convolution, NCHW input `[B, C, H, W]`, OIHW kernel `[O, C/groups, kh, kw]`, symmetric zero padding.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    conv2d_padded(x, w, stride, Padding::uniform(padding), groups)
}

/// [`conv2d`] with a separate zero padding on each side, e.g. TF-style 'SAME' padding of a strided conv on an even
/// input (top/left 0, bottom/right 1): cheaper than padding the input explicitly, which copies it and adds a
/// backward op. Output size: `(H + top + bottom - kh) / stride + 1`, likewise for the width.
pub fn conv2d_padded(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: Padding,
    groups: usize,
) -> Result<Tensor> {
    conv2d_padded_impl(x, w, stride, padding, groups, false)
}

fn conv2d_padded_impl(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: Padding,
    groups: usize,
    relu_input: bool,
) -> Result<Tensor> {
    if relu_input && !storage::cpu_f32(&[x, w]) {
        return conv2d_padded(&relu(x)?, w, stride, padding, groups);
    }
    if cpu_bf16(&[x, w]) {
        return conv2d_padded(&to_f32(x)?, &to_f32(w)?, stride, padding, groups)?
            .to_dtype(DType::BF16);
    }
    if !storage::cpu_f32(&[x, w]) {
        return reference::conv2d_padded_reference(x, w, stride, padding, groups);
    }
    let op = conv::Conv2dOp {
        stride,
        pad: padding,
        groups,
        relu_input,
    };
    x.contiguous()?.apply_op2(&w.contiguous()?, op)
}

/// Scaled weight standardisation of an OIHW kernel, per output channel:
/// `gain * (w - mean) / sqrt(max(N * var, eps))` with N the fan-in `I/groups * kh * kw`, population variance.
/// `gain` has shape `[O]`. Gradients flow to both `w` and `gain`.
pub fn weight_standardize(w: &Tensor, gain: &Tensor, eps: f64) -> Result<Tensor> {
    if storage::cpu_f32(&[w, gain]) {
        return w
            .contiguous()?
            .apply_op2(&gain.contiguous()?, ws::WsOp { eps });
    }
    reference::weight_standardize_reference(w, gain, eps)
}

/// Max pooling over `kernel x kernel` windows with the given stride and symmetric padding (padded cells never win).
/// NCHW. The NF-ResNet stem uses kernel 3, stride 2, padding 1.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    max_pool2d_padded(x, kernel, stride, Padding::uniform(padding))
}

/// [`max_pool2d`] with a separate padding on each side (TF-style 'SAME' pooling of even inputs: 0 before, 1
/// after). Padded cells never win.
pub fn max_pool2d_padded(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: Padding,
) -> Result<Tensor> {
    if storage::cpu_f32(&[x]) {
        return x.contiguous()?.apply_op1(pool::MaxPoolOp {
            kernel,
            stride,
            pad: padding,
        });
    }
    reference::max_pool2d_padded_reference(x, kernel, stride, padding)
}

/// GELU, the tanh form (`jax.nn.gelu`'s default), with a vectorised one-pass forward and backward on the CPU in
/// f32; candle's `gelu` (the same formula) elsewhere.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if storage::cpu_f32(&[x]) {
        return x.contiguous()?.apply_op1(gelu::GeluOp);
    }
    x.gelu()
}

pub use gelu::tanh_fast;

/// GELU, the exact erf form (`torch.nn.functional.gelu`'s default; timm's NFNets), with its gradient: a custom op on
/// the CPU in f32, candle's `gelu_erf` (the same formula) elsewhere.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if storage::cpu_f32(&[x]) {
        return x.contiguous()?.apply_op1(gelu::GeluErfOp);
    }
    x.gelu_erf()
}

/// `max(x, 0)` with a one-pass backward on the CPU; candle's `relu` elsewhere.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if storage::cpu_f32(&[x]) {
        return x.contiguous()?.apply_op1(fused::ReluOp);
    }
    x.relu()
}

/// `shortcut + factor * branch` for NCHW streams, `factor` with one value (shape `[]` or `[1]`) or one per sample
/// (`[B, 1, 1, 1]` or `[B]`): the end of a residual block (skip gain, alpha, stochastic-depth mask). One pass
/// forward; backward one pass for the branch and one per-sample dot product for the factor.
pub fn scaled_residual(shortcut: &Tensor, branch: &Tensor, factor: &Tensor) -> Result<Tensor> {
    if storage::cpu_f32(&[shortcut, branch, factor]) {
        return shortcut.contiguous()?.apply_op3(
            &branch.contiguous()?,
            &factor.contiguous()?,
            fused::ScaledResidualOp,
        );
    }
    reference::scaled_residual_reference(shortcut, branch, factor)
}

/// What a convolution fuses around it, so the relus of a block are no tensors (nor graph nodes) of their own:
/// `relu` on its input (a block's pre-activation) and on its output. Built from [`ConvFusion::NONE`]:
/// `ConvFusion::NONE.with_relu_input(true)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConvFusion {
    relu_input: bool,
    relu_output: bool,
}

impl ConvFusion {
    /// The plain convolution.
    pub const NONE: ConvFusion = ConvFusion {
        relu_input: false,
        relu_output: false,
    };

    /// Convolve `relu(x)` instead of `x` when `on`.
    pub const fn with_relu_input(self, on: bool) -> Self {
        Self {
            relu_input: on,
            ..self
        }
    }

    /// `relu` of the result (after the bias) when `on`.
    pub const fn with_relu_output(self, on: bool) -> Self {
        Self {
            relu_output: on,
            ..self
        }
    }

    /// True when the input goes through `relu` first.
    pub const fn relu_input(self) -> bool {
        self.relu_input
    }

    /// True when the output goes through `relu`.
    pub const fn relu_output(self) -> bool {
        self.relu_output
    }
}

/// `act(conv2d(act_in(x), w) + b)`, the bias `b [O]` optional, the two activations relu or identity as `fusion`
/// says. On the CPU in f32 one op with its own backward: the input relu is applied while the input is copied into
/// the kernel's buffers and masks the input gradient (a block's pre-activation, whose zero-fill, accumulation and
/// extra passes in candle's backward cost ~5% of a step on the default network); with a bias, the bias and the
/// output relu are one pass over the output and the backward masks from the op's own output; without one, the
/// output relu is [`relu`]'s op. Elsewhere candle's ops.
pub fn conv2d_fused(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: Padding,
    groups: usize,
    fusion: ConvFusion,
) -> Result<Tensor> {
    let Some(b) = bias else {
        let y = conv2d_padded_impl(x, w, stride, padding, groups, fusion.relu_input())?;
        return if fusion.relu_output() {
            relu(&y)
        } else {
            Ok(y)
        };
    };
    conv2d_bias_act_impl(x, w, b, (stride, padding, groups), fusion)
}

/// [`conv2d_fused`] with a bias.
fn conv2d_bias_act_impl(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    (stride, padding, groups): (usize, Padding, usize),
    fusion: ConvFusion,
) -> Result<Tensor> {
    let geometry = (stride, padding, groups);
    if fusion.relu_input() && !storage::cpu_f32(&[x, w, b]) {
        let x = relu(x)?;
        return conv2d_bias_act_impl(&x, w, b, geometry, fusion.with_relu_input(false));
    }
    if cpu_bf16(&[x, w, b]) {
        let (x, w, b) = (to_f32(x)?, to_f32(w)?, to_f32(b)?);
        return conv2d_bias_act_impl(&x, &w, &b, geometry, fusion)?.to_dtype(DType::BF16);
    }
    if !storage::cpu_f32(&[x, w, b]) {
        return reference::conv2d_fused_reference(x, w, Some(b), stride, padding, groups, fusion);
    }
    let op = conv::Conv2dBiasActOp {
        stride,
        pad: padding,
        groups,
        relu: fusion.relu_output(),
        relu_input: fusion.relu_input(),
    };
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, op)
}

/// BatchNorm in training mode on an NCHW batch, `scale` and `offset` `[C]`: `(y, batch mean, batch variance)`, the
/// statistics detached `[C]` (for the running averages). One custom op with its own backward on the CPU (f32);
/// `None` elsewhere, where the caller uses candle's ops.
pub fn batch_norm_train(
    x: &Tensor,
    scale: &Tensor,
    offset: &Tensor,
    eps: f64,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    batch_norm_train_act(x, scale, offset, eps, false)
}

/// [`batch_norm_train`] followed by relu when `relu`, as one op (its backward masks from its own output).
pub fn batch_norm_train_act(
    x: &Tensor,
    scale: &Tensor,
    offset: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    if !storage::cpu_f32(&[x, scale, offset]) {
        return Ok(None);
    }
    let x = x.contiguous()?;
    let (b, c, h, w) = x.dims4()?;
    let (mean, var) = {
        let (s, l) = x.storage_and_layout();
        let data = storage_f32(&s, l, "batch norm input")?;
        batchnorm::channel_moments(data, b, c, h * w)
    };
    let dev = x.device();
    let (mean_t, var_t) = (
        Tensor::from_slice(&mean, c, dev)?,
        Tensor::from_slice(&var, c, dev)?,
    );
    let op = batchnorm::BatchNormTrainOp {
        eps,
        mean,
        var,
        relu,
    };
    let y = x.apply_op3(&scale.contiguous()?, &offset.contiguous()?, op)?;
    Ok(Some((y, mean_t, var_t)))
}
