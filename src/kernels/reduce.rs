//! Sums over f32 slices that the compiler can vectorise: `iter().sum::<f32>()` must add in order (float addition
//! is not associative), so it compiles to one scalar add per element, a dependency chain of ~4 cycles each. Sixteen
//! independent partial sums (one vector register) are both faster (the per-channel bias gradient went from ~4% of
//! a training step to noise) and more accurate (pairwise-like instead of one long running sum).

use rayon::prelude::*;

/// Independent partial sums: one AVX-512 register, or two AVX2 ones.
const LANES: usize = 16;

/// Sums `f(x_i, y_i)` over two equally long slices into `LANES` partial sums (slices in `LANES`-wide chunks, so
/// there are no bounds checks in the loop and the compiler vectorises it).
#[inline(always)]
fn lanes_sum2(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let mut acc = [0f32; LANES];
    let (xc, yc) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (xs, ys) in xc.zip(yc) {
        for ((a, xv), yv) in acc.iter_mut().zip(xs).zip(ys) {
            *a += f(*xv, *yv);
        }
    }
    let tail: f32 = xr.iter().zip(yr).map(|(a, b)| f(*a, *b)).sum();
    acc.iter().sum::<f32>() + tail
}

/// `sum(x)`.
pub(crate) fn sum(x: &[f32]) -> f32 {
    lanes_sum2(x, x, |a, _| a)
}

/// `sum(x * y)` over the common length.
pub(crate) fn dot(x: &[f32], y: &[f32]) -> f32 {
    lanes_sum2(x, y, |a, b| a * b)
}

/// `sum((x - c)^2)`.
pub(crate) fn sum_sq_dev(x: &[f32], c: f32) -> f32 {
    lanes_sum2(x, x, |a, _| (a - c) * (a - c))
}

/// `sum((x - c) * y)` over the common length.
pub(crate) fn dot_dev(x: &[f32], c: f32, y: &[f32]) -> f32 {
    lanes_sum2(x, y, |a, b| (a - c) * b)
}

/// `sum_t task(t)` for `t < n_tasks`, each task adding its share of a weight gradient (`len` floats) into the
/// accumulator it is given, in parallel with one accumulator per thread. A fold makes a zeroed accumulator per split
/// and a reduce adds them all, each the size of the whole kernel (4 MiB for a 2048 -> 512 1x1 conv): with a split
/// per few tasks, and a reduce identity per split, that zero-filling and adding was ~3% of an nf_resnet26 step.
pub(crate) fn sum_partials(
    n_tasks: usize,
    len: usize,
    task: impl Fn(&mut [f32], usize) + Sync + Send,
) -> Vec<f32> {
    (0..n_tasks)
        .into_par_iter()
        .with_min_len(n_tasks.div_ceil(rayon::current_num_threads()).max(1))
        .fold(
            || vec![0.0f32; len],
            |mut acc, t| {
                task(&mut acc, t);
                acc
            },
        )
        .reduce_with(|mut a, b| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            a
        })
        .unwrap_or_else(|| vec![0.0f32; len])
}
