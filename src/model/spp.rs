//! Signal-propagation statistics (the reference's `signal_metrics`), reduced on the device.
//!
//! For an NCHW activation: `avg_sq_mean` = mean over channels of (channel mean)^2, `avg_var` = mean over channels of
//! the channel's population variance, both over (N, H, W). A block's row is (avg_sq_mean of its output, avg_var of
//! its output, avg_var of its residual branch before stochastic depth and skip gain).

use super::layers::channel_moments;
use super::precision::f32;
use candle_core::{Result, Tensor};

/// Mean over channels of the per-channel variance, a scalar tensor.
pub fn avg_var(x: &Tensor) -> Result<Tensor> {
    let (_, var) = channel_moments(&f32(x)?)?;
    var.mean_all()
}

/// Mean over channels of the squared per-channel mean, a scalar tensor.
pub fn avg_sq_mean(x: &Tensor) -> Result<Tensor> {
    let (mean, _) = channel_moments(&f32(x)?)?;
    mean.sqr()?.mean_all()
}

/// One block's `[3]` row: (avg_sq_mean, avg_var) of the stream `h` and the branch's `res_avg_var`.
pub fn block_row(h: &Tensor, res_avg_var: &Tensor) -> Result<Tensor> {
    let h = f32(&h.detach())?;
    let (mean, var) = channel_moments(&h)?;
    Tensor::stack(
        &[
            mean.sqr()?.mean_all()?,
            var.mean_all()?,
            res_avg_var.clone(),
        ],
        0,
    )
}
