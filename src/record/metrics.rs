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
use crate::train::messages::{
    AgcLayerStats, EvalMetrics, Event, LayerStats, LiveParam, SppBlockStats, StepMetrics,
    Throughput,
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
    fn new(step: u64, kind: &str, key: &str, value: &str, detail: &str) -> Self {
        EventRow {
            step,
            time: now_seconds(),
            kind: kind.into(),
            key: key.into(),
            value: value.into(),
            detail: detail.into(),
        }
    }
}

/// What `Started` said, kept as JSON in the `started` event's detail and as root attributes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StartedInfo {
    pub model: String,
    pub device: String,
    pub params: usize,
    pub steps: u64,
    pub start_step: u64,
    pub run_dir: Option<PathBuf>,
}

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

/// A cell of a row being appended.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    U(u64),
    F(f64),
    B(bool),
    S(String),
}

/// An appendable group of 1-D columns.
struct Table {
    group: String,
    specs: &'static [ColSpec],
    datasets: Vec<hdf5::Dataset>,
    pending: Vec<Vec<Cell>>,
    written: usize,
}

const TABLE_CHUNK: usize = 1024;

impl Table {
    fn create(
        file: &hdf5::File,
        path: &Path,
        group: &str,
        specs: &'static [ColSpec],
    ) -> Result<Table> {
        let g = file
            .create_group(group)
            .map_err(|e| RecordError::hdf5(path, e))?;
        let mut datasets = Vec::with_capacity(specs.len());
        for spec in specs {
            let ds = create_column(&g, spec.name, spec.ty)
                .map_err(|e| hdf5_at(path, group, spec.name, e))?;
            set_str_attr(&ds, "description", spec.doc)
                .map_err(|e| hdf5_at(path, group, spec.name, e))?;
            datasets.push(ds);
        }
        Ok(Table {
            group: group.into(),
            specs,
            datasets,
            pending: Vec::new(),
            written: 0,
        })
    }

    /// Opens an existing table for appending; a column shorter than the others (a flush cut short) trims the
    /// table to the shortest.
    fn open(
        file: &hdf5::File,
        path: &Path,
        group: &str,
        specs: &'static [ColSpec],
    ) -> Result<Table> {
        let g = file.group(group).map_err(|e| hdf5_at(path, group, "", e))?;
        let mut datasets = Vec::with_capacity(specs.len());
        for spec in specs {
            datasets.push(
                g.dataset(spec.name)
                    .map_err(|e| hdf5_at(path, group, spec.name, e))?,
            );
        }
        let written = datasets.iter().map(|d| d.size()).min().unwrap_or(0);
        let mut table = Table {
            group: group.into(),
            specs,
            datasets,
            pending: Vec::new(),
            written,
        };
        table.resize_all(path, written)?;
        Ok(table)
    }

    fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.specs.len());
        self.pending.push(row);
    }

    fn flush(&mut self, path: &Path) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let start = self.written;
        let end = start + self.pending.len();
        for (c, (spec, ds)) in self.specs.iter().zip(&self.datasets).enumerate() {
            let cells = self.pending.iter().map(|row| &row[c]);
            let at = |e: hdf5::Error| hdf5_at(path, &self.group, spec.name, e);
            ds.resize(end).map_err(at)?;
            write_cells(ds, spec.ty, cells, start..end).map_err(at)?;
        }
        self.written = end;
        self.pending.clear();
        Ok(())
    }

    fn resize_all(&mut self, path: &Path, rows: usize) -> Result<()> {
        for (spec, ds) in self.specs.iter().zip(&self.datasets) {
            if ds.size() != rows {
                ds.resize(rows)
                    .map_err(|e| hdf5_at(path, &self.group, spec.name, e))?;
            }
        }
        self.written = rows;
        Ok(())
    }

    /// Drops the written rows whose `step` column is greater than `step` (rows are appended in step order).
    fn truncate_after(&mut self, path: &Path, step: u64) -> Result<()> {
        let steps: Vec<u64> = self.datasets[0]
            .read_raw()
            .map_err(|e| hdf5_at(path, &self.group, "step", e))?;
        let keep = steps
            .iter()
            .take(self.written)
            .take_while(|&&s| s <= step)
            .count();
        self.resize_all(path, keep)
    }
}

/// A `[snapshot, layer]` statistics group, created on the first snapshot (when the names are known).
struct LayerTable {
    group: String,
    names: Vec<String>,
    fields: &'static [ColSpec],
    step: hdf5::Dataset,
    /// `/layers/agc/total_clipped_fraction` (AGC only).
    total: Option<hdf5::Dataset>,
    datasets: Vec<hdf5::Dataset>,
    /// (step, total, one row of values per field).
    pending: Vec<(u64, f64, Vec<Vec<f64>>)>,
    written: usize,
}

impl LayerTable {
    fn create(
        file: &hdf5::File,
        path: &Path,
        group: &str,
        names: Vec<String>,
        fields: &'static [ColSpec],
        with_total: bool,
    ) -> Result<LayerTable> {
        let g = file
            .create_group(group)
            .map_err(|e| RecordError::hdf5(path, e))?;
        let at = |name: &str| {
            let name = name.to_string();
            move |e: hdf5::Error| hdf5_at(path, group, &name, e)
        };
        set_str_array_attr(&g, "names", &names).map_err(at("@names"))?;
        let step = create_column(&g, "step", U64).map_err(at("step"))?;
        let total = if with_total {
            let ds = create_column(&g, "total_clipped_fraction", F64)
                .map_err(at("total_clipped_fraction"))?;
            set_str_attr(&ds, "description", "fraction of all AGC units clipped")
                .map_err(at("total"))?;
            Some(ds)
        } else {
            None
        };
        let rows_per_chunk = (65536 / (8 * names.len().max(1))).clamp(1, 64);
        let mut datasets = Vec::new();
        for spec in fields {
            let ds = g
                .new_dataset::<f64>()
                .chunk((rows_per_chunk, names.len().max(1)))
                .shape((0.., names.len()))
                .create(spec.name)
                .map_err(at(spec.name))?;
            set_str_attr(&ds, "description", spec.doc).map_err(at(spec.name))?;
            datasets.push(ds);
        }
        Ok(LayerTable {
            group: group.into(),
            names,
            fields,
            step,
            total,
            datasets,
            pending: Vec::new(),
            written: 0,
        })
    }

    fn open(
        file: &hdf5::File,
        path: &Path,
        group: &str,
        fields: &'static [ColSpec],
    ) -> Result<Option<LayerTable>> {
        if !file.link_exists(group) {
            return Ok(None);
        }
        let at = |name: &str| {
            let name = name.to_string();
            move |e: hdf5::Error| hdf5_at(path, group, &name, e)
        };
        let g = file.group(group).map_err(at(""))?;
        let names = read_str_array_attr(&g, "names").map_err(at("@names"))?;
        let step = g.dataset("step").map_err(at("step"))?;
        let total = if g.link_exists("total_clipped_fraction") {
            Some(
                g.dataset("total_clipped_fraction")
                    .map_err(at("total_clipped_fraction"))?,
            )
        } else {
            None
        };
        let mut datasets = Vec::new();
        for spec in fields {
            datasets.push(g.dataset(spec.name).map_err(at(spec.name))?);
        }
        let mut written = step.size();
        for ds in total.iter().chain(&datasets) {
            written = written.min(ds.shape().first().copied().unwrap_or(0));
        }
        let mut table = LayerTable {
            group: group.into(),
            names,
            fields,
            step,
            total,
            datasets,
            pending: Vec::new(),
            written,
        };
        table.resize_all(path, written)?;
        Ok(Some(table))
    }

    fn resize_all(&mut self, path: &Path, rows: usize) -> Result<()> {
        let at = |e: hdf5::Error| hdf5_at(path, &self.group, "", e);
        self.step.resize(rows).map_err(at)?;
        if let Some(t) = &self.total {
            t.resize(rows).map_err(at)?;
        }
        for ds in &self.datasets {
            ds.resize((rows, self.names.len())).map_err(at)?;
        }
        self.written = rows;
        Ok(())
    }

    fn truncate_after(&mut self, path: &Path, step: u64) -> Result<()> {
        let steps: Vec<u64> = self
            .step
            .read_raw()
            .map_err(|e| hdf5_at(path, &self.group, "step", e))?;
        let keep = steps
            .iter()
            .take(self.written)
            .take_while(|&&s| s <= step)
            .count();
        self.resize_all(path, keep)
    }

    fn flush(&mut self, path: &Path) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let start = self.written;
        let end = start + self.pending.len();
        let group = self.group.clone();
        let at = |name: &'static str| {
            let group = group.clone();
            move |e: hdf5::Error| hdf5_at(path, &group, name, e)
        };
        self.step.resize(end).map_err(at("step"))?;
        let steps: Vec<u64> = self.pending.iter().map(|p| p.0).collect();
        self.step
            .write_slice(&steps[..], start..end)
            .map_err(at("step"))?;
        if let Some(total) = &self.total {
            total.resize(end).map_err(at("total_clipped_fraction"))?;
            let totals: Vec<f64> = self.pending.iter().map(|p| p.1).collect();
            total
                .write_slice(&totals[..], start..end)
                .map_err(at("total_clipped_fraction"))?;
        }
        for (f, (spec, ds)) in self.fields.iter().zip(&self.datasets).enumerate() {
            ds.resize((end, self.names.len())).map_err(at(spec.name))?;
            for (i, (_, _, values)) in self.pending.iter().enumerate() {
                if !self.names.is_empty() {
                    ds.write_slice(&values[f][..], (start + i, ..))
                        .map_err(at(spec.name))?;
                }
            }
        }
        self.written = end;
        self.pending.clear();
        Ok(())
    }
}

/// Appends trainer events to `metrics.h5`. Call [`Recorder::record`] with every event the consumer receives.
pub struct Recorder {
    path: PathBuf,
    file: hdf5::File,
    steps: Table,
    evals: Table,
    throughput: Table,
    events: Table,
    agc: Option<LayerTable>,
    spp: Option<LayerTable>,
    last_flush: Instant,
    /// Last step seen, for events that carry none (warnings, errors).
    last_step: u64,
}

impl Recorder {
    /// Creates `metrics.h5` in a new run directory.
    pub fn create(run: &RunDir) -> Result<Recorder> {
        let preset = std::fs::read_to_string(run.preset_path()).unwrap_or_default();
        Recorder::create_at(&run.metrics_path(), &preset)
    }

    /// Creates a metrics file at `path` (replacing none: an existing file is an error).
    pub fn create_at(path: &Path, preset_toml: &str) -> Result<Recorder> {
        if path.exists() {
            return Err(RecordError::invalid(
                path,
                "already exists; a run's metrics are never overwritten",
            ));
        }
        let file = hdf5::File::create_excl(path).map_err(|e| RecordError::hdf5(path, e))?;
        let h = |e: hdf5::Error| RecordError::hdf5(path, e);
        set_str_attr(&file, "format", FORMAT).map_err(h)?;
        file.new_attr::<u64>()
            .create("version")
            .and_then(|a| a.write_scalar(&VERSION))
            .map_err(h)?;
        set_str_attr(&file, "created", &chrono::Local::now().to_rfc3339()).map_err(h)?;
        set_str_attr(&file, "nfbench_version", env!("CARGO_PKG_VERSION")).map_err(h)?;
        set_str_attr(&file, "preset", preset_toml).map_err(h)?;
        file.create_group("layers").map_err(h)?;
        let mut recorder = Recorder {
            steps: Table::create(&file, path, "steps", STEP_COLUMNS)?,
            evals: Table::create(&file, path, "eval", EVAL_COLUMNS)?,
            throughput: Table::create(&file, path, "throughput", THROUGHPUT_COLUMNS)?,
            events: Table::create(&file, path, "events", EVENT_COLUMNS)?,
            agc: None,
            spp: None,
            path: path.to_path_buf(),
            file,
            last_flush: Instant::now(),
            last_step: 0,
        };
        recorder.flush()?;
        Ok(recorder)
    }

    /// Opens an existing run's `metrics.h5` to continue it from a checkpoint at `resume_step`: rows after that
    /// step (trained after the checkpoint, then lost) are dropped from the step, eval, throughput and layer
    /// tables, so the resumed run's rows follow on without duplicates. The events table keeps its history and
    /// gets a `resumed` row.
    pub fn open_for_resume(run: &RunDir, resume_step: u64) -> Result<Recorder> {
        let path = run.metrics_path();
        let file = open_rw(&path)?;
        check_format(&file, &path)?;
        let mut recorder = Recorder {
            steps: Table::open(&file, &path, "steps", STEP_COLUMNS)?,
            evals: Table::open(&file, &path, "eval", EVAL_COLUMNS)?,
            throughput: Table::open(&file, &path, "throughput", THROUGHPUT_COLUMNS)?,
            events: Table::open(&file, &path, "events", EVENT_COLUMNS)?,
            agc: LayerTable::open(&file, &path, "layers/agc", AGC_FIELDS)?,
            spp: LayerTable::open(&file, &path, "layers/spp", SPP_FIELDS)?,
            path: path.clone(),
            file,
            last_flush: Instant::now(),
            last_step: resume_step,
        };
        recorder.steps.truncate_after(&path, resume_step)?;
        recorder.evals.truncate_after(&path, resume_step)?;
        recorder.throughput.truncate_after(&path, resume_step)?;
        if let Some(t) = &mut recorder.agc {
            t.truncate_after(&path, resume_step)?;
        }
        if let Some(t) = &mut recorder.spp {
            t.truncate_after(&path, resume_step)?;
        }
        recorder.note(
            resume_step,
            "resumed",
            "",
            "",
            "continued from the checkpoint at this step",
        );
        recorder.flush()?;
        Ok(recorder)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records one event. Telemetry is buffered; statistics snapshots, evaluations, checkpoints and every other
    /// non-telemetry event flush the buffer to disk.
    pub fn record(&mut self, event: &Event) -> Result<()> {
        let flush = match event {
            Event::Step(m) => {
                self.last_step = m.step;
                self.steps.push(step_row(m, now_seconds()));
                self.steps.pending.len() >= MAX_PENDING_ROWS
            }
            Event::Throughput(t) => {
                self.throughput.push(throughput_row(t));
                false
            }
            Event::Layers(stats) => {
                self.push_layers(stats)?;
                true
            }
            Event::Eval(e) => {
                self.evals.push(eval_row(e, now_seconds()));
                true
            }
            Event::Checkpoint { .. } => {
                self.push_event(event);
                self.flush()?;
                return self.sync();
            }
            other => {
                self.push_event(other);
                true
            }
        };
        if flush || self.last_flush.elapsed().as_secs_f64() >= FLUSH_SECONDS {
            self.flush()?;
        }
        Ok(())
    }

    /// Adds a row to the events table (for things that are not trainer events, e.g. `resumed`).
    pub fn note(&mut self, step: u64, kind: &str, key: &str, value: &str, detail: &str) {
        self.events
            .push(event_row(&EventRow::new(step, kind, key, value, detail)));
    }

    /// Writes every buffered row and flushes the HDF5 file to the operating system.
    pub fn flush(&mut self) -> Result<()> {
        let path = self.path.clone();
        self.steps.flush(&path)?;
        self.evals.flush(&path)?;
        self.throughput.flush(&path)?;
        self.events.flush(&path)?;
        if let Some(t) = &mut self.agc {
            t.flush(&path)?;
        }
        if let Some(t) = &mut self.spp {
            t.flush(&path)?;
        }
        self.file.flush().map_err(|e| RecordError::hdf5(&path, e))?;
        self.last_flush = Instant::now();
        Ok(())
    }

    /// [`flush`](Self::flush), then fsync, so the log survives a power cut too (done at checkpoints).
    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        std::fs::File::open(&self.path)
            .and_then(|f| f.sync_data())
            .map_err(|e| RecordError::io(&self.path, e))
    }

    fn push_event(&mut self, event: &Event) {
        for row in event_rows(event, self.last_step) {
            if row.kind == "started" {
                self.set_started_attrs(&row);
            }
            self.events.push(event_row(&row));
        }
    }

    /// Root attributes `model`, `device`, `params` from the latest `Started`, for quick listing.
    fn set_started_attrs(&mut self, row: &EventRow) {
        if let Ok(info) = serde_json::from_str::<StartedInfo>(&row.detail) {
            let _ = set_str_attr(&self.file, "model", &info.model);
            let _ = set_str_attr(&self.file, "device", &info.device);
        }
    }

    fn push_layers(&mut self, stats: &LayerStats) -> Result<()> {
        if !stats.agc.is_empty() {
            let names: Vec<String> = stats.agc.iter().map(|a| a.name.clone()).collect();
            if self.agc.is_none() {
                let table = LayerTable::create(
                    &self.file,
                    &self.path,
                    "layers/agc",
                    names.clone(),
                    AGC_FIELDS,
                    true,
                )?;
                write_agc_constants(&self.file, &self.path, &stats.agc)?;
                self.agc = Some(table);
            }
            let values = agc_values(&stats.agc);
            self.push_layer_row(
                "layers/agc",
                names,
                stats.step,
                stats.total_clipped_fraction,
                values,
            );
        }
        if !stats.spp.is_empty() {
            let names: Vec<String> = stats.spp.iter().map(|b| b.name.clone()).collect();
            if self.spp.is_none() {
                self.spp = Some(LayerTable::create(
                    &self.file,
                    &self.path,
                    "layers/spp",
                    names.clone(),
                    SPP_FIELDS,
                    false,
                )?);
            }
            let values = spp_values(&stats.spp);
            self.push_layer_row("layers/spp", names, stats.step, f64::NAN, values);
        }
        Ok(())
    }

    fn push_layer_row(
        &mut self,
        group: &str,
        names: Vec<String>,
        step: u64,
        total: f64,
        values: Vec<Vec<f64>>,
    ) {
        let table = if group == "layers/agc" {
            &mut self.agc
        } else {
            &mut self.spp
        };
        let Some(table) = table else { return };
        if table.names != names {
            let detail = format!(
                "{group}: the snapshot's {} names differ from the {} recorded ones; snapshot not recorded",
                names.len(),
                table.names.len()
            );
            self.note(step, "warning", group, "", &detail);
            return;
        }
        table.pending.push((step, total, values));
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // Best effort: a failure here has nowhere to go, and the last explicit flush is on disk anyway.
        let _ = self.flush();
    }
}

/// Opens `metrics.h5` read-only and reads everything. File locking is off so a live run can be read (rows are
/// only ever appended between flushes, so a reader sees a consistent prefix).
pub fn read_run(path: &Path) -> Result<RecordedRun> {
    let file = open_ro(path)?;
    check_format(&file, path)?;
    let preset_toml = read_str_attr(&file, "preset").unwrap_or_default();
    let created = read_str_attr(&file, "created").unwrap_or_default();
    let steps_t = read_table(&file, path, "steps", STEP_COLUMNS)?;
    let eval_t = read_table(&file, path, "eval", EVAL_COLUMNS)?;
    let thr_t = read_table(&file, path, "throughput", THROUGHPUT_COLUMNS)?;
    let ev_t = read_table(&file, path, "events", EVENT_COLUMNS)?;
    let steps = (0..steps_t.len).map(|i| step_from(&steps_t, i)).collect();
    let step_times = (0..steps_t.len).map(|i| steps_t.f("time", i)).collect();
    let evals = (0..eval_t.len).map(|i| eval_from(&eval_t, i)).collect();
    let throughput = (0..thr_t.len).map(|i| throughput_from(&thr_t, i)).collect();
    let events = (0..ev_t.len).map(|i| event_from(&ev_t, i)).collect();
    let layers = read_layers(&file, path)?;
    Ok(RecordedRun {
        path: path.to_path_buf(),
        preset_toml,
        created,
        steps,
        step_times,
        evals,
        layers,
        throughput,
        events,
    })
}

fn open_ro(path: &Path) -> Result<hdf5::File> {
    if !path.is_file() {
        return Err(RecordError::invalid(path, "no such metrics file"));
    }
    hdf5::File::with_options()
        .with_fapl(|p| p.file_locking(false))
        .open(path)
        .map_err(|e| RecordError::hdf5(path, e))
}

fn open_rw(path: &Path) -> Result<hdf5::File> {
    if !path.is_file() {
        return Err(RecordError::invalid(path, "no such metrics file"));
    }
    hdf5::File::open_rw(path).map_err(|e| RecordError::hdf5(path, e))
}

fn check_format(file: &hdf5::File, path: &Path) -> Result<()> {
    let format = read_str_attr(file, "format").unwrap_or_default();
    if format != FORMAT {
        return Err(RecordError::invalid(
            path,
            format!("not an nfbench metrics file (root attribute `format` is {format:?}, expected {FORMAT:?})"),
        ));
    }
    let version: u64 = file
        .attr("version")
        .and_then(|a| a.read_scalar())
        .map_err(|e| RecordError::invalid(path, format!("root attribute `version`: {e}")))?;
    if version > VERSION {
        return Err(RecordError::invalid(
            path,
            format!(
                "metrics format version {version} is newer than this nfbench reads ({VERSION})"
            ),
        ));
    }
    Ok(())
}

/// Columns read back, by name; tables cut short by a crash are read to their shortest column.
struct ReadTable {
    len: usize,
    u: BTreeMap<&'static str, Vec<u64>>,
    f: BTreeMap<&'static str, Vec<f64>>,
    b: BTreeMap<&'static str, Vec<u8>>,
    s: BTreeMap<&'static str, Vec<String>>,
}

impl ReadTable {
    fn u(&self, name: &str, i: usize) -> u64 {
        self.u
            .get(name)
            .and_then(|c| c.get(i))
            .copied()
            .unwrap_or(0)
    }
    fn f(&self, name: &str, i: usize) -> f64 {
        self.f
            .get(name)
            .and_then(|c| c.get(i))
            .copied()
            .unwrap_or(f64::NAN)
    }
    fn b(&self, name: &str, i: usize) -> bool {
        self.b
            .get(name)
            .and_then(|c| c.get(i))
            .is_some_and(|&v| v != 0)
    }
    fn s(&self, name: &str, i: usize) -> String {
        self.s
            .get(name)
            .and_then(|c| c.get(i))
            .cloned()
            .unwrap_or_default()
    }
}

fn read_table(
    file: &hdf5::File,
    path: &Path,
    group: &str,
    specs: &'static [ColSpec],
) -> Result<ReadTable> {
    let mut t = ReadTable {
        len: usize::MAX,
        u: BTreeMap::new(),
        f: BTreeMap::new(),
        b: BTreeMap::new(),
        s: BTreeMap::new(),
    };
    let g = file.group(group).map_err(|e| hdf5_at(path, group, "", e))?;
    for spec in specs {
        let at = |e: hdf5::Error| hdf5_at(path, group, spec.name, e);
        let ds = g.dataset(spec.name).map_err(at)?;
        let len = match spec.ty {
            U64 => insert_len(&mut t.u, spec.name, ds.read_raw::<u64>().map_err(at)?),
            F64 => insert_len(&mut t.f, spec.name, ds.read_raw::<f64>().map_err(at)?),
            Bool => insert_len(&mut t.b, spec.name, ds.read_raw::<u8>().map_err(at)?),
            Str => {
                let raw = ds.read_raw::<VarLenUnicode>().map_err(at)?;
                insert_len(
                    &mut t.s,
                    spec.name,
                    raw.iter().map(|v| v.as_str().to_string()).collect(),
                )
            }
        };
        t.len = t.len.min(len);
    }
    if t.len == usize::MAX {
        t.len = 0;
    }
    Ok(t)
}

fn insert_len<T>(
    map: &mut BTreeMap<&'static str, Vec<T>>,
    name: &'static str,
    values: Vec<T>,
) -> usize {
    let len = values.len();
    map.insert(name, values);
    len
}

/// Reads `/layers/agc` and `/layers/spp` and merges them by step into [`LayerStats`].
fn read_layers(file: &hdf5::File, path: &Path) -> Result<Vec<LayerStats>> {
    let mut by_step: BTreeMap<u64, LayerStats> = BTreeMap::new();
    let entry = |map: &mut BTreeMap<u64, LayerStats>, step: u64| {
        map.entry(step)
            .or_insert_with(|| LayerStats {
                step,
                agc: Vec::new(),
                spp: Vec::new(),
                total_clipped_fraction: f64::NAN,
            })
            .step
    };
    if let Some(agc) = read_layer_group(file, path, "layers/agc", AGC_FIELDS)? {
        let units = read_optional::<u64>(file, path, "layers/agc/units")?;
        let clipped_by = read_optional::<u8>(file, path, "layers/agc/clipped_by_agc")?;
        for (row, &step) in agc.steps.iter().enumerate() {
            entry(&mut by_step, step);
            let stats = by_step
                .get_mut(&step)
                .ok_or_else(|| RecordError::invalid(path, "layers"))?;
            stats.total_clipped_fraction = agc.total.get(row).copied().unwrap_or(f64::NAN);
            stats.agc = agc
                .names
                .iter()
                .enumerate()
                .map(|(l, name)| AgcLayerStats {
                    name: name.clone(),
                    weight_norm: agc.value(0, row, l),
                    grad_norm: agc.value(1, row, l),
                    max_ratio: agc.value(2, row, l),
                    mean_ratio: agc.value(3, row, l),
                    clipped_fraction: agc.value(4, row, l),
                    units: units.get(l).copied().unwrap_or(0) as usize,
                    clipped_by_agc: clipped_by.get(l).is_some_and(|&b| b != 0),
                })
                .collect();
        }
    }
    if let Some(spp) = read_layer_group(file, path, "layers/spp", SPP_FIELDS)? {
        for (row, &step) in spp.steps.iter().enumerate() {
            entry(&mut by_step, step);
            let stats = by_step
                .get_mut(&step)
                .ok_or_else(|| RecordError::invalid(path, "layers"))?;
            stats.spp = spp
                .names
                .iter()
                .enumerate()
                .map(|(l, name)| SppBlockStats {
                    name: name.clone(),
                    predicted_var: spp.value(0, row, l),
                    avg_sq_mean: spp.value(1, row, l),
                    avg_var: spp.value(2, row, l),
                    res_avg_var: spp.value(3, row, l),
                })
                .collect();
        }
    }
    Ok(by_step.into_values().collect())
}

struct LayerGroupRead {
    names: Vec<String>,
    steps: Vec<u64>,
    total: Vec<f64>,
    /// Per field: row-major `[rows, layers]`.
    fields: Vec<Vec<f64>>,
}

impl LayerGroupRead {
    fn value(&self, field: usize, row: usize, layer: usize) -> f64 {
        self.fields[field]
            .get(row * self.names.len() + layer)
            .copied()
            .unwrap_or(f64::NAN)
    }
}

fn read_layer_group(
    file: &hdf5::File,
    path: &Path,
    group: &str,
    fields: &'static [ColSpec],
) -> Result<Option<LayerGroupRead>> {
    if !file.link_exists(group) {
        return Ok(None);
    }
    let at = |name: &str| {
        let name = name.to_string();
        move |e: hdf5::Error| hdf5_at(path, group, &name, e)
    };
    let g = file.group(group).map_err(at(""))?;
    let names = read_str_array_attr(&g, "names").map_err(at("@names"))?;
    let mut steps: Vec<u64> = g
        .dataset("step")
        .and_then(|d| d.read_raw())
        .map_err(at("step"))?;
    let total = if g.link_exists("total_clipped_fraction") {
        g.dataset("total_clipped_fraction")
            .and_then(|d| d.read_raw())
            .map_err(at("total_clipped_fraction"))?
    } else {
        Vec::new()
    };
    let mut rows = steps.len();
    let mut values = Vec::new();
    for spec in fields {
        let ds = g.dataset(spec.name).map_err(at(spec.name))?;
        let shape = ds.shape();
        if shape.len() != 2 || shape[1] != names.len() {
            return Err(RecordError::invalid(
                path,
                format!(
                    "{group}/{}: shape {shape:?} does not match {} names",
                    spec.name,
                    names.len()
                ),
            ));
        }
        rows = rows.min(shape[0]);
        values.push(ds.read_raw::<f64>().map_err(at(spec.name))?);
    }
    steps.truncate(rows);
    Ok(Some(LayerGroupRead {
        names,
        steps,
        total,
        fields: values,
    }))
}

fn read_optional<T: hdf5::H5Type>(file: &hdf5::File, path: &Path, name: &str) -> Result<Vec<T>> {
    if !file.link_exists(name) {
        return Ok(Vec::new());
    }
    file.dataset(name)
        .and_then(|d| d.read_raw())
        .map_err(|e| hdf5_at(path, name, "", e))
}

/// `/layers/agc/units` and `/layers/agc/clipped_by_agc`: per-layer constants, written once.
fn write_agc_constants(file: &hdf5::File, path: &Path, agc: &[AgcLayerStats]) -> Result<()> {
    let units: Vec<u64> = agc.iter().map(|a| a.units as u64).collect();
    let clipped: Vec<u8> = agc.iter().map(|a| u8::from(a.clipped_by_agc)).collect();
    let h = |e: hdf5::Error| hdf5_at(path, "layers/agc", "units", e);
    let g = file.group("layers/agc").map_err(h)?;
    let ds = g
        .new_dataset::<u64>()
        .shape(units.len())
        .create("units")
        .map_err(h)?;
    ds.write_raw(&units[..]).map_err(h)?;
    set_str_attr(
        &ds,
        "description",
        "AGC units (output channels / rows) per layer",
    )
    .map_err(h)?;
    let ds = g
        .new_dataset::<u8>()
        .shape(clipped.len())
        .create("clipped_by_agc")
        .map_err(h)?;
    ds.write_raw(&clipped[..]).map_err(h)?;
    set_str_attr(
        &ds,
        "description",
        "1 when AGC applies to the layer, 0 when excluded",
    )
    .map_err(h)?;
    Ok(())
}

fn agc_values(agc: &[AgcLayerStats]) -> Vec<Vec<f64>> {
    vec![
        agc.iter().map(|a| a.weight_norm).collect(),
        agc.iter().map(|a| a.grad_norm).collect(),
        agc.iter().map(|a| a.max_ratio).collect(),
        agc.iter().map(|a| a.mean_ratio).collect(),
        agc.iter().map(|a| a.clipped_fraction).collect(),
    ]
}

fn spp_values(spp: &[SppBlockStats]) -> Vec<Vec<f64>> {
    vec![
        spp.iter().map(|b| b.predicted_var).collect(),
        spp.iter().map(|b| b.avg_sq_mean).collect(),
        spp.iter().map(|b| b.avg_var).collect(),
        spp.iter().map(|b| b.res_avg_var).collect(),
    ]
}

fn step_row(m: &StepMetrics, time: f64) -> Vec<Cell> {
    use Cell::{F, U};
    vec![
        U(m.step),
        F(time),
        F(m.epoch),
        F(m.loss),
        F(m.train_top1),
        F(m.lr),
        F(m.lambda),
        F(m.alpha),
        F(m.grad_norm),
        F(m.clipped_fraction),
        F(m.images_per_sec),
        F(m.step_ms),
    ]
}

fn step_from(t: &ReadTable, i: usize) -> StepMetrics {
    StepMetrics {
        step: t.u("step", i),
        epoch: t.f("epoch", i),
        loss: t.f("loss", i),
        train_top1: t.f("train_top1", i),
        lr: t.f("lr", i),
        lambda: t.f("lambda", i),
        alpha: t.f("alpha", i),
        grad_norm: t.f("grad_norm", i),
        clipped_fraction: t.f("clipped_fraction", i),
        images_per_sec: t.f("images_per_sec", i),
        step_ms: t.f("step_ms", i),
    }
}

fn eval_row(e: &EvalMetrics, time: f64) -> Vec<Cell> {
    use Cell::{B, F, U};
    vec![
        U(e.step),
        F(time),
        F(e.loss),
        F(e.top1),
        F(e.top5),
        U(e.images as u64),
        B(e.ema),
    ]
}

fn eval_from(t: &ReadTable, i: usize) -> EvalMetrics {
    EvalMetrics {
        step: t.u("step", i),
        loss: t.f("loss", i),
        top1: t.f("top1", i),
        top5: t.f("top5", i),
        images: t.u("images", i) as usize,
        ema: t.b("ema", i),
    }
}

fn throughput_row(t: &Throughput) -> Vec<Cell> {
    use Cell::{F, U};
    vec![
        U(t.step),
        F(t.images_per_sec),
        F(t.step_ms),
        F(t.data_ms),
        F(t.forward_ms),
        F(t.backward_ms),
        F(t.agc_ms),
        F(t.optimizer_ms),
        F(t.stats_ms),
    ]
}

fn throughput_from(t: &ReadTable, i: usize) -> Throughput {
    Throughput {
        step: t.u("step", i),
        images_per_sec: t.f("images_per_sec", i),
        step_ms: t.f("step_ms", i),
        data_ms: t.f("data_ms", i),
        forward_ms: t.f("forward_ms", i),
        backward_ms: t.f("backward_ms", i),
        agc_ms: t.f("agc_ms", i),
        optimizer_ms: t.f("optimizer_ms", i),
        stats_ms: t.f("stats_ms", i),
    }
}

fn event_row(e: &EventRow) -> Vec<Cell> {
    use Cell::{F, S, U};
    vec![
        U(e.step),
        F(e.time),
        S(e.kind.clone()),
        S(e.key.clone()),
        S(e.value.clone()),
        S(e.detail.clone()),
    ]
}

fn event_from(t: &ReadTable, i: usize) -> EventRow {
    EventRow {
        step: t.u("step", i),
        time: t.f("time", i),
        kind: t.s("kind", i),
        key: t.s("key", i),
        value: t.s("value", i),
        detail: t.s("detail", i),
    }
}

/// The events-table rows of a non-telemetry event (an `Applied` with several parameters gives one row each).
pub fn event_rows(event: &Event, last_step: u64) -> Vec<EventRow> {
    let one = |step, kind, key: &str, value: &str, detail: &str| {
        vec![EventRow::new(step, kind, key, value, detail)]
    };
    match event {
        Event::Started {
            model,
            device,
            params,
            steps,
            start_step,
            run_dir,
        } => {
            let info = StartedInfo {
                model: model.clone(),
                device: device.clone(),
                params: *params,
                steps: *steps,
                start_step: *start_step,
                run_dir: run_dir.clone(),
            };
            let json = serde_json::to_string(&info).unwrap_or_default();
            one(*start_step, "started", model, device, &json)
        }
        Event::State { state, step } => one(*step, "state", &format!("{state:?}"), "", ""),
        Event::Applied {
            params,
            origin,
            step,
        } => params
            .iter()
            .map(|p| EventRow::new(*step, "applied", p.key(), &p.value_string(), origin))
            .collect(),
        Event::Rejected { what, reason, step } => one(*step, "rejected", what, "", reason),
        Event::Checkpoint { path, step } => {
            one(*step, "checkpoint", "", &path.display().to_string(), "")
        }
        Event::NonFinite {
            step,
            what,
            consecutive,
        } => one(*step, "nonfinite", what, &consecutive.to_string(), ""),
        Event::Warning(msg) => one(last_step, "warning", "", "", msg),
        Event::Error(msg) => one(last_step, "error", "", "", msg),
        Event::Finished { step } => one(*step, "finished", "", "", ""),
        Event::Step(_) | Event::Eval(_) | Event::Layers(_) | Event::Throughput(_) => Vec::new(),
    }
}

/// Parses an `applied` row back into the live parameter it recorded.
pub fn live_param_from(key: &str, value: &str) -> Option<LiveParam> {
    let f = || value.parse::<f64>().ok();
    Some(match key {
        "agc.lambda" => LiveParam::AgcLambda(f()?),
        "agc.enabled" => LiveParam::AgcEnabled(value.parse().ok()?),
        "model.alpha" => LiveParam::Alpha(f()?),
        "optim.lr_scale" => LiveParam::LrScale(f()?),
        "optim.weight_decay" => LiveParam::WeightDecay(f()?),
        "optim.momentum" => LiveParam::Momentum(f()?),
        "run.stats_every" => LiveParam::StatsEvery(value.parse().ok()?),
        _ => return None,
    })
}

fn create_column(g: &hdf5::Group, name: &str, ty: ColType) -> hdf5::Result<hdf5::Dataset> {
    match ty {
        U64 => g
            .new_dataset::<u64>()
            .chunk(TABLE_CHUNK)
            .shape(0..)
            .create(name),
        F64 => g
            .new_dataset::<f64>()
            .chunk(TABLE_CHUNK)
            .shape(0..)
            .create(name),
        Bool => g
            .new_dataset::<u8>()
            .chunk(TABLE_CHUNK)
            .shape(0..)
            .create(name),
        Str => g
            .new_dataset::<VarLenUnicode>()
            .chunk(256)
            .shape(0..)
            .create(name),
    }
}

fn write_cells<'a>(
    ds: &hdf5::Dataset,
    ty: ColType,
    cells: impl Iterator<Item = &'a Cell>,
    range: std::ops::Range<usize>,
) -> hdf5::Result<()> {
    match ty {
        U64 => {
            let v: Vec<u64> = cells
                .map(|c| if let Cell::U(x) = c { *x } else { 0 })
                .collect();
            ds.write_slice(&v[..], range)
        }
        F64 => {
            let v: Vec<f64> = cells
                .map(|c| if let Cell::F(x) = c { *x } else { f64::NAN })
                .collect();
            ds.write_slice(&v[..], range)
        }
        Bool => {
            let v: Vec<u8> = cells.map(|c| matches!(c, Cell::B(true)) as u8).collect();
            ds.write_slice(&v[..], range)
        }
        Str => {
            let v: Vec<VarLenUnicode> = cells
                .map(|c| {
                    if let Cell::S(s) = c {
                        to_vlen(s)
                    } else {
                        to_vlen("")
                    }
                })
                .collect();
            ds.write_slice(&v[..], range)
        }
    }
}

/// HDF5 strings end at a NUL byte, so NULs (which nothing legitimate sends) become U+FFFD.
fn to_vlen(s: &str) -> VarLenUnicode {
    let clean = s.replace('\0', "\u{fffd}");
    clean.parse().unwrap_or_default()
}

fn set_str_attr(loc: &hdf5::Location, name: &str, value: &str) -> hdf5::Result<()> {
    let v = to_vlen(value);
    if loc.attr_names()?.iter().any(|n| n == name) {
        loc.delete_attr(name)?;
    }
    loc.new_attr::<VarLenUnicode>()
        .create(name)?
        .write_scalar(&v)
}

fn read_str_attr(loc: &hdf5::Location, name: &str) -> hdf5::Result<String> {
    let v: VarLenUnicode = loc.attr(name)?.read_scalar()?;
    Ok(v.as_str().to_string())
}

fn set_str_array_attr(loc: &hdf5::Location, name: &str, values: &[String]) -> hdf5::Result<()> {
    let v: Vec<VarLenUnicode> = values.iter().map(|s| to_vlen(s)).collect();
    loc.new_attr::<VarLenUnicode>()
        .shape(v.len())
        .create(name)?
        .write_raw(&v[..])
}

fn read_str_array_attr(loc: &hdf5::Location, name: &str) -> hdf5::Result<Vec<String>> {
    let v: Vec<VarLenUnicode> = loc.attr(name)?.read_raw()?;
    Ok(v.iter().map(|s| s.as_str().to_string()).collect())
}

fn hdf5_at(path: &Path, group: &str, name: &str, err: hdf5::Error) -> RecordError {
    let what = if name.is_empty() {
        format!("/{group}: {err}")
    } else {
        format!("/{group}/{name}: {err}")
    };
    RecordError::hdf5(path, what)
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
