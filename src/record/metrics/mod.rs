//! `metrics.h5`: the run's metrics log, written by the [`Recorder`] from trainer events and read back as a
//! [`RecordedRun`].
//!
//! Layout (documented for h5py / pandas users in the README, "Run records (metrics.h5)"): every table is a group of
//! equally long 1-D columns (`/steps`, `/eval`, `/throughput`, `/events`), so
//! `pd.DataFrame({k: f["steps"][k][:] for k in f["steps"]})` reads one. Per-layer statistics (`/layers/agc`,
//! `/layers/spp`) are 2-D `[snapshot, layer]` arrays with the layer (block) names in the group's `names` attribute.
//!
//! Crash safety: rows are buffered in memory and only touch the file when flushed (every statistics interval,
//! every checkpoint, every non-telemetry event, and at least every [`FLUSH_SECONDS`]). Between flushes the file on
//! disk is exactly the last flushed state, so a SIGKILL loses at most the unflushed rows and the file still opens.
//! The superblock stays at the earliest format version on purpose: the 1.10 format marks files "open for writing"
//! and refuses to open them after a crash until `h5clear` is run.

use super::run_dir::RunDir;
use super::{RecordError, Result};
use crate::optim::agc::RATIO_EDGES;
use crate::train::messages::{
    AgcLayerStats, EvalMetrics, Event, LayerStats, LiveParam, RescueAction, RescueReport,
    SppBlockStats, StepMetrics, Throughput,
};
use hdf5::types::VarLenUnicode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Value of the root attribute `format`.
pub const FORMAT: &str = "nfbench-metrics";
/// Value of the root attribute `version`; bumped when the layout changes incompatibly.
pub const VERSION: u64 = 1;
/// The longest the recorder keeps rows in memory when statistics events do not come (e.g. dropped under
/// back-pressure).
pub const FLUSH_SECONDS: f64 = 10.0;
/// Buffered step rows that force a flush regardless of time.
const MAX_PENDING_ROWS: usize = 4096;

/// Element type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    U64,
    F64,
    /// Booleans, stored as 0 / 1 bytes.
    Bool,
    /// Variable-length UTF-8 strings.
    Str,
}

/// One column of a table: its dataset name, type and meaning (the README's schema is checked against these).
#[derive(Debug, Clone, Copy)]
pub struct ColSpec {
    pub name: &'static str,
    pub ty: ColType,
    pub doc: &'static str,
}

const fn col(name: &'static str, ty: ColType, doc: &'static str) -> ColSpec {
    ColSpec { name, ty, doc }
}

use ColType::{Bool, Str, F64, U64};

/// `/steps`: one row per training step.
pub const STEP_COLUMNS: &[ColSpec] = &[
    col(
        "step",
        U64,
        "training step number as reported by the trainer",
    ),
    col(
        "time",
        F64,
        "wall clock when recorded, seconds since the Unix epoch",
    ),
    col("epoch", F64, "epochs done (fractional)"),
    col("loss", F64, "training loss of the batch"),
    col("train_top1", F64, "training top-1 of the batch, fraction"),
    col("lr", F64, "learning rate used"),
    col("lambda", F64, "AGC clipping threshold lambda"),
    col("alpha", F64, "residual scale alpha"),
    col(
        "grad_norm",
        F64,
        "global gradient norm before clipping (NaN when not computed)",
    ),
    col(
        "clipped_fraction",
        F64,
        "fraction of all AGC units clipped (NaN when not computed)",
    ),
    col("images_per_sec", F64, "training throughput"),
    col("step_ms", F64, "wall time of the step, milliseconds"),
];

/// `/eval`: one row per validation run.
pub const EVAL_COLUMNS: &[ColSpec] = &[
    col("step", U64, "training step the evaluation followed"),
    col("time", F64, "wall clock, seconds since the Unix epoch"),
    col("loss", F64, "validation loss"),
    col("top1", F64, "validation top-1 accuracy, fraction"),
    col("top5", F64, "validation top-5 accuracy, fraction"),
    col("images", U64, "validation images evaluated"),
    col("ema", Bool, "1 when the EMA weights were evaluated"),
];

/// `/throughput`: where a step's time went, one row per throughput report.
pub const THROUGHPUT_COLUMNS: &[ColSpec] = &[
    col("step", U64, "training step"),
    col("images_per_sec", F64, "training throughput"),
    col("step_ms", F64, "whole step, milliseconds"),
    col("data_ms", F64, "waiting for the loader, milliseconds"),
    col("forward_ms", F64, "forward pass, milliseconds"),
    col("backward_ms", F64, "backward pass, milliseconds"),
    col("agc_ms", F64, "adaptive gradient clipping, milliseconds"),
    col("optimizer_ms", F64, "optimiser update, milliseconds"),
    col("stats_ms", F64, "per-layer statistics, milliseconds"),
];

/// `/events`: hyperparameter changes, reloads, rejected edits, checkpoints, errors, lifecycle.
pub const EVENT_COLUMNS: &[ColSpec] = &[
    col("step", U64, "step at which it happened (a change applies before this step runs)"),
    col("time", F64, "wall clock, seconds since the Unix epoch"),
    col(
        "kind",
        Str,
        "started, state, applied, rejected, checkpoint, nonfinite, warning, error, finished, resumed",
    ),
    col(
        "key",
        Str,
        "applied: the preset key (agc.lambda, model.alpha, ...); rejected: what was rejected; state: the state",
    ),
    col("value", Str, "applied: the new value; nonfinite: consecutive count; checkpoint: the path"),
    col(
        "detail",
        Str,
        "applied: origin (keys, preset reload, ...); rejected: the reason; started: JSON; warning/error: message",
    ),
];

/// Per-layer AGC fields of `/layers/agc`, each `[snapshot, layer]`.
pub const AGC_FIELDS: &[ColSpec] = &[
    col("weight_norm", F64, "||W|| over the whole tensor"),
    col(
        "grad_norm",
        F64,
        "||G|| over the whole tensor, before clipping",
    ),
    col(
        "max_ratio",
        F64,
        "max over units of ||G_u|| / max(||W_u||, eps)",
    ),
    col(
        "mean_ratio",
        F64,
        "mean over units of ||G_u|| / max(||W_u||, eps)",
    ),
    col(
        "clipped_fraction",
        F64,
        "fraction of the layer's units clipped",
    ),
];

/// Per-block signal-propagation fields of `/layers/spp`, each `[snapshot, block]`.
pub const SPP_FIELDS: &[ColSpec] = &[
    col(
        "predicted_var",
        F64,
        "variance the alpha/beta bookkeeping predicts at the block input",
    ),
    col(
        "avg_sq_mean",
        F64,
        "average squared channel mean at the block output",
    ),
    col(
        "avg_var",
        F64,
        "average channel variance at the block output",
    ),
    col(
        "res_avg_var",
        F64,
        "average channel variance of the residual branch output",
    ),
];

/// One row of the events table, as plain data.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub step: u64,
    pub time: f64,
    pub kind: String,
    pub key: String,
    pub value: String,
    pub detail: String,
}

impl EventRow {
    fn new(step: u64, time: f64, kind: &str, key: &str, value: &str, detail: &str) -> Self {
        EventRow {
            step,
            time,
            kind: kind.into(),
            key: key.into(),
            value: value.into(),
            detail: detail.into(),
        }
    }
}

/// What `Started` said, kept as JSON in the `started` event's detail and as root attributes.
pub use crate::train::messages::RunStart as StartedInfo;

/// Everything a `metrics.h5` holds, read back into plain data.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordedRun {
    pub path: PathBuf,
    /// The preset the run was created with (TOML text), empty if absent.
    pub preset_toml: String,
    /// Root attribute `created` (RFC 3339).
    pub created: String,
    pub steps: Vec<StepMetrics>,
    /// Wall clock of each step row (seconds since the Unix epoch), parallel to `steps`.
    pub step_times: Vec<f64>,
    pub evals: Vec<EvalMetrics>,
    /// Statistics snapshots, AGC and signal propagation merged by step.
    pub layers: Vec<LayerStats>,
    pub throughput: Vec<Throughput>,
    pub events: Vec<EventRow>,
}

impl RecordedRun {
    /// The last `started` event's information, if any.
    pub fn started(&self) -> Option<StartedInfo> {
        self.events
            .iter()
            .rev()
            .filter(|e| e.kind == "started")
            .find_map(|e| serde_json::from_str(&e.detail).ok())
    }

    /// The best validation result by top-1 (the latest of equals).
    pub fn best_eval(&self) -> Option<&EvalMetrics> {
        self.evals.iter().filter(|e| e.top1.is_finite()).fold(
            None,
            |best: Option<&EvalMetrics>, e| match best {
                Some(b) if b.top1 > e.top1 => Some(b),
                _ => Some(e),
            },
        )
    }

    /// The last step recorded.
    pub fn last_step(&self) -> Option<u64> {
        self.steps.last().map(|s| s.step)
    }

    /// Applied hyperparameter changes of `key` (e.g. `agc.lambda`), as (step, value).
    pub fn changes_of(&self, key: &str) -> Vec<(u64, String)> {
        self.events
            .iter()
            .filter(|e| e.kind == "applied" && e.key == key)
            .map(|e| (e.step, e.value.clone()))
            .collect()
    }
}

mod reader;
mod recorder;
mod rows;
mod table;

pub use reader::read_run;
use reader::*;
pub use recorder::Recorder;
use rows::*;
pub use rows::{event_rows, live_param_from};
use table::*;

pub(super) fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
