//! candle's composite ops for every fused or custom op of this module: the path on the GPU and for other dtypes,
//! and the oracles the tests compare the custom ops against (re-exported for them by [`super::testing`]).

use super::{ConvFusion, Padding};
use candle_core::{Result, Tensor, D};

/// candle's own ops for [`super::conv2d_padded`]: explicit zero padding, then candle's convolution (the GPU path).
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

/// The composite candle version of [`super::weight_standardize`] (the GPU path, and the tests' reference).
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

/// candle's composite for [`super::scaled_residual`] (the GPU path and the tests' reference).
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

/// candle's composite for [`super::conv2d_fused`] (the GPU path and the tests' reference).
pub fn conv2d_fused_reference(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: Padding,
    groups: usize,
    fusion: ConvFusion,
) -> Result<Tensor> {
    let x = if fusion.relu_input() {
        x.relu()?
    } else {
        x.clone()
    };
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
