//! Stride-2 3x3 convolutions on phase planes (AVX-512 or AVX2 + FMA, through the micro-kernels of `direct/`): the
//! strided counterpart of the shifted frames in `direct/`, for the first convolution of every downsampling stage.
//!
//! Split the zero-padded input into its four phases `P_ab[i][j] = xp[2i + a][2j + b]` (`a`, `b` in {0, 1}). Tap
//! `(ki, kj)` of output `(oy, ox)` reads `xp[2oy + ki][2ox + kj] = P_{ki%2, kj%2}[oy + ki/2][ox + kj/2]`: a stride-1
//! view of one phase plane at the constant offset `(ki/2) * wp + kj/2`. So the forward pass is nine shifted
//! products over the four phase planes of each channel, on the stride-1 micro-kernels, and the weight gradient
//! nine shifted dot products. The input gradient splits by phase the other way round: phase `(a, b)` of the
//! padded input's gradient collects the taps with `ki % 2 == a` and `kj % 2 == b` (4, 2, 2 and 1 of them), each a
//! stride-1 view of the output gradient padded by one row and column, and the four results interleave back into
//! `dx`. Every input value is copied once (into its phase), where im2col copied it 9/4 times and col2im added it
//! back as often.

use super::direct::{
    compact, images_per_row_of, pack_forward, place_planes, round_up, shifted_dot, shifted_gemm,
    supports_stride, FrameShape, Fusion, Placement, Taps, KS, LANES, MIN_FRAME_EFFICIENCY, TAPS,
};
use super::fused::keep_if_positive;
use super::geometry::ConvGeom;
use super::par_fill;
use super::reduce::sum_partials;
use super::scratch::with_scratch;
use std::mem::MaybeUninit;

/// True when `geo` can run here: a 3x3 stride-2 convolution with at most 2 pixels of padding per side, on a CPU with
/// AVX-512 or AVX2 + FMA.
pub(crate) fn supports(geo: &ConvGeom) -> bool {
    supports_stride(geo, 2)
}

/// True when the convolutions use this path for `geo`: [`supports`] it and the frame is useful enough (the rule of
/// the stride-1 path: 16 and 8 px outputs qualify, 4x4 and 2x2 do not).
pub(crate) fn applies(geo: &ConvGeom) -> bool {
    if !supports(geo) {
        return false;
    }
    let l = PhaseLayout::new(geo, images_per_row_of(geo.wo + 1, geo.b));
    let useful = (l.imgs * geo.ho * geo.wo) as f64 / l.frame as f64;
    useful >= MIN_FRAME_EFFICIENCY
}

/// Tap offsets of a stride-2 3x3 kernel over a channel's four phase planes (`phase` floats apart, `wp` wide).
#[derive(Clone, Copy)]
struct Stride2 {
    wp: usize,
    phase: usize,
}

impl Taps for Stride2 {
    #[inline(always)]
    fn offset(&self, t: usize) -> usize {
        let (ki, kj) = (t / KS, t % KS);
        ((ki % 2) * 2 + kj % 2) * self.phase + (ki / 2) * self.wp + kj / 2
    }
}

/// A task's images side by side in four phase planes per channel, and the output frame over them.
///
/// Image `j`'s phases occupy columns `j * col_step ..` (`col_step = wo + 1`: a tap reaches one column past an
/// output, still inside the image's own phase plane, so no gap is needed). Output `(oy, ox)` of image `j` is frame
/// position `oy * wp + j * col_step + ox`.
#[derive(Clone, Copy, Debug)]
struct PhaseLayout {
    imgs: usize,
    col_step: usize,
    wp: usize,
    /// Floats per phase plane: `ho + 1` rows (taps reach one row below an output) of `wp`.
    phase: usize,
    frame: usize,
}

impl PhaseLayout {
    fn new(geo: &ConvGeom, imgs: usize) -> Self {
        let col_step = geo.wo + 1;
        let wp = imgs * col_step;
        Self {
            imgs,
            col_step,
            wp,
            phase: (geo.ho + 1) * wp,
            frame: round_up(geo.ho * wp, LANES),
        }
    }

    /// Floats between channels: four phase planes.
    fn channel(&self) -> usize {
        4 * self.phase
    }

    /// A buffer of `chans` channels and the slack the views read past the last one.
    fn buffer_len(&self, chans: usize) -> usize {
        chans * self.channel() + self.wp + KS + LANES
    }

    fn taps(&self) -> Stride2 {
        Stride2 {
            wp: self.wp,
            phase: self.phase,
        }
    }

    fn shape(&self, geo: &ConvGeom) -> FrameShape {
        FrameShape {
            imgs: self.imgs,
            wp: self.wp,
            col_step: self.col_step,
            rows: geo.ho,
            cols: geo.wo,
            frame: self.frame,
        }
    }
}

/// Splits `chans` channels of the task's NCHW images (`src`) into their zero-padded phase planes in `dst`
/// (`max(v, 0)` of each value when `relu`); zeros the slack after the last channel.
fn place_phases(
    src: &[f32],
    chans: usize,
    geo: &ConvGeom,
    l: &PhaseLayout,
    dst: &mut [f32],
    relu: bool,
) {
    let (h, w) = (geo.h, geo.w);
    let (pt, pl) = (geo.pad.top, geo.pad.left);
    let hw = h * w;
    let f = |v: f32| if relu { v.max(0.0) } else { v };
    for k in 0..chans {
        for (ph, plane) in dst[k * l.channel()..][..l.channel()]
            .chunks_mut(l.phase)
            .enumerate()
        {
            let (a, b) = (ph / 2, ph % 2);
            for (i, row) in plane.chunks_mut(l.wp).enumerate() {
                // Padded row 2i + a is input row 2i + a - pt, when that lies inside the image.
                let r = (2 * i + a).checked_sub(pt).filter(|&r| r < h);
                for j in 0..l.imgs {
                    let seg = &mut row[j * l.col_step..][..l.col_step];
                    let Some(r) = r else {
                        seg.fill(0.0);
                        continue;
                    };
                    let srow = &src[(j * chans + k) * hw + r * w..][..w];
                    for (jj, v) in seg.iter_mut().enumerate() {
                        *v = match (2 * jj + b).checked_sub(pl) {
                            Some(c) if c < w => f(srow[c]),
                            _ => 0.0,
                        };
                    }
                }
            }
        }
    }
    dst[chans * l.channel()..].fill(0.0);
}

/// Forward pass `out[B, O, Ho, Wo]` of `relu(x)` when `fusion.relu_input`, else of `x` (`supports(geo)` must hold), with
/// `fusion.epilogue` applied.
pub(crate) fn forward(x: &[f32], w: &[f32], geo: &ConvGeom, fusion: Fusion<'_>) -> Vec<f32> {
    let (cg, og) = (geo.c / geo.groups, geo.o / geo.groups);
    let packed = pack_forward(w, geo);
    let imgs = images_per_row_of(geo.wo + 1, geo.b);
    let (chw, out_img) = (geo.c * geo.h * geo.w, geo.o * geo.ho * geo.wo);
    // Every output value is written by `compact`, as on the stride-1 path.
    // SAFETY: the tasks write all `b * out_img` values.
    unsafe {
        par_fill(geo.b * out_img, imgs * out_img, |at, ob| {
            let t = at / (imgs * out_img);
            let n = ob.len() / out_img;
            let l = PhaseLayout::new(geo, n);
            let offs: [usize; TAPS] = std::array::from_fn(|t| l.taps().offset(t));
            with_scratch(l.buffer_len(geo.c), og * l.frame, |xp, fr| {
                let src = &x[t * imgs * chw..][..n * chw];
                place_phases(src, geo.c, geo, &l, xp, fusion.relu_input);
                for g in 0..geo.groups {
                    shifted_gemm(
                        &xp[g * cg * l.channel()..],
                        l.channel(),
                        cg,
                        &offs,
                        &packed[g * TAPS * cg * og..][..TAPS * cg * og],
                        og,
                        fr,
                        l.frame,
                    );
                    compact(
                        fr,
                        &l.shape(geo),
                        og,
                        ob,
                        out_img,
                        g * og,
                        fusion.epilogue,
                        None,
                    );
                }
            });
        })
    }
}

/// Weight gradient `dw[O, C/groups, 3, 3]` of a convolution of `relu(x)` when `relu_input`, else of `x`
/// (`supports(geo)` must hold).
pub(crate) fn weight_grad(x: &[f32], dy: &[f32], geo: &ConvGeom, relu_input: bool) -> Vec<f32> {
    let (cg, og) = (geo.c / geo.groups, geo.o / geo.groups);
    let imgs = images_per_row_of(geo.wo + 1, geo.b);
    let (chw, ohw) = (geo.c * geo.h * geo.w, geo.o * geo.ho * geo.wo);
    let n_tasks = geo.b.div_ceil(imgs);
    let dw_len = geo.o * cg * TAPS;
    sum_partials(n_tasks, dw_len, |acc, t| {
        let n = imgs.min(geo.b - t * imgs);
        let l = PhaseLayout::new(geo, n);
        // The output gradient in the frame's layout, garbage positions zero so they add nothing.
        let dy_place = Placement {
            imgs: n,
            h: geo.ho,
            w: geo.wo,
            top: 0,
            left: 0,
            col_step: l.col_step,
            wp: l.wp,
            stride: l.frame,
        };
        with_scratch(l.buffer_len(geo.c), geo.o * l.frame, |xp, dyf| {
            let src = &x[t * imgs * chw..][..n * chw];
            place_phases(src, geo.c, geo, &l, xp, relu_input);
            place_planes(
                &dy[t * imgs * ohw..][..n * ohw],
                geo.o,
                &dy_place,
                dyf,
                false,
            );
            for g in 0..geo.groups {
                shifted_dot(
                    &xp[g * cg * l.channel()..],
                    l.channel(),
                    cg,
                    l.taps(),
                    &dyf[g * og * l.frame..],
                    og,
                    l.frame,
                    &mut acc[g * og * cg * TAPS..][..og * cg * TAPS],
                );
            }
        });
    })
}

/// The taps `(ki, kj)` that land on phase `ph = 2a + b` of the padded input: `ki % 2 == a`, `kj % 2 == b`.
fn phase_taps(ph: usize) -> impl Iterator<Item = (usize, usize)> {
    let (a, b) = (ph / 2, ph % 2);
    (a..KS)
        .step_by(2)
        .flat_map(move |ki| (b..KS).step_by(2).map(move |kj| (ki, kj)))
}

/// The input-gradient kernel of phase `ph`, per group `[tap][o][c]` over that phase's taps.
fn pack_phase(w: &[f32], geo: &ConvGeom, ph: usize) -> Vec<f32> {
    let (cg, og) = (geo.c / geo.groups, geo.o / geo.groups);
    let taps: Vec<(usize, usize)> = phase_taps(ph).collect();
    let per_group = taps.len() * og * cg;
    let mut p = vec![0.0f32; geo.groups * per_group];
    for g in 0..geo.groups {
        for (t, &(ki, kj)) in taps.iter().enumerate() {
            for o in 0..og {
                for c in 0..cg {
                    p[g * per_group + (t * og + o) * cg + c] =
                        w[((g * og + o) * cg + c) * TAPS + ki * KS + kj];
                }
            }
        }
    }
    p
}

/// Input gradient `dx[B, C, H, W]` (`supports(geo)` must hold), zero where `mask` (`[B, C, H, W]`, the input of a
/// convolution of `relu(x)`) is not positive.
pub(crate) fn input_grad(dy: &[f32], w: &[f32], geo: &ConvGeom, mask: Option<&[f32]>) -> Vec<f32> {
    let (cg, og) = (geo.c / geo.groups, geo.o / geo.groups);
    let packed: [Vec<f32>; 4] = std::array::from_fn(|ph| pack_phase(w, geo, ph));
    // Phase planes of the padded input's gradient, covering every input pixel: `ceil((H + top) / 2)` rows,
    // `ceil((W + left) / 2)` columns per image, plus the one-column left pad of the output gradient.
    let (hq, wq) = (
        (geo.h + geo.pad.top).div_ceil(2),
        (geo.w + geo.pad.left).div_ceil(2),
    );
    let col_step = wq + 1;
    let imgs = images_per_row_of(col_step, geo.b);
    let (chw, ohw) = (geo.c * geo.h * geo.w, geo.o * geo.ho * geo.wo);
    // Every value is written by `scatter_phases`, as in `forward`.
    // SAFETY: the tasks write all `b * chw` values (every input pixel lies in exactly one phase).
    unsafe {
        par_fill(geo.b * chw, imgs * chw, |at, dxb| {
            let t = at / (imgs * chw);
            let n = dxb.len() / chw;
            let wp = n * col_step;
            // dy shifted one row down and one column right: tap (ki, kj) of phase cell (i, j) reads dy at
            // (i - ki/2, j - kj/2), i.e. this buffer at (i + 1 - ki/2, j + 1 - kj/2).
            let place = Placement {
                imgs: n,
                h: geo.ho,
                w: geo.wo,
                top: 1,
                left: 1,
                col_step,
                wp,
                stride: (hq + 1) * wp,
            };
            let frame = round_up(hq * wp, LANES);
            let dyp_len = geo.o * place.stride + wp + KS + frame;
            with_scratch(dyp_len, 4 * cg * frame, |dyp, fr| {
                place_planes(&dy[t * imgs * ohw..][..n * ohw], geo.o, &place, dyp, false);
                let mask = mask.map(|m| &m[t * imgs * chw..][..n * chw]);
                let offs: [Vec<usize>; 4] = std::array::from_fn(|ph| {
                    phase_taps(ph)
                        .map(|(ki, kj)| (1 - ki / 2) * wp + (1 - kj / 2))
                        .collect()
                });
                for g in 0..geo.groups {
                    for (ph, fr_ph) in fr.chunks_mut(cg * frame).enumerate() {
                        let offs = &offs[ph];
                        let per_group = offs.len() * og * cg;
                        shifted_gemm(
                            &dyp[g * og * place.stride..],
                            place.stride,
                            og,
                            offs,
                            &packed[ph][g * per_group..][..per_group],
                            cg,
                            fr_ph,
                            frame,
                        );
                    }
                    let shape = PhaseFrames {
                        imgs: n,
                        wp,
                        col_step,
                        frame,
                    };
                    scatter_phases(fr, &shape, geo, cg, dxb, g * cg, mask);
                }
            });
        })
    }
}

/// Where the input gradient's four phase frames are: phase `ph` of channel `c` at `(ph * chans + c) * frame`,
/// cell `(i, j)` of image `k` at `i * wp + k * col_step + j`.
struct PhaseFrames {
    imgs: usize,
    wp: usize,
    col_step: usize,
    frame: usize,
}

/// Interleaves the four phase frames of `n` channels back into NCHW `dx` (the task's images, channels `c0..`):
/// input pixel `(y, x)` is cell `((y + top) / 2, (x + left) / 2)` of phase `((y + top) % 2, (x + left) % 2)`;
/// zero where `mask` is not positive.
fn scatter_phases(
    fr: &[f32],
    s: &PhaseFrames,
    geo: &ConvGeom,
    n: usize,
    dst: &mut [MaybeUninit<f32>],
    c0: usize,
    mask: Option<&[f32]>,
) {
    let (h, w) = (geo.h, geo.w);
    let (pt, pl) = (geo.pad.top, geo.pad.left);
    let chw = geo.c * h * w;
    for c in 0..n {
        for k in 0..s.imgs {
            for y in 0..h {
                let (a, i) = ((y + pt) % 2, (y + pt) / 2);
                let rows: [&[f32]; 2] = std::array::from_fn(|b| {
                    &fr[((2 * a + b) * n + c) * s.frame + i * s.wp + k * s.col_step..][..s.col_step]
                });
                let at = k * chw + ((c0 + c) * h + y) * w;
                let out = &mut dst[at..][..w];
                for (x, d) in out.iter_mut().enumerate() {
                    let p = x + pl;
                    let v = rows[p % 2][p / 2];
                    d.write(mask.map_or(v, |m| keep_if_positive(v, m[at + x])));
                }
            }
        }
    }
}
