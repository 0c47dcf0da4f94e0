//! Compute kernels behind the model's layers. Every layer calls these rather than candle directly, so a faster
//! implementation (custom ops with their own backward) can replace one without touching the model code.
//!
//! On the CPU in f32 each entry point here runs a custom op; elsewhere (GPU, other dtypes) candle's composite ops
//! (the `*_reference` functions, also the tests' oracles); bf16 on the CPU runs in f32. Convolutions: `conv.rs`
//! holds the custom ops and the dispatch between three implementations (their shared geometry is `geometry.rs`,
//! the CPU-storage access of every op `storage.rs`, the per-thread partial sums `reduce.rs`): the shifted-frame kernels
//! for 3x3 stride-1 convolutions (`direct.rs`, AVX-512 or AVX2 + FMA micro-kernels), their stride-2 counterpart on
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
mod runtime;
mod scratch;
mod storage;
mod strided;
mod ws;

pub use runtime::configure_cpu_runtime;

pub use conv::{
    conv2d_forward, conv2d_forward_im2col, conv2d_input_grad, conv2d_input_grad_im2col,
    conv2d_shifted_frames, conv2d_uses_shifted_frames, conv2d_weight_grad,
    conv2d_weight_grad_im2col,
};
pub use geometry::{ConvGeom, Padding};

use candle_core::{DType, Result, Tensor, D};

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
        return conv2d_padded_reference(x, w, stride, padding, groups);
    }
    let op = conv::Conv2dOp {
        stride,
        pad: padding,
        groups,
        relu_input,
    };
    x.contiguous()?.apply_op2(&w.contiguous()?, op)
}

/// candle's own ops for [`conv2d_padded`]: explicit zero padding, then candle's convolution (the GPU path).
pub fn conv2d_padded_reference(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: Padding,
    groups: usize,
) -> Result<Tensor> {
    let Padding {
        top,
        bottom,
        left,
        right,
    } = padding;
    if top == bottom && left == right && top == left {
        return x.conv2d(w, top, stride, 1, groups);
    }
    let xp = x
        .pad_with_zeros(2, top, bottom)?
        .pad_with_zeros(3, left, right)?;
    xp.conv2d(w, 0, stride, 1, groups)
}

/// candle's own convolution (the reference the custom op is tested against, and the GPU path).
pub fn conv2d_reference(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    x.conv2d(w, padding, stride, 1, groups)
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
    weight_standardize_reference(w, gain, eps)
}

/// The composite candle version of [`weight_standardize`] (the GPU path, and the tests' reference).
pub fn weight_standardize_reference(w: &Tensor, gain: &Tensor, eps: f64) -> Result<Tensor> {
    let (o, i, kh, kw) = w.dims4()?;
    let fan_in = (i * kh * kw) as f64;
    let flat = w.reshape((o, i * kh * kw))?;
    let mean = flat.mean_keepdim(D::Minus1)?;
    let centred = flat.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    // max(N * var, eps) as a differentiable op: relu(N*var - eps) + eps.
    let scale = ((var * fan_in)? - eps)?.relu()?.affine(1.0, eps)?.sqrt()?;
    let standardized = centred.broadcast_div(&scale)?;
    standardized
        .broadcast_mul(&gain.reshape((o, 1))?)?
        .reshape((o, i, kh, kw))
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
    max_pool2d_padded_reference(x, kernel, stride, padding)
}

/// Max pooling from differentiable candle ops (pad with a very negative value, take the `kernel^2` strided window
/// views, reduce with `max`), so it trains on every device; candle's own `max_pool2d` has no backward when
/// kernel != stride. Also the tests' reference for the custom op.
pub fn max_pool2d_reference(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    max_pool2d_padded_reference(x, kernel, stride, Padding::uniform(padding))
}

/// [`max_pool2d_reference`] with a separate padding on each side.
pub fn max_pool2d_padded_reference(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    pad: Padding,
) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (hpad, wpad) = (h + pad.top + pad.bottom, w + pad.left + pad.right);
    if kernel == 0 || stride == 0 || hpad < kernel || wpad < kernel {
        candle_core::bail!(
            "max_pool2d: kernel {kernel}/stride {stride} does not fit {h}x{w} + padding {pad:?}"
        );
    }
    let ho = (hpad - kernel) / stride + 1;
    let wo = (wpad - kernel) / stride + 1;
    // Rows needed so that every window offset can take `ho` rows at step `stride` by a reshape.
    let hp = kernel - 1 + stride * ho;
    let wp = kernel - 1 + stride * wo;
    let x = pad_dim(x, 2, pad.top, hp.max(h + pad.top) - h - pad.top)?.narrow(2, 0, hp)?;
    let x = pad_dim(&x, 3, pad.left, wp.max(w + pad.left) - w - pad.left)?.narrow(3, 0, wp)?;
    let mut views = Vec::with_capacity(kernel * kernel);
    for ki in 0..kernel {
        let rows = strided(&x, 2, ki, stride, ho)?;
        for kj in 0..kernel {
            views.push(strided(&rows, 3, kj, stride, wo)?);
        }
    }
    Tensor::stack(&views, 4)?.max(4)
}

/// Pads dimension `dim` with `before` / `after` cells of a value that never wins a max.
fn pad_dim(x: &Tensor, dim: usize, before: usize, after: usize) -> Result<Tensor> {
    let fill = |n: usize| -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        dims[dim] = n;
        Tensor::full(f32::MIN, dims, x.device())?.to_dtype(x.dtype())
    };
    let mut parts = Vec::with_capacity(3);
    if before > 0 {
        parts.push(fill(before)?);
    }
    parts.push(x.clone());
    if after > 0 {
        parts.push(fill(after)?);
    }
    Tensor::cat(&parts, dim)
}

/// Elements `start, start + step, ...` (`count` of them) along `dim`, by narrow + reshape (differentiable).
/// Needs `start + step * count <= dims[dim]`.
fn strided(x: &Tensor, dim: usize, start: usize, step: usize, count: usize) -> Result<Tensor> {
    let x = x.narrow(dim, start, step * count)?;
    let mut dims = x.dims().to_vec();
    dims[dim] = count;
    dims.insert(dim + 1, step);
    x.reshape(dims)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)
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
    scaled_residual_reference(shortcut, branch, factor)
}

/// candle's composite for [`scaled_residual`] (the GPU path and the tests' reference).
pub fn scaled_residual_reference(
    shortcut: &Tensor,
    branch: &Tensor,
    factor: &Tensor,
) -> Result<Tensor> {
    let f = if factor.rank() == 1 && factor.elem_count() > 1 {
        factor.reshape((factor.elem_count(), 1, 1, 1))?
    } else if factor.elem_count() == 1 {
        factor.reshape(())?
    } else {
        factor.clone()
    };
    shortcut + branch.broadcast_mul(&f)?
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
        return if fusion.relu_output() { relu(&y) } else { Ok(y) };
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
        return conv2d_fused_reference(x, w, Some(b), stride, padding, groups, fusion);
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

/// candle's composite for [`conv2d_fused`] (the GPU path and the tests' reference).
pub fn conv2d_fused_reference(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: Padding,
    groups: usize,
    fusion: ConvFusion,
) -> Result<Tensor> {
    let x = if fusion.relu_input() { x.relu()? } else { x.clone() };
    let y = conv2d_padded_reference(&x, w, stride, padding, groups)?;
    let y = match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?,
        None => y,
    };
    if fusion.relu_output() {
        y.relu()
    } else {
        Ok(y)
    }
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
