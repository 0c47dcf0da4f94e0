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

    fn gather_stats(&self, step: u64, rows: &[Tensor], spp: Option<&Tensor>) -> Result<LayerStats> {
        let params = self.model.params();
        let mut parts = Vec::with_capacity(2);
        if !rows.is_empty() {
            parts.push(Tensor::stack(rows, 0)?.flatten_all()?);
        }
        if let Some(s) = spp {
            parts.push(s.to_dtype(DType::F32)?.flatten_all()?);
        }
        let host = if parts.is_empty() {
            Vec::new()
        } else {
            Tensor::cat(&parts, 0)?.to_vec1::<f32>()?
        };
        let mut agc_stats = Vec::with_capacity(params.len());
        let (mut clipped_units, mut all_units) = (0.0, 0usize);
        for (i, p) in params.iter().enumerate() {
            let row = host.get(i * STATS_LEN..(i + 1) * STATS_LEN).unwrap_or(&[]);
            let r = AgcStatsRow::from_row(row);
            let units = agc::unit_count(p.var.dims());
            let frozen = self.groups.frozen(i);
            let applies = self.live.agc_enabled && !self.is_excluded(i) && !frozen;
            if applies {
                clipped_units += r.clipped_fraction * units as f64;
                all_units += units;
            }
            agc_stats.push(AgcLayerStats {
                name: p.name.clone(),
                weight_norm: r.weight_norm,
                grad_norm: r.grad_norm,
                max_ratio: r.max_ratio,
                mean_ratio: r.mean_ratio,
                clipped_fraction: r.clipped_fraction,
                units,
                clipped_by_agc: applies,
                frozen,
            });
        }
        let spp_host = host.get(params.len() * STATS_LEN..).unwrap_or(&[]);
        let spp_stats = self
            .model
            .spp_blocks()
            .into_iter()
            .enumerate()
            .filter_map(|(b, (name, predicted_var))| {
                let v = spp_host.get(b * 3..b * 3 + 3)?;
                Some(SppBlockStats {
                    name,
                    predicted_var,
                    avg_sq_mean: v[0] as f64,
                    avg_var: v[1] as f64,
                    res_avg_var: v[2] as f64,
                })
            })
            .collect();
        Ok(LayerStats {
            step,
            agc: agc_stats,
            spp: spp_stats,
            total_clipped_fraction: if all_units > 0 {
                clipped_units / all_units as f64
            } else {
                0.0
            },
        })
    }

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

    fn evaluate_current(
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
    fn swap_in_ema(&mut self) -> Result<Option<Vec<Tensor>>> {
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

    /// Snapshot everything needed for an exact resume (tensors copied to the host).
    pub fn state(&self, preset: &Preset, loader_position: serde_json::Value) -> Result<TrainState> {
        let cpu = Device::Cpu;
        let params = self.model.params();
        let mut tensors = Vec::new();
        for (i, p) in params.iter().enumerate() {
            let w = p.var.as_tensor().detach();
            tensors.push((format!("param/{}", p.name), w.to_device(&cpu)?));
            let m = match self.sgd.buffer(i) {
                Some(b) => b.to_device(&cpu)?,
                None => w.zeros_like()?.to_device(&cpu)?,
            };
            tensors.push((format!("momentum/{}", p.name), m));
        }
        if let Some(ema) = &self.ema {
            for (p, s) in params.iter().zip(ema.shadows()) {
                tensors.push((format!("ema/{}", p.name), s.to_device(&cpu)?));
            }
        }
        for (name, b) in self.model.buffers() {
            tensors.push((format!("buffer/{name}"), b.to_device(&cpu)?));
        }
        let mut preset = preset.clone();
        self.live.apply_to(&mut preset);
        Ok(TrainState {
            tensors,
            meta: TrainMeta {
                format: STATE_FORMAT,
                step: self.step,
                model: self.model.name(),
                preset,
                live: self.live,
                loader_position,
                seed: self.seed,
                consecutive_bad: self.consecutive_bad,
                images_seen: self.images_seen,
                param_names: params.iter().map(|p| p.name.clone()).collect(),
                epoch: 0.0,
                val_top1: None,
            },
        })
    }

    /// Restore a snapshot written by [`StepRunner::state`] (the loader position is the source's business).
    pub fn restore(&mut self, state: &TrainState) -> Result<()> {
        let map = state.tensor_map();
        let get = |key: String| {
            map.get(&key)
                .ok_or_else(|| TrainError::checkpoint(format!("missing tensor `{key}`")))
        };
        let params = self.model.params().to_vec();
        let mut shadows = Vec::new();
        for (i, p) in params.iter().enumerate() {
            let w = get(format!("param/{}", p.name))?;
            if w.dims() != p.var.dims() {
                return Err(TrainError::checkpoint(format!(
                    "`param/{}` has shape {:?}, the model wants {:?}",
                    p.name,
                    w.dims(),
                    p.var.dims()
                )));
            }
            p.var
                .set(&w.to_device(&self.device)?.to_dtype(p.var.dtype())?)?;
            let m = get(format!("momentum/{}", p.name))?;
            self.sgd.load_buffer(i, m.to_device(&self.device)?);
            if self.ema.is_some() {
                let e = map.get(&format!("ema/{}", p.name)).unwrap_or(w);
                shadows.push(e.to_device(&self.device)?);
            }
        }
        if let Some(ema) = self.ema.as_mut() {
            ema.load(shadows);
        }
        let buffers: HashMap<String, Tensor> = state
            .tensors
            .iter()
            .filter_map(|(k, t)| {
                k.strip_prefix("buffer/")
                    .map(|n| (n.to_string(), t.to_device(&self.device)))
            })
            .map(|(n, t)| t.map(|t| (n, t)))
            .collect::<candle_core::Result<_>>()?;
        if !buffers.is_empty() {
            self.model
                .load_buffers(&buffers)
                .map_err(|e| TrainError::checkpoint_from("model buffers", e))?;
        }
        for p in state.meta.live.params() {
            self.take_effect(p)?;
        }
        self.live = state.meta.live;
        self.step = state.meta.step;
        self.seed = state.meta.seed;
        self.images_seen = state.meta.images_seen;
        self.consecutive_bad = state.meta.consecutive_bad;
        Ok(())
    }
}

/// Backward, then one host copy of (loss, correct, per-parameter squared gradient norms).
fn backward(fwd: &Forward, params: &[crate::model::Param]) -> Result<Backward> {
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
fn gradients(loss: &Tensor, params: &[crate::model::Param]) -> Result<Vec<Tensor>> {
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
fn host_copy(fwd: &Forward, grads: &[Tensor]) -> Result<Vec<f32>> {
    let mut sq = Vec::with_capacity(grads.len() + 2);
    sq.push(fwd.loss.to_dtype(DType::F32)?.reshape(1)?);
    sq.push(fwd.correct.reshape(1)?);
    for g in grads {
        sq.push(g.sqr()?.sum_all()?.reshape(1)?);
    }
    Ok(Tensor::cat(&sq, 0)?.to_vec1::<f32>()?)
}

/// `(start, len)` of `k` micro-batches covering `n` images, sizes differing by at most one.
fn micro_batches(n: usize, k: usize) -> Vec<(usize, usize)> {
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
fn micro_seed(seed: u64, micro: usize) -> u64 {
    seed ^ (micro as u64).wrapping_mul(0xd6e8_feb8_6659_fd93)
}

fn describe_non_finite(loss: f64, sq: &[f32], params: &[crate::model::Param]) -> String {
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
