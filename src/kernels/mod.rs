//! Compute kernels behind the model's layers. Every layer calls these rather than candle directly, so a faster
//! implementation (custom ops with their own backward) can replace one without touching the model code.

mod conv;
mod gemm;
mod scratch;

pub use conv::{conv2d_forward, conv2d_input_grad, conv2d_weight_grad, ConvGeom};

use candle_core::{Result, Tensor, D};

/// 2-D convolution, NCHW input `[B, C, H, W]`, OIHW kernel `[O, C/groups, kh, kw]`, symmetric zero padding.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    if !conv::cpu_f32(&[x, w]) {
        return x.conv2d(w, padding, stride, 1, groups);
    }
    let op = conv::Conv2dOp {
        stride,
        pad: padding,
        groups,
    };
    x.contiguous()?.apply_op2(&w.contiguous()?, op)
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
    let x = if padding > 0 {
        // Pad with a very negative value so padding never wins the max.
        let (b, c, h, w) = x.dims4()?;
        let fill = Tensor::full(
            f32::MIN,
            (b, c, h + 2 * padding, w + 2 * padding),
            x.device(),
        )?
        .to_dtype(x.dtype())?;
        fill.slice_assign(&[0..b, 0..c, padding..padding + h, padding..padding + w], x)?
    } else {
        x.clone()
    };
    x.max_pool2d_with_stride(kernel, stride)
}
