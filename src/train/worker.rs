//! The trainer thread: commands at every step boundary, one step, events out; never waits on a consumer.

use super::device;
use super::events::{lanes, EventSender, TrainerHandle};
use super::messages::{Command, Event, LiveParam, RunStart, RunState, StepMetrics};
use super::parts::{select_device, Parts};
use super::rescue::{After, NanFault, Rescue};
use super::source::BatchSource;
use super::state::{CheckpointWriter, TrainState};
use super::step::{StepRunner, Weights};
use super::{PartsFactory, Result, TrainError, TrainSummary, TrainerOptions};
use crate::model::Precision;
use crate::preset::Preset;
use crossbeam::channel::{self, Receiver, TryRecvError};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Steps over which `final_train_loss` is averaged.
const LOSS_WINDOW: usize = 50;

/// How often a checkpoint that could not be written (a full disk) is tried again while the run waits for space.
const STORAGE_RETRY: Duration = Duration::from_secs(5);

/// A checkpoint that failed and waits to be written again; training is paused meanwhile, so at most one checkpoint
/// interval is ever at risk.
struct StorageWait {
    next_try: Instant,
    /// Whether the run was running when the write failed (it goes on by itself once the write succeeds).
    was_running: bool,
    /// Tries so far.
    tries: u32,
}

pub(crate) fn spawn(
    preset: Preset,
    opts: TrainerOptions,
    factory: PartsFactory,
) -> Result<TrainerHandle> {
    let (cmd_tx, cmd_rx) = channel::unbounded();
    let (sender, receiver) = lanes(opts.event_capacity);
    let thread_sender = sender.clone();
    let thread = std::thread::Builder::new()
        .name("nfbench-trainer".into())
        .spawn(move || {
            let ev = thread_sender.clone();
            let result = run(preset, opts, factory, cmd_rx, thread_sender);
            if let Err(e) = &result {
                ev.send(Event::Error(super::error_chain(e)));
                ev.send(Event::State {
                    state: RunState::Failed,
                    step: 0,
                });
            }
            result
        })
        .map_err(|e| TrainError::Panicked(format!("cannot start the trainer thread: {e}")))?;
    Ok(TrainerHandle::new(cmd_tx, receiver, &sender, thread))
}

/// The state of the loop between steps.
struct Loop {
    preset: Preset,
    runner: StepRunner,
    source: Box<dyn BatchSource>,
    ev: EventSender,
    writer: Option<Box<dyn CheckpointWriter>>,
    state: RunState,
    /// Run exactly one more step, then pause.
    step_once: bool,
    pending_set: Vec<(Vec<LiveParam>, String)>,
    checkpoint_now: bool,
    evaluate_now: bool,
    stop: Option<bool>,
    losses: VecDeque<f64>,
    last_top1: f64,
    train_secs: f64,
    train_images: u64,
    /// Step of the last checkpoint written (a resume starts there).
    last_saved: Option<u64>,
    /// A failed checkpoint being retried.
    storage: Option<StorageWait>,
    rescue: Rescue,
}

fn run(
    preset: Preset,
    mut opts: TrainerOptions,
    factory: PartsFactory,
    commands: Receiver<Command>,
    ev: EventSender,
) -> Result<TrainSummary> {
    ev.send(Event::State {
        state: RunState::Starting,
        step: 0,
    });
    let device = select_device(opts.device.unwrap_or(preset.run.device))?;
    let resume = opts.resume.take();
    let last_saved = resume.as_ref().map(|s| s.meta.step);
    let Parts { model, source } = factory(&device, &preset, resume.as_ref())?;
    let info = source.info();
    let mut runner = StepRunner::new(model, device.clone(), &preset, &info)?;
    if let Some(state) = &resume {
        runner.restore(state)?;
    }
    let writer = opts.checkpoint_writer.take();
    let precision = preset.run.dtype;
    ev.send(Event::Started(RunStart {
        model: runner.model_name(),
        device: device::describe(&device),
        precision: precision.name().to_string(),
        params: runner.param_count(),
        steps: preset.run.steps,
        start_step: runner.step(),
        run_dir: opts.run_dir.clone(),
    }));
    if precision == Precision::Bf16 && device.is_cpu() {
        ev.send(Event::Warning(
            "run.dtype = \"bf16\" on the CPU runs candle's generic bf16 ops, several times slower than f32: \
             bf16 is meant for GPUs"
                .into(),
        ));
    }
    let state = if opts.start_paused {
        RunState::Paused
    } else {
        RunState::Running
    };
    ev.send(Event::State {
        state,
        step: runner.step(),
    });
    let rescue = Rescue::new(&preset.rescue, preset.run.max_bad_steps, runner.step())
        .with_fault(NanFault::from_env());
    let mut lp = Loop {
        rescue,
        preset,
        runner,
        source,
        ev,
        writer,
        state,
        step_once: false,
        pending_set: Vec::new(),
        checkpoint_now: false,
        evaluate_now: false,
        stop: None,
        losses: VecDeque::new(),
        last_top1: f64::NAN,
        train_secs: 0.0,
        train_images: 0,
        last_saved,
        storage: None,
    };
    lp.main_loop(&commands)
}

impl Loop {
    fn main_loop(&mut self, commands: &Receiver<Command>) -> Result<TrainSummary> {
        let mut final_evaluated = false;
        loop {
            self.take_commands(commands);
            self.at_boundary()?;
            if let Some(checkpoint) = self.stop {
                if checkpoint && self.last_saved != Some(self.runner.step()) {
                    self.checkpoint();
                }
                return Ok(self.finish(RunState::Stopped));
            }
            self.retry_storage_when_due();
            if self.runner.step() >= self.preset.run.steps {
                if !final_evaluated {
                    self.evaluate()?;
                    final_evaluated = true;
                    if self.writer.is_some() {
                        self.checkpoint();
                    }
                }
                // A final checkpoint that failed is retried (paused) until it is written or the run is stopped.
                if self.storage.is_none() {
                    return Ok(self.finish(RunState::Finished));
                }
                continue;
            }
            if self.state == RunState::Running || self.step_once {
                self.one_step()?;
            }
        }
    }

    /// Try the failed checkpoint again once its retry is due; on success the run goes on as it was.
    fn retry_storage_when_due(&mut self) {
        let due = self
            .storage
            .as_ref()
            .is_some_and(|w| Instant::now() >= w.next_try);
        if !due {
            return;
        }
        let step = self.runner.step();
        self.checkpoint();
        if self.last_saved == Some(step) {
            if let Some(wait) = self.storage.take() {
                self.ev.send(Event::Warning(format!(
                    "the checkpoint at step {step} is written (after {} tries); training goes on",
                    wait.tries + 1
                )));
                if wait.was_running {
                    self.set_state(RunState::Running);
                }
            }
        }
    }

    /// Read commands: without waiting while running, blocking while paused (the trainer is idle then).
    fn take_commands(&mut self, commands: &Receiver<Command>) {
        let idle = self.state != RunState::Running
            && !self.step_once
            && (self.runner.step() < self.preset.run.steps || self.storage.is_some())
            && self.pending_set.is_empty()
            && !self.checkpoint_now
            && !self.evaluate_now;
        if idle {
            // Waiting for disk space: wake up for the next try even without a command.
            let received = match &self.storage {
                Some(w) => {
                    commands.recv_timeout(w.next_try.saturating_duration_since(Instant::now()))
                }
                None => commands
                    .recv()
                    .map_err(|_| channel::RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(c) => self.command(c),
                Err(channel::RecvTimeoutError::Timeout) => {}
                Err(channel::RecvTimeoutError::Disconnected) => self.stop = Some(false),
            }
        }
        loop {
            match commands.try_recv() {
                Ok(c) => self.command(c),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    // Nobody can steer or read us any more.
                    if self.state != RunState::Running {
                        self.stop.get_or_insert(false);
                    }
                    break;
                }
            }
        }
    }

    fn set_state(&mut self, state: RunState) {
        if self.state != state {
            self.state = state;
            self.ev.send(Event::State {
                state,
                step: self.runner.step(),
            });
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Pause => {
                self.step_once = false;
                self.set_state(RunState::Paused);
            }
            Command::Resume => {
                self.runner.reset_bad_steps();
                self.set_state(RunState::Running);
            }
            Command::StepOnce => {
                if self.state == RunState::Running {
                    self.set_state(RunState::Paused);
                }
                self.step_once = true;
            }
            Command::Set { params, origin } => self.pending_set.push((params, origin)),
            Command::CheckpointNow => self.checkpoint_now = true,
            Command::EvaluateNow => self.evaluate_now = true,
            Command::Stop { checkpoint } => self.stop = Some(checkpoint),
        }
    }

    /// Live changes, requested checkpoints and evaluations, all between two steps.
    fn at_boundary(&mut self) -> Result<()> {
        for (params, origin) in std::mem::take(&mut self.pending_set) {
            // Numbered like `StepMetrics::step`: the first step that runs with the change.
            let step = self.runner.step() + 1;
            let mut applied = Vec::new();
            for p in params {
                match self.runner.apply_live(p) {
                    Ok(()) => applied.push(p),
                    Err(reason) => {
                        self.ev.send(Event::Rejected {
                            what: format!("{} = {}", p.key(), p.value_string()),
                            reason,
                            step,
                        });
                    }
                }
            }
            if !applied.is_empty() {
                self.ev.send(Event::Applied {
                    params: applied,
                    origin,
                    step,
                });
            }
        }
        if std::mem::take(&mut self.checkpoint_now) {
            self.checkpoint();
        }
        if std::mem::take(&mut self.evaluate_now) {
            self.evaluate()?;
        }
        Ok(())
    }

    fn one_step(&mut self) -> Result<()> {
        let t_data = Instant::now();
        let mut batch = self.source.next_train()?;
        self.rescue.inject(self.runner.step() + 1, &mut batch)?;
        let data_ms = t_data.elapsed().as_secs_f64() * 1e3;
        let stats = self.runner.stats_due();
        let t = Instant::now();
        let out = self.runner.run_step(&batch, stats, stats)?;
        self.train_secs += t.elapsed().as_secs_f64() + data_ms / 1e3;
        self.train_images += out.batch as u64;
        self.step_once = false;
        let epoch =
            self.runner.images_seen() as f64 / self.source.info().train_images.max(1) as f64;
        let finite_loss = out.finite.then_some(out.loss);
        let trigger = self
            .rescue
            .observe(out.step, finite_loss, self.runner.consecutive_bad());
        if !out.finite {
            self.ev.send(Event::NonFinite {
                step: out.step,
                what: out.non_finite.clone(),
                consecutive: self.runner.consecutive_bad(),
            });
            if trigger.is_none() && self.runner.consecutive_bad() >= self.preset.run.max_bad_steps {
                self.ev.send(Event::Warning(format!(
                    "{} consecutive non-finite steps: paused; lower the learning rate or lambda, then resume",
                    self.runner.consecutive_bad()
                )));
                self.set_state(RunState::Diverged);
            }
        } else {
            self.losses.push_back(out.loss);
            if self.losses.len() > LOSS_WINDOW {
                self.losses.pop_front();
            }
        }
        let mut tp = out.timings.clone();
        tp.data_ms = data_ms;
        tp.step_ms += data_ms;
        tp.images_per_sec = if tp.step_ms > 0.0 {
            out.batch as f64 * 1e3 / tp.step_ms
        } else {
            0.0
        };
        self.ev.send(Event::Step(StepMetrics {
            step: out.step,
            epoch,
            loss: out.loss,
            train_top1: out.train_top1,
            lr: out.lr,
            lambda: self.runner.live().agc_lambda,
            alpha: self.runner.live().alpha,
            grad_norm: out.grad_norm,
            clipped_fraction: out.clipped_fraction,
            images_per_sec: tp.images_per_sec,
            step_ms: tp.step_ms,
        }));
        if let Some(stats) = out.stats {
            self.ev.send(Event::Layers(Box::new(stats)));
            self.ev.send(Event::Throughput(tp));
            if let Some(memory) = device::memory_in_use(self.runner.device()) {
                self.ev.send(Event::Memory {
                    step: out.step,
                    memory,
                });
            }
        }
        if let Some(trigger) = trigger {
            // The rescue acts instead of the periodic evaluation and checkpoint of a diverging step.
            let w = self.writer.as_deref_mut();
            if self.rescue.act(trigger, &mut self.runner, w, &self.ev)? == After::Pause {
                self.set_state(RunState::Diverged);
            }
            return Ok(());
        }
        if self.state == RunState::Running || self.state == RunState::Paused {
            let done = self.runner.step();
            let every = self.preset.run.eval_every;
            if every > 0 && done.is_multiple_of(every) && done < self.preset.run.steps {
                self.evaluate()?;
            }
            let ck = self.preset.run.checkpoint_every;
            if ck > 0 && done.is_multiple_of(ck) && done < self.preset.run.steps {
                self.checkpoint();
            }
        }
        Ok(())
    }

    /// One evaluation row per weight set `run.eval_weights` asks for (EMA and/or raw; the row's `ema` says which).
    fn evaluate(&mut self) -> Result<()> {
        for weights in Weights::for_run(self.preset.run.eval_weights, self.runner.has_ema()) {
            let batches = self.source.eval_batches(self.preset.data.eval_images)?;
            let m = self.runner.evaluate_with(batches, weights)?;
            if m.images == 0 {
                self.ev.send(Event::Warning(
                    "no validation images: evaluation skipped".into(),
                ));
                return Ok(());
            }
            self.last_top1 = m.top1;
            self.ev.send(Event::Eval(m));
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<TrainState> {
        let mut state = self.runner.state(&self.preset, self.source.position())?;
        state.meta.epoch =
            self.runner.images_seen() as f64 / self.source.info().train_images.max(1) as f64;
        state.meta.val_top1 = self.last_top1.is_finite().then_some(self.last_top1);
        Ok(state)
    }

    /// Write a checkpoint. A failure is never fatal: it is reported (`CheckpointFailed`), training pauses, and the
    /// write is retried every [`STORAGE_RETRY`] until it succeeds (then training goes on by itself) or the run is
    /// stopped; the last checkpoint on disk stays the one to resume from.
    fn checkpoint(&mut self) {
        let step = self.runner.step();
        if self.writer.is_none() {
            self.ev.send(Event::Rejected {
                what: "checkpoint".into(),
                reason: "no run directory: nowhere to write checkpoints".into(),
                step,
            });
            return;
        }
        let state = match self.snapshot() {
            Ok(s) => s,
            Err(e) => {
                self.ev.send(Event::Error(format!(
                    "checkpoint at step {step}: {}",
                    super::error_chain(&e)
                )));
                return;
            }
        };
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        match writer.write(&state) {
            Ok(path) => {
                self.last_saved = Some(step);
                self.ev.send(Event::Checkpoint { path, step });
            }
            Err(e) => self.storage_failed(step, super::error_chain(&*e)),
        }
    }

    /// A checkpoint write failed: say so once per streak of failures, pause, and schedule the next try.
    fn storage_failed(&mut self, step: u64, reason: String) {
        let first = self.storage.is_none();
        let was_running = match &self.storage {
            Some(w) => w.was_running,
            None => self.state == RunState::Running,
        };
        let tries = self.storage.as_ref().map_or(0, |w| w.tries + 1);
        self.storage = Some(StorageWait {
            next_try: Instant::now() + STORAGE_RETRY,
            was_running,
            tries,
        });
        if !first {
            return;
        }
        self.ev.send(Event::CheckpointFailed {
            step,
            reason,
            last_saved: self.last_saved,
        });
        self.ev.send(Event::Warning(format!(
            "paused: the checkpoint at step {step} could not be written; retrying every {} s (free some space, \
             or stop the run: a resume starts from {})",
            STORAGE_RETRY.as_secs(),
            self.last_saved
                .map_or("the beginning".to_string(), |s| format!("step {s}"))
        )));
        self.set_state(RunState::Paused);
    }

    fn finish(&mut self, state: RunState) -> TrainSummary {
        self.set_state(state);
        self.ev.send(Event::Finished {
            step: self.runner.step(),
        });
        let final_train_loss = if self.losses.is_empty() {
            f64::NAN
        } else {
            self.losses.iter().sum::<f64>() / self.losses.len() as f64
        };
        TrainSummary {
            steps: self.runner.step(),
            final_train_loss,
            val_top1: self.last_top1,
            images_per_sec: if self.train_secs > 0.0 {
                self.train_images as f64 / self.train_secs
            } else {
                0.0
            },
            state,
        }
    }
}
