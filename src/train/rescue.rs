//! Divergence rescue: the `[rescue]` policy ([`crate::preset::RescueConfig`]) as a state machine the trainer loop
//! consults after every step.
//!
//! - **Trigger** ([`Rescue::observe`]): `rescue.bad_steps` consecutive non-finite steps (capped at
//!   `run.max_bad_steps`, so the rescue acts before the run would pause), or a finite loss above
//!   `spike_factor` x the median of the last `spike_window` finite losses ([`SpikeDetector`]).
//! - **Act** ([`Rescue::act`]): after `max_rescues` rollbacks it gives up; otherwise it loads the newest checkpoint
//!   written while the run was healthy (at or before the last step that was finite and no spike), restores model,
//!   optimiser, EMA and step from it ([`StepRunner::restore`]), puts back the live values in force before the
//!   rollback, applies the remedy through the live-parameter path (an `Applied` with origin `rescue`) and leaves the
//!   data source where it is: the batches trained since the checkpoint, the offending ones among them, are
//!   skipped. Without a checkpoint it says so and the run pauses as `Diverged` (what happens without the policy).
//!   Every act is an `Event::Rescued`.
//! - **Test hook** ([`NanFault`]): `NFBENCH_FAULT_NAN_AT_STEP=S` (or `S-E`) makes the training batch of step S
//!   (through E) all NaN the first time that step runs, so a test can make a run diverge at a chosen step without a
//!   preset field. Read once when the trainer starts; meant for tests and fault injection only.

use super::events::EventSender;
use super::messages::{Event, LiveParam, RescueAction, RescueReport, RescueTrigger};
use super::source::HostBatch;
use super::state::{CheckpointWriter, LiveValues};
use super::step::StepRunner;
use super::Result;
use crate::preset::{Remedy, RescueConfig};
use std::collections::VecDeque;

/// The environment variable of the NaN-injection test hook.
pub const NAN_FAULT_ENV: &str = "NFBENCH_FAULT_NAN_AT_STEP";

/// Origin of the `Applied` a rescue sends.
pub const ORIGIN: &str = "rescue";

/// The running median of the last W finite losses, and the spike test against it.
#[derive(Debug, Clone)]
pub struct SpikeDetector {
    window: VecDeque<f64>,
    size: usize,
    factor: f64,
}

impl SpikeDetector {
    /// A detector over `size` losses (0: never fires) flagging losses above `factor` x their median.
    pub fn new(size: usize, factor: f64) -> Self {
        Self {
            window: VecDeque::with_capacity(size),
            size,
            factor,
        }
    }

    /// The median of the losses in the window (the mean of the middle two for an even count); None when empty.
    pub fn median(&self) -> Option<f64> {
        median(self.window.iter().copied())
    }

    /// Test a finite loss: `Some(median)` when it is a spike (then it is not added to the window, so a spike never
    /// raises the median it is judged by); otherwise it joins the window and `None`. The test is armed once the
    /// window is full.
    pub fn check(&mut self, loss: f64) -> Option<f64> {
        if self.size == 0 {
            return None;
        }
        if self.window.len() == self.size {
            if let Some(m) = self.median().filter(|m| loss > self.factor * m) {
                return Some(m);
            }
            self.window.pop_front();
        }
        self.window.push_back(loss);
        None
    }
}

/// The median of `values`; None when there are none.
pub fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The live values a remedy sets, from the values in force (each halving is of the current value, so a second
/// rescue tightens further).
pub fn remedy_params(remedy: Remedy, live: &LiveValues) -> Vec<LiveParam> {
    let mut out = Vec::new();
    if remedy.halves_lambda() {
        out.push(LiveParam::AgcLambda(live.agc_lambda / 2.0));
    }
    if remedy.halves_lr_scale() {
        out.push(LiveParam::LrScale(live.lr_scale / 2.0));
    }
    out
}

/// What [`Rescue::decide`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Roll back (this will be rescue number `n`).
    RollBack {
        n: u32,
    },
    GiveUp,
}

/// What the loop does after [`Rescue::act`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Rolled back: train on.
    Continue,
    /// Nothing was rolled back: pause as `Diverged`.
    Pause,
}

/// The policy's state over a run.
#[derive(Debug, Clone)]
pub struct Rescue {
    config: RescueConfig,
    /// N, capped at `run.max_bad_steps`.
    trigger_after: u32,
    spikes: SpikeDetector,
    rescues: u32,
    /// Steps done after the last step that was finite and no spike: checkpoints up to here hold healthy weights.
    healthy_through: u64,
    fault: NanFault,
}

impl Rescue {
    /// The policy of `config` for a run that pauses after `max_bad_steps` non-finite steps and starts (or resumes)
    /// at `start_step`.
    pub fn new(config: &RescueConfig, max_bad_steps: u32, start_step: u64) -> Self {
        Self {
            config: config.clone(),
            trigger_after: config.bad_steps.clamp(1, max_bad_steps.max(1)),
            spikes: SpikeDetector::new(config.spike_window, config.spike_factor),
            rescues: 0,
            healthy_through: start_step,
            fault: NanFault::default(),
        }
    }

    /// With the NaN-injection test hook `fault` (see [`NanFault`]).
    pub fn with_fault(mut self, fault: NanFault) -> Self {
        self.fault = fault;
        self
    }

    /// The test hook: poison `batch` when step `step` (numbered from 1) is one it poisons.
    pub fn inject(&mut self, step: u64, batch: &mut HostBatch) -> Result<()> {
        self.fault.apply(step, batch)
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Rollbacks done so far.
    pub fn rescues(&self) -> u32 {
        self.rescues
    }

    /// Steps done after the last healthy step.
    pub fn healthy_through(&self) -> u64 {
        self.healthy_through
    }

    /// Look at the step that just ran (`step` = steps done after it; `loss` None when it was not finite, with
    /// `consecutive` non-finite steps in a row): the trigger when the policy must act. Always None when off.
    pub fn observe(
        &mut self,
        step: u64,
        loss: Option<f64>,
        consecutive: u32,
    ) -> Option<RescueTrigger> {
        if !self.config.enabled {
            return None;
        }
        match loss {
            None => (consecutive >= self.trigger_after)
                .then_some(RescueTrigger::NonFinite { consecutive }),
            Some(loss) => match self.spikes.check(loss) {
                Some(median) => Some(RescueTrigger::Spike {
                    loss,
                    median,
                    factor: self.config.spike_factor,
                }),
                None => {
                    self.healthy_through = step;
                    None
                }
            },
        }
    }

    /// Roll back again, or give up: after `max_rescues` rollbacks it gives up.
    pub fn decide(&self) -> Decision {
        if self.rescues >= self.config.max_rescues {
            Decision::GiveUp
        } else {
            Decision::RollBack {
                n: self.rescues + 1,
            }
        }
    }

    /// Act on `trigger` (see the module docs); sends `Rescued` (and `Applied` for the remedy) on `ev`.
    pub fn act(
        &mut self,
        trigger: RescueTrigger,
        runner: &mut StepRunner,
        writer: Option<&mut (dyn CheckpointWriter + 'static)>,
        ev: &EventSender,
    ) -> Result<After> {
        let step = runner.step();
        let report = |action, rescues| RescueReport {
            step,
            trigger: trigger.clone(),
            action,
            rescues,
            max_rescues: self.config.max_rescues,
        };
        let n = match self.decide() {
            Decision::GiveUp => {
                ev.send(Event::Rescued(report(RescueAction::GaveUp, self.rescues)));
                return Ok(After::Pause);
            }
            Decision::RollBack { n } => n,
        };
        let loaded = match writer {
            None => Err("no run directory: no checkpoints".to_string()),
            Some(w) => w.load_at_most(self.healthy_through),
        };
        let (checkpoint, state) = match loaded {
            Ok(Some(found)) => found,
            Ok(None) => {
                let reason = format!(
                    "no checkpoint written at or before step {} yet",
                    self.healthy_through
                );
                let action = RescueAction::NoCheckpoint { reason };
                ev.send(Event::Rescued(report(action, self.rescues)));
                return Ok(After::Pause);
            }
            Err(reason) => {
                let action = RescueAction::NoCheckpoint { reason };
                ev.send(Event::Rescued(report(action, self.rescues)));
                return Ok(After::Pause);
            }
        };
        let before = *runner.live();
        runner.restore(&state)?;
        // The checkpoint's live values are older than the ones in force: put those back, then tighten them.
        for p in before.params() {
            // They were in force a step ago, so they pass their checks.
            let _ = runner.apply_live(p);
        }
        let params: Vec<LiveParam> = remedy_params(self.config.remedy, &before)
            .into_iter()
            .filter(|p| runner.apply_live(*p).is_ok())
            .collect();
        self.rescues = n;
        self.healthy_through = runner.step();
        let action = RescueAction::RolledBack {
            to_step: runner.step(),
            checkpoint,
            params: params.clone(),
            skipped_batches: step.saturating_sub(runner.step()),
        };
        ev.send(Event::Rescued(report(action, n)));
        if !params.is_empty() {
            ev.send(Event::Applied {
                params,
                origin: ORIGIN.into(),
                step: runner.step() + 1,
            });
        }
        Ok(After::Continue)
    }
}

/// The NaN-injection test hook ([`NAN_FAULT_ENV`]): poisons the batches of a range of steps, each the first time
/// its step runs (a step run again after a rollback trains on a later, clean batch).
#[derive(Debug, Clone, Default)]
pub struct NanFault {
    range: Option<(u64, u64)>,
    /// The highest step number that has run.
    seen: u64,
}

impl NanFault {
    /// The hook as the environment sets it (off when the variable is unset or unreadable).
    pub fn from_env() -> Self {
        Self::parse(std::env::var(NAN_FAULT_ENV).ok().as_deref())
    }

    /// `S` or `S-E` (steps numbered from 1, inclusive); anything else turns the hook off.
    pub fn parse(text: Option<&str>) -> Self {
        let range = text.and_then(|t| {
            let t = t.trim();
            let (a, b) = t.split_once('-').unwrap_or((t, t));
            let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (a <= b).then_some((a, b))
        });
        Self { range, seen: 0 }
    }

    /// Whether step `step` (numbered from 1) trains on a poisoned batch; call once per step that runs.
    pub fn poisons(&mut self, step: u64) -> bool {
        let first_time = step > self.seen;
        self.seen = self.seen.max(step);
        first_time && self.range.is_some_and(|(a, b)| (a..=b).contains(&step))
    }

    /// Make `batch` all NaN when step `step` is to be poisoned.
    pub fn apply(&mut self, step: u64, batch: &mut HostBatch) -> Result<()> {
        if self.poisons(step) {
            batch.images = if batch.images.dtype() == candle_core::DType::U8 {
                // A JPEG batch (u8 NHWC) cannot hold NaN: poison it as the model input it becomes.
                let (b, h, w, c) = batch.images.dims4()?;
                candle_core::Tensor::full(f32::NAN, (b, c, h, w), batch.images.device())?
            } else {
                (batch.images.zeros_like()? * f64::NAN)?
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(window: usize, factor: f64, max_rescues: u32) -> RescueConfig {
        RescueConfig {
            enabled: true,
            bad_steps: 3,
            spike_factor: factor,
            spike_window: window,
            max_rescues,
            remedy: Remedy::Both,
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), Some(2.5));
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn a_spike_is_judged_against_the_hand_computed_median_of_the_window() {
        let mut d = SpikeDetector::new(4, 3.0);
        // Not armed until the window holds 4 losses: even a huge loss passes (and joins the window).
        for l in [2.0, 1.0, 1.5, 10.0] {
            assert_eq!(d.check(l), None);
        }
        // Window [2, 1, 1.5, 10]: median (1.5 + 2) / 2 = 1.75; 3 x 1.75 = 5.25.
        assert_eq!(d.median(), Some(1.75));
        assert_eq!(d.check(5.3), Some(1.75));
        // The spike did not enter: same median; 5.2 is below the bar and joins, 2.0 drops out.
        assert_eq!(d.check(5.2), None);
        // Window [1, 1.5, 10, 5.2]: median (1.5 + 5.2) / 2 = 3.35.
        let m = d.median().unwrap();
        assert!((m - 3.35).abs() < 1e-12, "{m}");
        assert!(d.check(3.0 * 3.35 + 0.01).is_some_and(|got| got == m));
        assert_eq!(d.check(3.0 * 3.35 - 0.01), None);
        assert_eq!(SpikeDetector::new(0, 3.0).check(1e9), None);
    }

    #[test]
    fn non_finite_steps_trigger_at_n_capped_at_max_bad_steps() {
        let mut r = Rescue::new(&config(0, 4.0, 3), 5, 0);
        assert_eq!(r.observe(1, None, 1), None);
        assert_eq!(r.observe(2, None, 2), None);
        assert_eq!(
            r.observe(3, None, 3),
            Some(RescueTrigger::NonFinite { consecutive: 3 })
        );
        // N = 3 above max_bad_steps = 2: the rescue acts at 2, before the pause.
        let mut r = Rescue::new(&config(0, 4.0, 3), 2, 0);
        assert_eq!(
            r.observe(1, None, 2),
            Some(RescueTrigger::NonFinite { consecutive: 2 })
        );
    }

    #[test]
    fn healthy_through_follows_finite_non_spike_steps_only() {
        let mut r = Rescue::new(&config(2, 2.0, 3), 5, 10);
        assert_eq!(r.healthy_through(), 10);
        r.observe(11, Some(1.0), 0);
        r.observe(12, Some(1.0), 0);
        assert_eq!(r.healthy_through(), 12);
        r.observe(13, None, 1);
        assert_eq!(r.healthy_through(), 12);
        let t = r.observe(14, Some(2.5), 0);
        assert_eq!(
            t,
            Some(RescueTrigger::Spike {
                loss: 2.5,
                median: 1.0,
                factor: 2.0
            })
        );
        assert_eq!(r.healthy_through(), 12);
    }

    #[test]
    fn off_never_triggers() {
        let mut c = config(2, 2.0, 3);
        c.enabled = false;
        let mut r = Rescue::new(&c, 5, 0);
        for s in 1..10 {
            assert_eq!(r.observe(s, None, s as u32), None);
            assert_eq!(r.observe(s, Some(1e9 * s as f64), 0), None);
        }
    }

    #[test]
    fn gives_up_after_max_rescues() {
        let mut r = Rescue::new(&config(0, 4.0, 2), 5, 0);
        assert_eq!(r.decide(), Decision::RollBack { n: 1 });
        r.rescues = 2;
        assert_eq!(r.decide(), Decision::GiveUp);
    }

    #[test]
    fn remedies_halve_the_values_in_force() {
        let mut live = LiveValues::from_preset(&crate::preset::Preset::default());
        live.agc_lambda = 0.08;
        live.lr_scale = 0.5;
        assert_eq!(
            remedy_params(Remedy::Both, &live),
            vec![LiveParam::AgcLambda(0.04), LiveParam::LrScale(0.25)]
        );
        assert_eq!(
            remedy_params(Remedy::HalveLambda, &live),
            vec![LiveParam::AgcLambda(0.04)]
        );
        assert_eq!(
            remedy_params(Remedy::HalveLrScale, &live),
            vec![LiveParam::LrScale(0.25)]
        );
    }

    #[test]
    fn the_nan_hook_poisons_its_steps_once_each() {
        assert!(NanFault::parse(None).range.is_none());
        assert!(NanFault::parse(Some("x")).range.is_none());
        assert!(NanFault::parse(Some("5-3")).range.is_none());
        let mut f = NanFault::parse(Some("3-4"));
        let hits: Vec<u64> = (1..=6).filter(|s| f.poisons(*s)).collect();
        assert_eq!(hits, vec![3, 4]);
        // After a rollback to step 1, steps 2..6 run again on clean batches.
        assert!((2..=6).all(|s| !f.poisons(s)));
        let mut f = NanFault::parse(Some(" 7 "));
        assert!((1..=8).filter(|s| f.poisons(*s)).eq([7]));
    }
}
