//! Evaluation on the raw or the EMA weights.

use super::*;

/// Which weights an evaluation measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    /// The moving average (the raw weights when there is no EMA).
    Ema,
    /// The weights being trained.
    Raw,
}

impl Weights {
    /// The evaluations `run.eval_weights` asks for, in the order they run (the EMA last, so the run's reported
    /// top-1 is the paper's), given whether an EMA exists.
    pub fn for_run(choice: crate::preset::schema::EvalWeights, has_ema: bool) -> Vec<Weights> {
        use crate::preset::schema::EvalWeights;
        match (choice, has_ema) {
            (_, false) | (EvalWeights::Raw, _) => vec![Weights::Raw],
            (EvalWeights::Ema, true) => vec![Weights::Ema],
            (EvalWeights::Both, true) => vec![Weights::Raw, Weights::Ema],
        }
    }
}

impl StepRunner {
    /// Evaluate on `batches` (EMA weights when EMA is on); one host copy at the end.
    pub fn evaluate(
        &mut self,
        batches: impl Iterator<Item = Result<HostBatch>>,
    ) -> Result<EvalMetrics> {
        self.evaluate_with(batches, Weights::Ema)
    }

    /// Whether an EMA of the weights is kept.
    pub fn has_ema(&self) -> bool {
        self.ema.is_some()
    }

    /// Evaluate `weights` on `batches` (the raw weights when asked for the EMA and there is none); the result says
    /// which were measured.
    pub fn evaluate_with(
        &mut self,
        batches: impl Iterator<Item = Result<HostBatch>>,
        weights: Weights,
    ) -> Result<EvalMetrics> {
        let swapped = match weights {
            Weights::Ema => self.swap_in_ema()?,
            Weights::Raw => None,
        };
        let ema = swapped.is_some();
        let result = self.evaluate_current(batches);
        if let Some(saved) = swapped {
            for (p, t) in self.model.params().iter().zip(saved) {
                p.var.set(&t)?;
            }
        }
        let (loss_sum, top1, top5, images) = result?;
        let denom = images.max(1) as f64;
        Ok(EvalMetrics {
            step: self.step,
            loss: loss_sum / denom,
            top1: top1 / denom,
            top5: top5 / denom,
            images,
            ema,
        })
    }

    pub(super) fn evaluate_current(
        &mut self,
        batches: impl Iterator<Item = Result<HostBatch>>,
    ) -> Result<(f64, f64, f64, usize)> {
        let mut acc: Option<Tensor> = None;
        let mut images = 0;
        let k5 = 5;
        for b in batches {
            let b = b?;
            let x = crate::data::model_input(&b.images, &self.device)?;
            let y = b.labels.to_device(&self.device)?;
            let (logits, _) = self.model.forward(&x, false, false, 0)?;
            let logits = logits.detach();
            let n = b.len();
            let l = (loss::smoothed_cross_entropy(&logits, &y, 0.0)? * n as f64)?;
            let c1 = loss::top_k_correct(&logits, &y, 1)?;
            let c5 = loss::top_k_correct(&logits, &y, k5)?;
            let v = Tensor::stack(&[l.to_dtype(DType::F32)?, c1, c5], 0)?;
            acc = Some(match acc {
                Some(a) => (a + v)?,
                None => v,
            });
            images += n;
        }
        let host = match acc {
            Some(a) => a.to_vec1::<f32>()?,
            None => vec![f32::NAN, 0.0, 0.0],
        };
        Ok((host[0] as f64, host[1] as f64, host[2] as f64, images))
    }

    /// Put the EMA weights into the model, returning the raw weights to restore.
    pub(super) fn swap_in_ema(&mut self) -> Result<Option<Vec<Tensor>>> {
        let Some(ema) = self.ema.as_ref() else {
            return Ok(None);
        };
        let mut saved = Vec::new();
        for (p, s) in self.model.params().iter().zip(ema.shadows()) {
            saved.push(p.var.as_tensor().detach().copy()?);
            p.var.set(s)?;
        }
        Ok(Some(saved))
    }
}
