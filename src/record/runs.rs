//! `nfbench runs [DIR]`: the run directories under DIR with their final metrics.

use super::checkpoint::list_checkpoints;
use super::live::LiveFile;
use super::metrics::{read_run, RecordedRun};
use super::run_dir::{CHECKPOINT_DIR, METRICS_FILE};
use super::{RecordError, Result};
use std::path::{Path, PathBuf};

/// Steps over which the final training loss is averaged (one batch is noisy).
pub const LOSS_WINDOW: usize = 50;

/// One run's line in the listing.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub dir: PathBuf,
    pub model: String,
    /// Last step recorded and the run's planned length (0 when unknown).
    pub step: u64,
    pub planned: u64,
    /// Mean training loss over the last [`LOSS_WINDOW`] steps.
    pub final_loss: f64,
    /// Latest validation top-1 (fraction).
    pub last_top1: Option<f64>,
    /// Best validation top-1 and its step.
    pub best_top1: Option<(f64, u64)>,
    /// finished, stopped, failed, diverged, paused; `live: <mode> (pid N, attachable)` while a process trains it;
    /// or "running?" (no live process: killed, or from an older version).
    pub state: String,
    /// Step of the newest checkpoint.
    pub checkpoint: Option<u64>,
    /// Why the run could not be read, when it could not.
    pub error: Option<String>,
}

/// Summarises one run directory.
pub fn summarize(dir: &Path) -> RunSummary {
    let mut s = RunSummary {
        dir: dir.to_path_buf(),
        model: String::new(),
        step: 0,
        planned: 0,
        final_loss: f64::NAN,
        last_top1: None,
        best_top1: None,
        state: String::new(),
        checkpoint: list_checkpoints(&dir.join(CHECKPOINT_DIR))
            .ok()
            .and_then(|c| c.last().map(|c| c.step)),
        error: None,
    };
    match read_run(&dir.join(METRICS_FILE)) {
        Ok(run) => fill(&mut s, &run),
        Err(e) => s.error = Some(crate::train::error_chain(&e)),
    }
    // A process training the run right now says so in `live.json`; the record alone cannot tell a live run from
    // a killed one.
    if let Some(live) = LiveFile::read_alive(dir) {
        let attach = if live.socket.is_some() {
            ", attachable"
        } else {
            ""
        };
        s.state = format!("live: {} (pid {}{attach})", live.mode.label(), live.pid);
        // The writer may hold the HDF5 file locked: a live run is listed without its figures then.
        s.error = None;
    }
    s
}

fn fill(s: &mut RunSummary, run: &RecordedRun) {
    if let Some(info) = run.started() {
        s.model = info.model;
        s.planned = info.steps;
    }
    s.step = run.last_step().unwrap_or(0);
    let tail: Vec<f64> = run
        .steps
        .iter()
        .rev()
        .map(|m| m.loss)
        .filter(|l| l.is_finite())
        .take(LOSS_WINDOW)
        .collect();
    if !tail.is_empty() {
        s.final_loss = tail.iter().sum::<f64>() / tail.len() as f64;
    }
    s.last_top1 = run.evals.last().map(|e| e.top1);
    s.best_top1 = run.best_eval().map(|e| (e.top1, e.step));
    s.state = final_state(run);
}

/// The run's last lifecycle state, from the events table. The trainer sends `Finished` after every terminal state
/// (stopped, failed, ... included), so the last state event decides; a `finished` row alone (no terminal state
/// after the last start) still reads as finished.
fn final_state(run: &RecordedRun) -> String {
    let lifecycle = |k: &str| matches!(k, "state" | "started" | "resumed");
    let last = run.events.iter().rposition(|e| lifecycle(&e.kind));
    let finished_after = |i: usize| run.events[i..].iter().any(|e| e.kind == "finished");
    match last {
        Some(i) if run.events[i].kind == "state" => match run.events[i].key.as_str() {
            "Finished" | "Stopped" | "Failed" | "Diverged" | "Paused" => {
                run.events[i].key.to_lowercase()
            }
            _ if finished_after(i) => "finished".into(),
            _ => "running?".into(),
        },
        Some(i) if finished_after(i) => "finished".into(),
        None if finished_after(0) => "finished".into(),
        _ => "running?".into(),
    }
}

/// The run directories directly under `dir` (those holding `metrics.h5`), by name.
pub fn list_runs(dir: &Path) -> Result<Vec<RunSummary>> {
    let entries = std::fs::read_dir(dir).map_err(|e| RecordError::io(dir, e))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(METRICS_FILE).is_file())
        .collect();
    dirs.sort();
    Ok(dirs.iter().map(|d| summarize(d)).collect())
}

/// The listing as an aligned text table.
pub fn format_table(runs: &[RunSummary]) -> String {
    let pct = |v: Option<f64>| {
        v.map(|t| format!("{:.1}%", 100.0 * t))
            .unwrap_or_else(|| "-".into())
    };
    let mut rows: Vec<[String; 8]> = vec![[
        "RUN".into(),
        "MODEL".into(),
        "STEP".into(),
        "LOSS".into(),
        "VAL TOP-1".into(),
        "BEST (STEP)".into(),
        "CKPT".into(),
        "STATE".into(),
    ]];
    for r in runs {
        let name = r
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(err) = &r.error {
            rows.push([
                name,
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                err.clone(),
            ]);
            continue;
        }
        let step = if r.planned > 0 {
            format!("{}/{}", r.step, r.planned)
        } else {
            r.step.to_string()
        };
        let loss = if r.final_loss.is_finite() {
            format!("{:.4}", r.final_loss)
        } else {
            "-".into()
        };
        let best = r
            .best_top1
            .map(|(t, s)| format!("{} ({s})", pct(Some(t))))
            .unwrap_or_else(|| "-".into());
        let ck = r
            .checkpoint
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into());
        rows.push([
            name,
            r.model.clone(),
            step,
            loss,
            pct(r.last_top1),
            best,
            ck,
            r.state.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                if c == 7 {
                    cell.clone()
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// What a sweep's table shows of one run, read from its `metrics.h5` (the values are the record's, unrounded).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunOutcome {
    /// Last step recorded (0 before the first).
    pub step: u64,
    /// Training loss of the last recorded step (NaN when none).
    pub loss: f64,
    /// Validation top-1 of the last evaluation (fraction).
    pub val_top1: Option<f64>,
    /// Share of AGC units clipped at the last step that measured it.
    pub clipped_fraction: Option<f64>,
    /// The run's lifecycle state as [`summarize`] reads it (finished, stopped, running?, ...).
    pub state: String,
    /// The run went non-finite: it entered the `Diverged` state, or its last loss is not finite.
    pub diverged: bool,
}

impl RunOutcome {
    /// Reads the outcome of the run recorded in `run`.
    pub fn of(run: &RecordedRun) -> RunOutcome {
        let last = run.steps.last();
        let loss = last.map(|s| s.loss).unwrap_or(f64::NAN);
        RunOutcome {
            step: last.map(|s| s.step).unwrap_or(0),
            loss,
            val_top1: run.evals.last().map(|e| e.top1),
            clipped_fraction: run
                .steps
                .iter()
                .rev()
                .map(|s| s.clipped_fraction)
                .find(|c| c.is_finite()),
            state: final_state(run),
            diverged: went_nonfinite(run) || (last.is_some() && !loss.is_finite()),
        }
    }

    /// Reads the outcome of the run in `dir` (its `metrics.h5`).
    pub fn read(dir: &Path) -> Result<RunOutcome> {
        Ok(RunOutcome::of(&read_run(&dir.join(METRICS_FILE))?))
    }

    /// Whether the run has nothing left to train: finished, or diverged (a headless run stops when it diverges;
    /// training it further would only repeat that).
    pub fn is_done(&self) -> bool {
        self.state == "finished" || self.state == "failed" || self.diverged
    }
}

/// Whether the run entered the `Diverged` state at any point.
fn went_nonfinite(run: &RecordedRun) -> bool {
    run.events
        .iter()
        .any(|e| e.kind == "state" && e.key == "Diverged")
}
