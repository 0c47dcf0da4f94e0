//! One training step, usable with or without the trainer thread (the benchmark drives it directly):
//! forward -> label-smoothed loss -> backward -> finiteness check -> AGC -> SGD (coupled decay, Nesterov) -> EMA,
//! with per-layer statistics gathered on the device and copied to the host in one batch when asked.

use super::messages::{
    AgcLayerStats, EvalMetrics, LayerStats, LiveParam, SppBlockStats, Throughput,
};
use super::parts::TrainModel;
use super::source::{HostBatch, SourceInfo};
use super::state::{LiveValues, TrainMeta, TrainState, STATE_FORMAT};
use super::{Result, TrainError};
use crate::optim::agc::{self, AgcStatsRow, STATS_LEN};
use crate::optim::loss::{LossKind, Mix, Targets};
use crate::optim::{loss, Ema, EmaSchedule, LrSchedule, Sgd, SgdConfig};
use crate::preset::Preset;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::time::Instant;

mod checkpoint_state;
mod eval;
mod grads;
mod stats;

pub use eval::Weights;
use grads::{backward, describe_non_finite, gradients, host_copy, micro_batches, micro_seed};

/// What one step did.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    /// The step that ran, numbered from 1 (= steps done after it).
    pub step: u64,
    pub loss: f64,
    /// Training top-1 of the batch, as a fraction.
    pub train_top1: f64,
    pub batch: usize,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// The learning rate used (schedule x lr_scale).
    pub lr: f64,
    /// False when the loss or a gradient was not finite: the update was skipped.
    pub finite: bool,
    /// What was not finite (loss, or the parameters whose gradients were), when `finite` is false.
    pub non_finite: String,
    /// Fraction of all AGC units clipped (NaN unless statistics were gathered this step).
    pub clipped_fraction: f64,
    pub stats: Option<LayerStats>,
    pub timings: Throughput,
}

/// The model with its optimiser state, schedule and live hyperparameters.
pub struct StepRunner {
    model: Box<dyn TrainModel>,
    device: Device,
    sgd: Sgd,
    ema: Option<Ema>,
    schedule: LrSchedule,
    live: LiveValues,
    agc_eps: f64,
    loss_kind: LossKind,
    /// Micro-batches per step (`optim.accumulate`).
    accumulate: usize,
    excluded: Vec<bool>,
    /// Frozen parameters and learning-rate multipliers (fine-tuning).
    groups: crate::optim::ParamGroups,
    batch_size: usize,
    /// Steps completed: the next step to run.
    step: u64,
    seed: u64,
    images_seen: u64,
    consecutive_bad: u32,
}

/// What the forward phase hands on.
struct Forward {
    loss: Tensor,
    correct: Tensor,
    spp: Option<Tensor>,
}

/// What the backward phase hands on: detached f32 gradients in parameter order and one host copy of
/// (loss, correct, per-parameter squared gradient norms).
struct Backward {
    grads: Vec<Tensor>,
    host: Vec<f32>,
    ms: f64,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Per-step seed for stochastic depth and dropout, derived from (seed, step) so a resumed run repeats it.
fn step_seed(seed: u64, step: u64) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ step.wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

impl StepRunner {
    /// Set up optimiser, EMA and schedule for `model` trained with `preset` on data shaped like `info`.
    pub fn new(
        model: Box<dyn TrainModel>,
        device: Device,
        preset: &Preset,
        info: &SourceInfo,
    ) -> Result<Self> {
        let params = model.params();
        let excluded = params
            .iter()
            .map(|p| agc::is_excluded(&p.name, &preset.agc.exclude))
            .collect();
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        let groups = crate::optim::ParamGroups::new(
            &names,
            &preset.model.freeze,
            preset.model.head_lr_multiplier,
        )?;
        let sgd = Sgd::new(
            params.len(),
            SgdConfig {
                momentum: preset.optim.momentum,
                nesterov: preset.optim.nesterov,
                weight_decay: preset.optim.weight_decay,
            },
        );
        let ema = if preset.optim.ema_decay > 0.0 {
            let vars: Vec<_> = params.iter().map(|p| &p.var).collect();
            let schedule = EmaSchedule {
                decay: preset.optim.ema_decay,
                warmup: preset.optim.ema_warmup,
                start: preset.optim.ema_start,
            };
            Some(Ema::with_schedule(schedule, &vars)?)
        } else {
            None
        };
        let batch = preset.data.batch_size;
        let schedule = LrSchedule::new(
            LrSchedule::peak_lr(preset.optim.lr, batch),
            LrSchedule::warmup_steps(preset.optim.warmup_epochs, info.train_images, batch),
            preset.run.steps,
        );
        Ok(Self {
            model,
            device,
            sgd,
            ema,
            schedule,
            live: LiveValues::from_preset(preset),
            agc_eps: preset.agc.eps,
            loss_kind: preset.optim.loss,
            accumulate: preset.optim.accumulate.max(1),
            excluded,
            groups,
            batch_size: batch,
            step: 0,
            seed: preset.run.seed,
            images_seen: 0,
            consecutive_bad: 0,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn schedule(&self) -> &LrSchedule {
        &self.schedule
    }

    /// The model's architecture name.
    pub fn model_name(&self) -> String {
        self.model.name()
    }

    /// The live hyperparameters in force.
    pub fn live(&self) -> &LiveValues {
        &self.live
    }

    /// Steps completed: the next step to run.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Training images consumed so far.
    pub fn images_seen(&self) -> u64 {
        self.images_seen
    }

    /// Consecutive steps whose loss or gradients were not finite.
    pub fn consecutive_bad(&self) -> u32 {
        self.consecutive_bad
    }

    /// Forget the run of non-finite steps (on resume after divergence).
    pub fn reset_bad_steps(&mut self) {
        self.consecutive_bad = 0;
    }

    /// The learning rate the next step will use.
    pub fn current_lr(&self) -> f64 {
        self.schedule.at(self.step) * self.live.lr_scale
    }

    /// Number of scalar parameters.
    pub fn param_count(&self) -> usize {
        self.model.params().iter().map(|p| p.var.elem_count()).sum()
    }

    /// Whether AGC skips parameter `index` (the exclusion list).
    pub fn is_excluded(&self, index: usize) -> bool {
        self.excluded.get(index).copied().unwrap_or(false)
    }

    /// Apply one live change, checked against the preset's rule for its key; an `Err` is the reason it was
    /// rejected (and nothing changed).
    pub fn apply_live(&mut self, p: LiveParam) -> std::result::Result<(), String> {
        p.check()?;
        self.take_effect(p).map_err(|e| super::error_chain(&e))?;
        self.live.set(p);
        Ok(())
    }

    /// What a live value does beyond being read from [`LiveValues`] where it is used: the parts of the runner
    /// built from it. Parameters read straight from `self.live` in the step have nothing to do here.
    fn take_effect(&mut self, p: LiveParam) -> Result<()> {
        match p {
            LiveParam::Alpha(v) => self.model.set_alpha(v)?,
            LiveParam::Lr(v) => self.schedule.peak = LrSchedule::peak_lr(v, self.batch_size),
            LiveParam::WeightDecay(v) => self.sgd.config.weight_decay = v,
            LiveParam::Momentum(v) => self.sgd.config.momentum = v,
            _ => {}
        }
        Ok(())
    }

    /// Whether the step about to run gathers statistics.
    pub fn stats_due(&self) -> bool {
        self.step.is_multiple_of(self.live.stats_every.max(1))
    }

    fn sync(&self, on: bool) -> Result<()> {
        if on {
            self.device.synchronize()?;
        }
        Ok(())
    }

    /// Run one step on `batch`. `want_stats` gathers per-layer statistics; `timed` synchronises the device between
    /// phases so the split timings are exact (CPU work is synchronous anyway).
    pub fn run_step(
        &mut self,
        batch: &HostBatch,
        want_stats: bool,
        timed: bool,
    ) -> Result<StepOutcome> {
        let t_step = Instant::now();
        // Steps are numbered from 1 in events: step k is the k-th update, after which k steps are done.
        let step = self.step + 1;
        let n = batch.len();
        let params = self.model.params().to_vec();
        let (fwd, bwd, forward_ms) = self.forward_backward(batch, &params, want_stats, timed)?;
        let (loss_v, correct_v) = (bwd.host[0] as f64, bwd.host[1] as f64);
        let grad_sq: f64 = bwd.host[2..].iter().map(|&v| v as f64).sum();
        let lr = self.current_lr();
        let mut out = StepOutcome {
            step,
            loss: loss_v,
            train_top1: if n > 0 { correct_v / n as f64 } else { 0.0 },
            batch: n,
            grad_norm: grad_sq.sqrt(),
            lr,
            finite: true,
            non_finite: String::new(),
            clipped_fraction: f64::NAN,
            stats: None,
            timings: Throughput::default(),
        };
        self.step += 1;
        self.images_seen += n as u64;
        if !loss_v.is_finite() || !grad_sq.is_finite() {
            out.finite = false;
            out.non_finite = describe_non_finite(loss_v, &bwd.host[2..], &params);
            self.consecutive_bad += 1;
            out.timings = self.throughput(step, n, t_step, [forward_ms, bwd.ms, 0.0, 0.0, 0.0]);
            return Ok(out);
        }
        self.consecutive_bad = 0;

        let ((clipped, rows), agc_ms) =
            self.phase(timed, |r| r.clip(&params, bwd.grads, want_stats))?;
        let ((), optimizer_ms) = self.phase(timed, |r| r.update(&params, &clipped, lr))?;
        // Statistics: one host copy of every row and the spp tensor (the copy waits for the device by itself).
        let (stats, stats_ms) = self.phase(false, |r| {
            want_stats
                .then(|| r.gather_stats(step, &rows, fwd.spp.as_ref()))
                .transpose()
        })?;
        if let Some(stats) = stats {
            out.clipped_fraction = stats.total_clipped_fraction;
            out.stats = Some(stats);
        }
        let phases = [forward_ms, bwd.ms, agc_ms, optimizer_ms, stats_ms];
        out.timings = self.throughput(step, n, t_step, phases);
        Ok(out)
    }

    /// Run one phase of a step; returns its result and its milliseconds (the device synchronised before the clock
    /// stops when `timed`).
    fn phase<T>(
        &mut self,
        timed: bool,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<(T, f64)> {
        let t = Instant::now();
        let value = f(self)?;
        self.sync(timed)?;
        Ok((value, ms(t)))
    }

    /// Forward, loss and backward over `optim.accumulate` micro-batches: each micro-batch's mean loss is weighted
    /// by its share of the batch, so the summed gradient (and loss and correct count) is exactly the whole batch's
    /// mean; AGC and the update then run once on it, as for one large batch. Statistics (the spp tensor) come from
    /// the first micro-batch.
    fn forward_backward(
        &mut self,
        batch: &HostBatch,
        params: &[crate::model::Param],
        want_stats: bool,
        timed: bool,
    ) -> Result<(Forward, Backward, f64)> {
        let n = batch.len();
        let k = self.accumulate.clamp(1, n.max(1));
        if k == 1 {
            let (fwd, forward_ms) = self.phase(timed, |r| r.forward_loss(batch, want_stats, 0))?;
            let bwd = backward(&fwd, params)?;
            return Ok((fwd, bwd, forward_ms));
        }
        let (mut forward_ms, mut backward_ms) = (0.0, 0.0);
        let mut total: Option<(Forward, Vec<Tensor>)> = None;
        for (micro, (start, len)) in micro_batches(n, k).into_iter().enumerate() {
            let part = batch.slice(start, len)?;
            let stats = want_stats && micro == 0;
            let (mut fwd, ms_f) = self.phase(timed, |r| r.forward_loss(&part, stats, micro))?;
            fwd.loss = (fwd.loss * (len as f64 / n as f64))?;
            let t = Instant::now();
            let grads = gradients(&fwd.loss, params)?;
            forward_ms += ms_f;
            backward_ms += ms(t);
            total = Some(match total {
                None => (fwd, grads),
                Some((acc, acc_grads)) => {
                    let summed = acc_grads
                        .iter()
                        .zip(&grads)
                        .map(|(a, g)| a + g)
                        .collect::<candle_core::Result<Vec<_>>>()?;
                    let loss = (acc.loss.detach() + fwd.loss.detach())?;
                    let correct = (acc.correct + fwd.correct)?;
                    (
                        Forward {
                            loss,
                            correct,
                            spp: acc.spp,
                        },
                        summed,
                    )
                }
            });
        }
        let (fwd, grads) = total.ok_or_else(|| TrainError::Config {
            field: "optim.accumulate".into(),
            reason: "a step needs at least one image".into(),
        })?;
        let t = Instant::now();
        let host = host_copy(&fwd, &grads)?;
        let bwd = Backward {
            grads,
            host,
            ms: backward_ms + ms(t),
        };
        Ok((fwd, bwd, forward_ms))
    }

    /// Forward and loss; `micro` numbers the micro-batch within the step (its stochastic-depth seed).
    fn forward_loss(
        &mut self,
        batch: &HostBatch,
        want_stats: bool,
        micro: usize,
    ) -> Result<Forward> {
        let x = crate::data::model_input(&batch.images, &self.device)?;
        let y = batch.labels.to_device(&self.device)?;
        let mix = match &batch.mix {
            Some(m) => Some((
                m.labels_b.to_device(&self.device)?,
                m.weight_a.to_device(&self.device)?,
            )),
            None => None,
        };
        let targets = Targets {
            labels: &y,
            mix: mix
                .as_ref()
                .map(|(labels_b, weight_a)| Mix { labels_b, weight_a }),
        };
        let (logits, spp) = self.model.forward(
            &x,
            true,
            want_stats,
            micro_seed(step_seed(self.seed, self.step), micro),
        )?;
        let loss = loss::loss(self.loss_kind, &logits, targets, self.live.label_smoothing)?;
        // Mixed images count as correct when the top class is their dominant label (the TUI's title says so).
        let correct = loss::top_k_correct(&logits, &loss::dominant_labels(targets)?, 1)?;
        Ok(Forward { loss, correct, spp })
    }

    /// AGC (before decay and momentum), statistics rows on the device: the gradients to apply, and the rows.
    fn clip(
        &self,
        params: &[crate::model::Param],
        grads: Vec<Tensor>,
        want_stats: bool,
    ) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        let mut rows = Vec::new();
        let mut clipped = Vec::with_capacity(grads.len());
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            let w = p.var.as_tensor();
            if self.groups.frozen(i) {
                // Frozen: never updated, so neither clipped nor measured (a NaN row keeps the rows aligned).
                if want_stats {
                    rows.push(Tensor::full(f32::NAN, STATS_LEN, w.device())?);
                }
                clipped.push(g);
                continue;
            }
            let applies = self.live.agc_enabled && !self.is_excluded(i);
            if applies {
                let (cg, row) =
                    agc::clip_with_stats(w, &g, self.live.agc_lambda, self.agc_eps, want_stats)?;
                rows.extend(row);
                clipped.push(cg);
            } else {
                if want_stats {
                    rows.push(agc::stats_only(w, &g, self.live.agc_lambda, self.agc_eps)?);
                }
                clipped.push(g);
            }
        }
        Ok((clipped, rows))
    }

    /// Optimiser and EMA.
    fn update(&mut self, params: &[crate::model::Param], grads: &[Tensor], lr: f64) -> Result<()> {
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            if self.groups.frozen(i) {
                continue;
            }
            let lr = lr * self.groups.lr_multiplier(i);
            self.sgd.update(i, &p.var, p.kind.decays(), g, lr)?;
        }
        if let Some(ema) = self.ema.as_mut() {
            let vars: Vec<_> = params.iter().map(|p| &p.var).collect();
            // The steps done before this update: DeepMind's `global_step` in `tf1_ema`.
            ema.update_at(&vars, self.step.saturating_sub(1))?;
        }
        Ok(())
    }

    /// Wall-time split of a step; `phases` are forward, backward, AGC, optimiser and statistics milliseconds.
    fn throughput(&self, step: u64, n: usize, t_step: Instant, phases: [f64; 5]) -> Throughput {
        let [forward_ms, backward_ms, agc_ms, optimizer_ms, stats_ms] = phases;
        let step_ms = ms(t_step);
        Throughput {
            step,
            images_per_sec: if step_ms > 0.0 {
                n as f64 * 1e3 / step_ms
            } else {
                0.0
            },
            step_ms,
            data_ms: 0.0,
            forward_ms,
            backward_ms,
            agc_ms,
            optimizer_ms,
            stats_ms,
        }
    }
}
