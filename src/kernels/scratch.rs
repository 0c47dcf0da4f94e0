//! Per-thread scratch buffers reused across calls, so the im2col / gather buffers of every layer are allocated
//! (and page-faulted) once per thread instead of once per layer and step.

use std::cell::RefCell;

#[derive(Default)]
struct Buffers {
    bufs: [Vec<f32>; 2],
}

thread_local! {
    static SCRATCH: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// Runs `f` with two scratch slices of at least `len_a` and `len_b` floats (contents unspecified).
///
/// Re-entrant calls (e.g. from a rayon job stolen while a kernel waits) get fresh buffers instead of panicking.
pub fn with_scratch<R>(
    len_a: usize,
    len_b: usize,
    f: impl FnOnce(&mut [f32], &mut [f32]) -> R,
) -> R {
    let mut f = Some(f);
    let reused = SCRATCH.with(|cell| {
        let mut guard = cell.try_borrow_mut().ok()?;
        let [a, b] = &mut guard.bufs;
        grow(a, len_a);
        grow(b, len_b);
        let f = f.take()?;
        Some(f(&mut a[..len_a], &mut b[..len_b]))
    });
    match reused {
        Some(r) => r,
        None => {
            let mut a = vec![0.0; len_a];
            let mut b = vec![0.0; len_b];
            match f.take() {
                Some(f) => f(&mut a, &mut b),
                None => unreachable!("scratch closure consumed without a result"),
            }
        }
    }
}

fn grow(v: &mut Vec<f32>, len: usize) {
    if v.len() < len {
        v.resize(len, 0.0);
    }
}
