//! The trainer: a background thread that owns the model, optimiser, device and data, and talks to the outside only
//! through the typed messages in [`messages`].
//!
//! # Public API (used by the TUI, the headless CLI, the run record and `nfbench bench`)
//!
//! ```no_run
//! use nfbench::train::{Trainer, TrainerOptions, messages::{Command, Event}};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let preset = nfbench::preset::Preset::default();
//! let handle = Trainer::spawn(preset, TrainerOptions::default())?;
//! handle.send(Command::Pause);
//! while let Some(event) = handle.recv() {
//!     if matches!(event, Event::Finished { .. } | Event::State { .. }) { /* ... */ }
//!     # break;
//! }
//! let summary = handle.join()?;
//! # Ok(()) }
//! ```
//!
//! - [`Trainer::spawn`] builds device, model, loader and optimiser *on the trainer thread* and returns a
//!   [`TrainerHandle`] at once; build errors arrive as `Event::Error` + `State(Failed)` and from
//!   [`TrainerHandle::join`].
//! - Commands go in through `handle.commands` (unbounded; the trainer reads them at every step boundary and blocks on
//!   them only while paused).
//! - Events come out on **two lanes** (see [`events`]): `handle.events` carries everything that must be delivered
//!   (state changes, `Applied`/`Rejected` acknowledgements, eval results, checkpoints, non-finite steps, warnings,
//!   errors, `Finished`): unbounded, never dropped. `handle.telemetry` carries `Step`, `Layers` and `Throughput`
//!   ([`messages::Event::is_telemetry`]): bounded (`TrainerOptions::event_capacity`); when it is full the trainer
//!   drops the *oldest* queued telemetry (so a slow consumer sees the newest numbers) and counts the drops
//!   ([`TrainerHandle::dropped_telemetry`]). The trainer never blocks on either lane. [`TrainerHandle::recv`],
//!   [`TrainerHandle::try_recv`] and [`TrainerHandle::recv_timeout`] merge both lanes, control first; every event
//!   carries its step, so a consumer can order them.
//! - Checkpoints: the trainer produces a [`TrainState`] (named tensors + JSON metadata: everything for an exact
//!   resume) and hands it to the [`CheckpointWriter`] in `TrainerOptions::checkpoint_writer` (the run record
//!   supplies one: the trainer never imports the record, which sits above it). Resume by passing the state back in `TrainerOptions::resume`.
//! - Step numbering: `StepMetrics::step` (and `Layers`, `Throughput`, `NonFinite`) counts from 1: step k is the
//!   k-th update, after which k steps are done. `Eval`, `Checkpoint`, `State`, `Finished` and `TrainState` carry the
//!   number of steps done. `Applied`/`Rejected` carry the number of the first step that runs with the change.
//! - [`StepRunner`] is the single training step (forward, loss, backward, AGC, optimiser, EMA, statistics), usable
//!   without the thread, e.g. by `nfbench bench`, which reads its split timings as `messages::Throughput`.

pub mod device;
pub mod events;
pub mod messages;
pub mod parts;
pub mod rescue;
pub mod source;
pub mod state;
pub mod step;
mod worker;

pub use events::{EventSender, TrainerHandle};
pub use parts::{select_device, TrainModel};
pub use source::{BatchSource, EvalBatches, HostBatch, SourceInfo, SyntheticSource};
pub use state::{CheckpointWriter, LiveValues, TrainMeta, TrainState};
pub use step::{StepOutcome, StepRunner};

use crate::preset::Preset;
use candle_core::Device;
use std::path::PathBuf;

/// Errors of the training core. Messages name the field or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("invalid setting `{field}`: {reason}")]
    Config { field: String, reason: String },
    #[error("data: {0}")]
    Data(String),
    #[error("model: {0}")]
    Model(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("device: {0}")]
    Device(String),
    #[error("the trainer thread panicked: {0}")]
    Panicked(String),
}

pub type Result<T> = std::result::Result<T, TrainError>;

/// How a trainer is started, besides its preset.
pub struct TrainerOptions {
    /// The run directory (metrics and checkpoints live there); `None` trains without writing anything.
    pub run_dir: Option<PathBuf>,
    /// Restart from this state (model, optimiser, EMA, buffers, step, loader position, live values).
    pub resume: Option<TrainState>,
    /// Overrides `run.device` (`auto`, `cpu`, `cuda:N`).
    pub device: Option<String>,
    /// Capacity of the telemetry lane (>= 1); older telemetry is dropped when it is full.
    pub event_capacity: usize,
    /// Who writes checkpoints (the run record injects its writer: `record::session`); `None` writes none, and a
    /// checkpoint asked for is answered with `Event::Rejected`.
    pub checkpoint_writer: Option<Box<dyn CheckpointWriter>>,
    /// Start paused (waiting for `Resume` or `StepOnce`) instead of running at once.
    pub start_paused: bool,
}

impl Default for TrainerOptions {
    fn default() -> Self {
        Self {
            run_dir: None,
            resume: None,
            device: None,
            event_capacity: 1024,
            checkpoint_writer: None,
            start_paused: false,
        }
    }
}

impl std::fmt::Debug for TrainerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainerOptions")
            .field("run_dir", &self.run_dir)
            .field("resume", &self.resume.as_ref().map(|s| s.meta.step))
            .field("device", &self.device)
            .field("event_capacity", &self.event_capacity)
            .field("checkpoint_writer", &self.checkpoint_writer.is_some())
            .field("start_paused", &self.start_paused)
            .finish()
    }
}

/// What a finished (or stopped) run reports through [`TrainerHandle::join`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainSummary {
    /// Steps completed (the step counter at the end).
    pub steps: u64,
    /// Mean training loss over the last steps of the run (up to 50), NaN when no step ran.
    pub final_train_loss: f64,
    /// Top-1 of the last evaluation as a fraction, NaN when none ran.
    pub val_top1: f64,
    /// Training images per second of wall time spent in steps (evaluation excluded).
    pub images_per_sec: f64,
    /// How the run ended.
    pub state: messages::RunState,
}

/// Builds the model and data for a trainer on its own thread, given the device it chose.
pub type PartsFactory =
    Box<dyn FnOnce(&Device, &Preset, Option<&TrainState>) -> Result<parts::Parts> + Send>;

/// The entry point: spawns trainer threads.
pub struct Trainer;

impl Trainer {
    /// Start training `preset` on a background thread; see the module docs for the protocol.
    pub fn spawn(preset: Preset, opts: TrainerOptions) -> Result<TrainerHandle> {
        Self::spawn_with(preset, opts, Box::new(parts::build_parts))
    }

    /// Like [`Trainer::spawn`] with a custom model/data factory (tests, benchmarks, other data sources).
    pub fn spawn_with(
        preset: Preset,
        opts: TrainerOptions,
        factory: PartsFactory,
    ) -> Result<TrainerHandle> {
        parts::validate_preset(&preset)?;
        worker::spawn(preset, opts, factory)
    }
}
