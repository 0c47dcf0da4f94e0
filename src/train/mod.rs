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
//! - Events come out on **two lanes** (see [`events`]): `handle.lanes.events` carries everything that must be delivered
//!   (state changes, `Applied`/`Rejected` acknowledgements, eval results, checkpoints, non-finite steps, warnings,
//!   errors, `Finished`): unbounded, never dropped. `handle.lanes.telemetry` carries `Step`, `Layers` and `Throughput`
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

pub use events::{EventReceiver, EventSender, TrainerHandle};
pub use parts::{select_device, TrainModel};
pub use source::{BatchSource, EvalBatches, HostBatch, SourceInfo, SyntheticSource};
pub use state::{CheckpointWriter, LiveValues, TrainMeta, TrainState};
pub use step::{StepOutcome, StepRunner};

use crate::preset::schema::DeviceSpec;
use crate::preset::Preset;
use candle_core::Device;
use std::path::PathBuf;

/// Errors of the training core. Each variant's Display says only its own level (what failed, the field or the
/// device); the cause is its `source()`, so a chain printer ([`error_chain`], anyhow's `{:#}`) shows each level once.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("tensor operation failed")]
    Candle(#[from] candle_core::Error),
    #[error("invalid setting `{field}`: {reason}")]
    Config { field: String, reason: String },
    #[error("data")]
    Data(#[from] crate::data::DataError),
    #[error("model")]
    Model(#[from] crate::model::ModelError),
    /// `model.init_from` could not be loaded.
    #[error("model.init_from")]
    Weights(#[from] crate::weights::WeightsError),
    /// A checkpoint that cannot be written or resumed from: `what` says which part, `source` why, where a lower
    /// layer said so.
    #[error("checkpoint: {what}")]
    Checkpoint {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    #[error("device `{spec}`")]
    Device {
        spec: DeviceSpec,
        #[source]
        source: candle_core::Error,
    },
    #[error("the trainer thread panicked: {0}")]
    Panicked(String),
}

/// Any error a lower or injected part (a checkpoint writer) hands the trainer, with its own chain of causes.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl TrainError {
    /// A checkpoint problem that is the whole story (a format or model mismatch, a missing tensor).
    pub fn checkpoint(what: impl Into<String>) -> Self {
        TrainError::Checkpoint {
            what: what.into(),
            source: None,
        }
    }

    /// A checkpoint problem caused by `source` (a writer's failure, undecodable metadata).
    pub fn checkpoint_from(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        TrainError::Checkpoint {
            what: what.into(),
            source: Some(source.into()),
        }
    }
}

/// `error: its cause: its cause's cause`, each level once, as anyhow's `{:#}` prints it at the edge: for messages
/// that leave the process as text (trainer events, the run list) rather than as an error value.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cause = e.source();
    }
    out
}

pub type Result<T> = std::result::Result<T, TrainError>;

/// How a trainer is started, besides its preset.
pub struct TrainerOptions {
    /// The run directory (metrics and checkpoints live there); `None` trains without writing anything.
    pub run_dir: Option<PathBuf>,
    /// Restart from this state (model, optimiser, EMA, buffers, step, loader position, live values).
    pub resume: Option<TrainState>,
    /// Overrides `run.device`.
    pub device: Option<DeviceSpec>,
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
