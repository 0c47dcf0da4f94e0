//! What the tests (`tests/kernels_*.rs`) and the benchmarks (`benches/conv.rs`) call besides the public entry
//! points, in one place and hidden from the documentation: not part of the library's API.
//!
//! - the oracles: candle's composite ops for every custom op (`*_reference`, also the GPU path), and the im2col +
//!   gemm convolutions that the shifted-frame kernels are checked against (`*_im2col`);
//! - the slice-level convolution kernels with their geometry ([`ConvGeom`]), which the benchmark times without a
//!   tensor around them, and which path a geometry takes (`conv2d_uses_shifted_frames`, `conv2d_shifted_frames`).

pub use super::conv::{
    conv2d_forward, conv2d_forward_im2col, conv2d_input_grad, conv2d_input_grad_im2col,
    conv2d_weight_grad, conv2d_weight_grad_im2col,
};
use super::direct::{self, Fusion};
pub use super::geometry::ConvGeom;
pub use super::reference::{
    conv2d_fused_reference, conv2d_padded_reference, conv2d_reference, max_pool2d_padded_reference,
    max_pool2d_reference, scaled_residual_reference, weight_standardize_reference,
};
use super::strided;

/// The shifted-frame kernels (3x3, AVX-512 or AVX2 + FMA; stride 1 in `direct/`, stride 2 on phase planes in `strided.rs`) for
/// all three passes, whether or not the convolutions would pick them for `geo`: `None` where they cannot run.
pub fn conv2d_shifted_frames(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    geo: &ConvGeom,
) -> Option<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    if direct::supports(geo) {
        return Some((
            direct::forward(x, w, geo, Fusion::NONE),
            direct::input_grad(dy, w, geo, None),
            direct::weight_grad(x, dy, geo, false),
        ));
    }
    strided::supports(geo).then(|| {
        (
            strided::forward(x, w, geo, Fusion::NONE),
            strided::input_grad(dy, w, geo, None),
            strided::weight_grad(x, dy, geo, false),
        )
    })
}

/// True when the convolutions run `geo` on the shifted-frame kernels (stride 1 or 2).
pub fn conv2d_uses_shifted_frames(geo: &ConvGeom) -> bool {
    direct::applies(geo) || strided::applies(geo)
}
