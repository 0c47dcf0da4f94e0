//! The geometry of a 2-D convolution (shapes, stride, per-side padding, groups), shared by every convolution path:
//! im2col + gemm (`conv.rs`), the shifted-frame kernels (`direct/`) and the phase-plane stride-2 kernels
//! (`strided.rs`). Each path adds the derived quantities it needs in its own `impl ConvGeom` block.

use candle_core::{bail, Result};

/// The geometry of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub b: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    /// Zero padding before and after the rows (top, bottom) and the columns (left, right).
    pub pad: Padding,
    pub groups: usize,
    pub ho: usize,
    pub wo: usize,
}

/// Zero padding on each side, in pixels (asymmetric for TF-style 'SAME' strided convs on even inputs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Padding {
    pub top: usize,
    pub bottom: usize,
    pub left: usize,
    pub right: usize,
}

impl Padding {
    /// The same padding on all four sides.
    pub fn uniform(p: usize) -> Self {
        Self {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }

    /// The widest of the four sides.
    pub fn max_side(&self) -> usize {
        self.top.max(self.bottom).max(self.left).max(self.right)
    }
}

impl ConvGeom {
    /// Checks the shapes of input `[B, C, H, W]` and kernel `[O, C/groups, kh, kw]`.
    pub fn new(
        x: (usize, usize, usize, usize),
        k: (usize, usize, usize, usize),
        stride: usize,
        pad: Padding,
        groups: usize,
    ) -> Result<Self> {
        let (b, c, h, w) = x;
        let (o, cg, kh, kw) = k;
        if stride == 0 || groups == 0 {
            bail!("conv2d: stride ({stride}) and groups ({groups}) must be at least 1");
        }
        if c != cg * groups || o % groups != 0 {
            bail!("conv2d: input has {c} channels, kernel {o}x{cg}x{kh}x{kw} with {groups} groups does not fit");
        }
        let (hp, wp) = (h + pad.top + pad.bottom, w + pad.left + pad.right);
        if hp < kh || wp < kw || kh == 0 || kw == 0 {
            bail!("conv2d: kernel {kh}x{kw} larger than padded input {h}x{w} (padding {pad:?})");
        }
        let ho = (hp - kh) / stride + 1;
        let wo = (wp - kw) / stride + 1;
        Ok(Self {
            b,
            c,
            h,
            w,
            o,
            kh,
            kw,
            stride,
            pad,
            groups,
            ho,
            wo,
        })
    }

    pub fn out_dims(&self) -> (usize, usize, usize, usize) {
        (self.b, self.o, self.ho, self.wo)
    }
}
