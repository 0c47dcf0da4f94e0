//! Gradients: backward with one host copy, micro-batches for accumulation, and the non-finite report.

use super::*;

/// Backward, then one host copy of (loss, correct, per-parameter squared gradient norms).
pub(super) fn backward(fwd: &Forward, params: &[crate::model::Param]) -> Result<Backward> {
    let t = Instant::now();
    let grads = gradients(&fwd.loss, params)?;
    let host = host_copy(fwd, &grads)?;
    Ok(Backward {
        grads,
        host,
        ms: ms(t),
    })
}

/// The detached f32 gradient of `loss` for every parameter (zeros where it has none).
pub(super) fn gradients(loss: &Tensor, params: &[crate::model::Param]) -> Result<Vec<Tensor>> {
    let grads = loss.backward()?;
    params
        .iter()
        .map(|p| {
            // Detached: candle's gradients record the ops that made them (they reference this step's
            // activations), and a momentum buffer built from them would chain every step's graph.
            Ok(match grads.get(p.var.as_tensor()) {
                Some(g) => g.detach().to_dtype(DType::F32)?,
                None => p.var.as_tensor().zeros_like()?.to_dtype(DType::F32)?,
            })
        })
        .collect()
}

/// One host copy of (loss, correct, per-parameter squared gradient norms).
pub(super) fn host_copy(fwd: &Forward, grads: &[Tensor]) -> Result<Vec<f32>> {
    let mut sq = Vec::with_capacity(grads.len() + 2);
    sq.push(fwd.loss.to_dtype(DType::F32)?.reshape(1)?);
    sq.push(fwd.correct.reshape(1)?);
    for g in grads {
        sq.push(g.sqr()?.sum_all()?.reshape(1)?);
    }
    Ok(Tensor::cat(&sq, 0)?.to_vec1::<f32>()?)
}

/// `(start, len)` of `k` micro-batches covering `n` images, sizes differing by at most one.
pub(super) fn micro_batches(n: usize, k: usize) -> Vec<(usize, usize)> {
    let (base, extra) = (n / k, n % k);
    let mut start = 0;
    (0..k)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let range = (start, len);
            start += len;
            range
        })
        .filter(|&(_, len)| len > 0)
        .collect()
}

/// The stochastic-depth seed of micro-batch `micro` of a step whose seed is `seed` (micro-batch 0 keeps it, so
/// `optim.accumulate = 1` draws as before).
pub(super) fn micro_seed(seed: u64, micro: usize) -> u64 {
    seed ^ (micro as u64).wrapping_mul(0xd6e8_feb8_6659_fd93)
}

pub(super) fn describe_non_finite(loss: f64, sq: &[f32], params: &[crate::model::Param]) -> String {
    if !loss.is_finite() {
        return format!("loss = {loss}");
    }
    let bad: Vec<&str> = params
        .iter()
        .zip(sq)
        .filter(|(_, v)| !v.is_finite())
        .map(|(p, _)| p.name.as_str())
        .collect();
    let shown = bad.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    let more = if bad.len() > 5 {
        format!(" and {} more", bad.len() - 5)
    } else {
        String::new()
    };
    format!("gradient of {shown}{more}")
}
