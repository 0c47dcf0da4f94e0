//! The typed messages between the trainer thread and the outside (TUI, headless runner, run record).
//!
//! Commands flow in on an unbounded channel; events flow out. Telemetry events ([`Event::is_telemetry`]) may be
//! coalesced or dropped under back-pressure; acknowledgements, errors and lifecycle events never are.
//! Everything here is plain host data: no tensor ever crosses the channel.

use crate::optim::agc::{self, ClipShare, RATIO_EDGES};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A hyperparameter that can change while the trainer runs, declared in the preset's live table.
pub use crate::preset::live::LiveParam;

/// What the outside asks of the trainer (serde: an attached workbench sends them over the run's socket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Pause,
    Resume,
    /// Run exactly one step, then stay paused.
    StepOnce,
    /// Change live hyperparameters at the next step boundary; `origin` says where the change came from
    /// (e.g. "keys", "preset reload"), and comes back in the acknowledgement.
    Set {
        params: Vec<LiveParam>,
        origin: String,
    },
    /// Write a checkpoint at the next step boundary.
    CheckpointNow,
    /// Evaluate on the validation split at the next step boundary.
    EvaluateNow,
    /// Stop after the current step; `checkpoint` writes a final checkpoint first.
    Stop {
        checkpoint: bool,
    },
}

/// The trainer's run state, as shown in the status bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    Starting,
    Running,
    Paused,
    /// Paused by itself after too many consecutive non-finite steps.
    Diverged,
    Finished,
    Stopped,
    Failed,
}

/// Scalars of one training step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: u64,
    pub epoch: f64,
    pub loss: f64,
    /// Training top-1 of this batch, as a fraction.
    pub train_top1: f64,
    pub lr: f64,
    pub lambda: f64,
    pub alpha: f64,
    /// Global gradient norm before clipping (NaN when not computed this step).
    pub grad_norm: f64,
    /// Fraction of all AGC units clipped this step (NaN when not computed this step).
    pub clipped_fraction: f64,
    pub images_per_sec: f64,
    pub step_ms: f64,
}

/// A validation result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    pub step: u64,
    pub loss: f64,
    /// Top-1 accuracy as a fraction.
    pub top1: f64,
    pub top5: f64,
    pub images: usize,
    /// Whether the EMA weights were evaluated.
    pub ema: bool,
}

/// AGC statistics of one parameter at one statistics step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgcLayerStats {
    pub name: String,
    /// ||W|| over the whole tensor.
    pub weight_norm: f64,
    /// ||G|| over the whole tensor, before clipping.
    pub grad_norm: f64,
    /// max over units of ||G_u|| / max(||W_u||, eps).
    pub max_ratio: f64,
    /// mean over units of ||G_u|| / max(||W_u||, eps).
    pub mean_ratio: f64,
    /// Fraction of this parameter's units that were clipped.
    pub clipped_fraction: f64,
    pub units: usize,
    /// Whether AGC applies to this parameter (false for excluded and frozen ones).
    pub clipped_by_agc: bool,
    /// A frozen parameter (`model.freeze`): never updated, no AGC statistics (NaN).
    #[serde(default)]
    pub frozen: bool,
    /// The what-if histogram, cumulative: per edge of [`RATIO_EDGES`], the units whose ratio exceeds it (what AGC
    /// would clip at lambda = that edge). Empty when not measured (frozen layers, older records).
    #[serde(default)]
    pub ratio_counts: Vec<f64>,
}

impl AgcLayerStats {
    /// The share of this layer's units AGC would clip at `lambda` (see [`agc::clipped_share`]).
    pub fn clipped_share_at(&self, lambda: f64) -> Option<ClipShare> {
        agc::clipped_share(&self.ratio_counts, self.units as f64, lambda)
    }

    /// Units per histogram bin (under, one per pair of edges, over); empty when not measured.
    pub fn ratio_bins(&self) -> Vec<f64> {
        agc::ratio_bins(&self.ratio_counts, self.units as f64)
    }
}

/// Signal-propagation statistics of one residual block (see the spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SppBlockStats {
    /// Block name, e.g. `s1.b0`.
    pub name: String,
    /// The variance the bookkeeping predicts for the residual stream after the block (what `avg_var`, measured on
    /// the block's output, is compared against).
    pub predicted_var: f64,
    pub avg_sq_mean: f64,
    pub avg_var: f64,
    pub res_avg_var: f64,
}

/// Per-layer statistics at one statistics step, copied from the device in one batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerStats {
    pub step: u64,
    pub agc: Vec<AgcLayerStats>,
    pub spp: Vec<SppBlockStats>,
    /// Fraction of all AGC units clipped.
    pub total_clipped_fraction: f64,
}

impl LayerStats {
    /// The share of the units of every layer AGC applies to that it would clip at `lambda`, as the net's total
    /// clipped fraction counts them; `None` when no such layer has counts.
    pub fn net_clipped_share_at(&self, lambda: f64) -> Option<ClipShare> {
        let (counts, units) = self.net_ratio_counts()?;
        agc::clipped_share(&counts, units, lambda)
    }

    /// The cumulative counts summed over the layers AGC applies to, and their units.
    pub fn net_ratio_counts(&self) -> Option<(Vec<f64>, f64)> {
        let mut counts = vec![0.0; RATIO_EDGES.len()];
        let mut units = 0.0;
        for a in self.agc.iter().filter(|a| a.clipped_by_agc) {
            if a.ratio_counts.len() != counts.len() {
                continue;
            }
            for (sum, c) in counts.iter_mut().zip(&a.ratio_counts) {
                *sum += c;
            }
            units += a.units as f64;
        }
        (units > 0.0).then_some((counts, units))
    }
}

/// Split of a step's wall time, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub step: u64,
    pub images_per_sec: f64,
    pub step_ms: f64,
    pub data_ms: f64,
    pub forward_ms: f64,
    pub backward_ms: f64,
    pub agc_ms: f64,
    pub optimizer_ms: f64,
    pub stats_ms: f64,
}

/// What `Event::Started` says: the trainer is up. Kept as JSON in the record's `started` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStart {
    pub model: String,
    /// Readable device name (`cpu (2 threads)`, `cuda:0 NVIDIA H100 80GB HBM3`).
    pub device: String,
    /// Activation precision (`f32` or `bf16`); absent in records written before it was recorded.
    #[serde(default = "f32_name")]
    pub precision: String,
    pub params: usize,
    pub steps: u64,
    pub start_step: u64,
    pub run_dir: Option<PathBuf>,
}

fn f32_name() -> String {
    "f32".into()
}

/// What triggered a divergence rescue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RescueTrigger {
    /// This many non-finite steps in a row.
    NonFinite { consecutive: u32 },
    /// A finite loss above `factor` x the running `median` of the recent finite losses.
    Spike { loss: f64, median: f64, factor: f64 },
}

/// What a divergence rescue did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RescueAction {
    /// Restored the checkpoint of step `to_step` (model, optimiser, EMA, step), applied `params` (the remedy, also
    /// sent as an `Applied` with origin `rescue`) and skipped the `skipped_batches` batches trained since it.
    RolledBack {
        to_step: u64,
        checkpoint: PathBuf,
        params: Vec<LiveParam>,
        skipped_batches: u64,
    },
    /// Every allowed rescue was used: the run pauses as `Diverged`.
    GaveUp,
    /// Nothing to roll back to (`reason`: no checkpoint written yet, none readable, no run directory): the run
    /// pauses as `Diverged`.
    NoCheckpoint { reason: String },
}

/// One act of the divergence-rescue policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RescueReport {
    /// The step that triggered it (numbered like `StepMetrics::step`).
    pub step: u64,
    pub trigger: RescueTrigger,
    pub action: RescueAction,
    /// Rollbacks done in this run so far, this one included.
    pub rescues: u32,
    /// Rollbacks allowed (`rescue.max_rescues`).
    pub max_rescues: u32,
}

impl RescueReport {
    /// One line for logs, the events pane and the events table.
    pub fn describe(&self) -> String {
        let why = match &self.trigger {
            RescueTrigger::NonFinite { consecutive } => {
                format!("{consecutive} non-finite steps in a row")
            }
            RescueTrigger::Spike {
                loss,
                median,
                factor,
            } => format!("loss {loss:.4} > {factor} x median {median:.4}"),
        };
        let what = match &self.action {
            RescueAction::RolledBack {
                to_step,
                params,
                skipped_batches,
                ..
            } => {
                let set: Vec<String> = params
                    .iter()
                    .map(|p| format!("{} = {}", p.key(), p.value_string()))
                    .collect();
                format!(
                    "rescue {}/{}: rolled back to step {to_step}, {}, skipped {skipped_batches} batches",
                    self.rescues,
                    self.max_rescues,
                    if set.is_empty() {
                        "nothing to tighten".to_string()
                    } else {
                        set.join(", ")
                    }
                )
            }
            RescueAction::GaveUp => {
                format!("gave up after {} rescues: paused as diverged", self.rescues)
            }
            RescueAction::NoCheckpoint { reason } => {
                format!("no rollback ({reason}): paused as diverged")
            }
        };
        format!("step {}: {why}: {what}", self.step)
    }
}

/// What the trainer tells the outside (serde: the run's socket carries them to attached workbenches).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// The trainer is up: model, device, total steps, and where the run lives.
    Started(RunStart),
    State {
        state: RunState,
        step: u64,
    },
    Step(StepMetrics),
    Eval(EvalMetrics),
    Layers(Box<LayerStats>),
    Throughput(Throughput),
    /// Memory in use on the training device, once per statistics interval.
    Memory {
        step: u64,
        memory: crate::train::device::MemoryUse,
    },
    /// A live change took effect before step `step` ran.
    Applied {
        params: Vec<LiveParam>,
        origin: String,
        step: u64,
    },
    /// A change could not be applied (out of range, restart-only, ...).
    Rejected {
        what: String,
        reason: String,
        step: u64,
    },
    Checkpoint {
        path: PathBuf,
        step: u64,
    },
    /// A checkpoint could not be written (disk full, directory gone, ...): `last_saved` is the step of the last
    /// checkpoint on disk, the one a resume would start from. The trainer pauses and retries (see `worker.rs`).
    CheckpointFailed {
        step: u64,
        reason: String,
        last_saved: Option<u64>,
    },
    /// A step produced a non-finite loss or gradient and was skipped.
    NonFinite {
        step: u64,
        what: String,
        consecutive: u32,
    },
    /// The divergence-rescue policy (`[rescue]`) acted: what triggered it and what it did.
    Rescued(RescueReport),
    Warning(String),
    Error(String),
    Finished {
        step: u64,
    },
}

impl Event {
    /// Telemetry may be coalesced or dropped under back-pressure; everything else must be delivered.
    pub fn is_telemetry(&self) -> bool {
        matches!(
            self,
            Event::Step(_) | Event::Layers(_) | Event::Throughput(_) | Event::Memory { .. }
        )
    }
}
