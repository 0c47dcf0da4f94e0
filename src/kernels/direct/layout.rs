//! Where the shifted-frame kernels put things: the padded input planes of a task's images side by side
//! ([`Placement`], [`RowLayout`]), the frame over them ([`FrameShape`]), and the copy of a frame's valid outputs
//! into NCHW with the forward pass's epilogue ([`compact`]).

use super::super::fused::keep_if_positive;
use super::super::geometry::Padding;
use super::{KS, LANES};
use std::mem::MaybeUninit;

pub(crate) fn round_up(n: usize, m: usize) -> usize {
    n.div_ceil(m) * m
}

/// Floats read past the last padded plane by the shifted views: the largest shift plus a frame rounded up to whole
/// vectors.
pub(super) fn slack(wp: usize, frame: usize) -> usize {
    (KS - 1) * wp + KS + round_up(frame, LANES)
}

/// Where a task's planes go in a padded buffer: per channel one plane `wp` wide, `stride` floats apart, holding
/// `imgs` images' `h x w` planes side by side, image `j` at row `top`, column `left + j * col_step`; zeros elsewhere.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placement {
    pub imgs: usize,
    pub h: usize,
    pub w: usize,
    pub top: usize,
    pub left: usize,
    pub col_step: usize,
    pub wp: usize,
    pub stride: usize,
}

/// Where a frame's outputs are: image `j`'s `rows x cols` at position `y * wp + j * col_step + x` of each channel's
/// frame (`frame` floats apart).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FrameShape {
    pub imgs: usize,
    pub wp: usize,
    pub col_step: usize,
    pub rows: usize,
    pub cols: usize,
    pub frame: usize,
}

/// A task's images side by side in one zero-padded plane per channel, and the frame over it.
///
/// `col_step = w + max(left, right)`: one run of zeros between neighbours serves as the right padding of one image
/// and the left padding of the next (a 3x3 tap reaches at most `pad` columns past an edge). Output pixel `(oy, ox)`
/// of image `j` is frame position `oy * wp + j * col_step + ox`; the `col_step - wo` positions after each image's
/// outputs and the frame's rounding are garbage. For 8x8 maps with padding 1, 8 images make a 73-float row and a
/// frame 86% useful, where one image per row is 80%.
#[derive(Clone, Copy, Debug)]
pub(super) struct RowLayout {
    pub input: Placement,
    pub ho: usize,
    pub wo: usize,
    /// Frame positions per channel: `ho * wp` rounded up to whole vectors.
    pub frame: usize,
}

impl RowLayout {
    /// `imgs` images of `h x w` with zero padding `pad` (each side < 3).
    pub(super) fn new(h: usize, w: usize, pad: Padding, imgs: usize) -> Self {
        let sep = pad.left.max(pad.right);
        let col_step = w + sep;
        let wp = pad.left + imgs * col_step - sep + pad.right;
        let hp = h + pad.top + pad.bottom;
        let (ho, wo) = (hp + 1 - KS, w + pad.left + pad.right + 1 - KS);
        Self {
            input: Placement {
                imgs,
                h,
                w,
                top: pad.top,
                left: pad.left,
                col_step,
                wp,
                stride: hp * wp,
            },
            ho,
            wo,
            frame: round_up(ho * wp, LANES),
        }
    }

    pub(super) fn wp(&self) -> usize {
        self.input.wp
    }

    pub(super) fn shape(&self) -> FrameShape {
        FrameShape {
            imgs: self.input.imgs,
            wp: self.input.wp,
            col_step: self.input.col_step,
            rows: self.ho,
            cols: self.wo,
            frame: self.frame,
        }
    }

    /// Floats of a buffer holding `planes` padded planes and the slack the shifted views read past them.
    pub(super) fn buffer_len(&self, planes: usize) -> usize {
        planes * self.input.stride + slack(self.wp(), self.frame)
    }

    /// The outputs' positions in the frame, as a placement (the weight gradient lays the output gradient out so).
    pub(super) fn output(&self) -> Placement {
        Placement {
            imgs: self.input.imgs,
            h: self.ho,
            w: self.wo,
            top: 0,
            left: 0,
            col_step: self.input.col_step,
            wp: self.input.wp,
            stride: self.frame,
        }
    }
}

/// The writes that place one channel as laid out by `p`: `zero(at, len)` for every run no value goes to (the rows
/// above and below, and per row the gaps around each image: zeroing the whole plane and then copying cost a third
/// more), `copy(to, from, len)` for every row of every image (`from` counted from image 0's plane, the next images'
/// `src_img` floats apart). Inlined into each instruction set's `place_plane`.
#[inline(always)]
pub(super) fn place_runs(
    p: &Placement,
    src_img: usize,
    mut zero: impl FnMut(usize, usize),
    mut copy: impl FnMut(usize, usize, usize),
) {
    zero(0, p.top * p.wp);
    let tail = (p.top + p.h) * p.wp;
    zero(tail, p.stride - tail);
    for y in 0..p.h {
        let row = (p.top + y) * p.wp;
        let mut filled = 0;
        for j in 0..p.imgs {
            let at = p.left + j * p.col_step;
            zero(row + filled, at - filled);
            copy(row + at, j * src_img + y * p.w, p.w);
            filled = at + p.w;
        }
        zero(row + filled, p.wp - filled);
    }
}

/// What the forward pass applies to each output value on its way out of the frame.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    /// Per output channel, added first.
    pub bias: Option<&'a [f32]>,
    /// `max(., 0)` after the bias.
    pub relu: bool,
}

impl Epilogue<'_> {
    pub(crate) const NONE: Epilogue<'static> = Epilogue {
        bias: None,
        relu: false,
    };
}

/// What a forward pass fuses around the convolution: `relu` on its input (applied while the input is placed in the
/// padded planes, or as a copy on the im2col path) and the epilogue on its output.
#[derive(Clone, Copy)]
pub(crate) struct Fusion<'a> {
    pub relu_input: bool,
    pub epilogue: Epilogue<'a>,
}

impl Fusion<'_> {
    pub(crate) const NONE: Fusion<'static> = Fusion {
        relu_input: false,
        epilogue: Epilogue::NONE,
    };
}

/// Copies the outputs of `n` channels' frames (`l.frame` floats apart) into NCHW `dst` (the task's images, `img`
/// floats apart; written, never read, so it may be uninitialised), channel `c0 + i` of each image, with the epilogue's bias `bias[c0 + i]` and relu, and zero where
/// `mask` (laid out like `dst`) is not positive: the gradient through a pre-activation relu.
#[allow(clippy::too_many_arguments)]
pub(crate) fn compact(
    frames: &[f32],
    l: &FrameShape,
    n: usize,
    dst: &mut [MaybeUninit<f32>],
    img: usize,
    c0: usize,
    ep: Epilogue<'_>,
    mask: Option<&[f32]>,
) {
    let (wp, step) = (l.wp, l.col_step);
    let plane = l.rows * l.cols;
    for i in 0..n {
        let src = &frames[i * l.frame..][..l.frame];
        let b = ep.bias.map_or(0.0, |b| b[c0 + i]);
        for j in 0..l.imgs {
            let at = j * img + (c0 + i) * plane;
            let out = &mut dst[at..][..plane];
            for y in 0..l.rows {
                let s = &src[y * wp + j * step..][..l.cols];
                let d = &mut out[y * l.cols..][..l.cols];
                if let Some(m) = mask {
                    let m = &m[at + y * l.cols..][..l.cols];
                    for ((d, s), m) in d.iter_mut().zip(s).zip(m) {
                        d.write(keep_if_positive(*s, *m));
                    }
                    continue;
                }
                match (ep.bias.is_some(), ep.relu) {
                    (false, false) => d.iter_mut().zip(s).for_each(|(d, s)| {
                        d.write(*s);
                    }),
                    (_, false) => d.iter_mut().zip(s).for_each(|(d, s)| {
                        d.write(s + b);
                    }),
                    (_, true) => d.iter_mut().zip(s).for_each(|(d, s)| {
                        d.write((s + b).max(0.0));
                    }),
                }
            }
        }
    }
}
