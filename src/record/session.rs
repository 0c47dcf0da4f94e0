//! A trainer with a run record around it: the run directory, the [`Recorder`] and the checkpoint writer, for a new
//! run or a resumed one, and the headless loop that feeds every event to the recorder.
//!
//! The TUI and `nfbench train --headless` start runs with [`start_new`]; `nfbench resume` uses [`start_resume`].
//! Either way the caller spawns the trainer with the returned [`TrainerOptions`] and passes every event it receives
//! to [`Recorder::record`] (or lets [`drive`] do it).

use super::checkpoint::{load_latest, load_latest_up_to, LoadedCheckpoint};
use super::metrics::Recorder;
use super::run_dir::{RunDir, RunLock};
use super::trainer_checkpoint::{self, RecordCheckpointWriter};
use super::{RecordError, Result};
use crate::preset::Preset;
use crate::train::messages::Event;
use crate::train::{TrainerHandle, TrainerOptions};
use candle_core::Device;
use std::path::Path;

/// A run being recorded.
pub struct Session {
    pub run: RunDir,
    pub recorder: Recorder,
    /// The preset the trainer runs with (for a resumed run: the checkpoint's, live values folded in).
    pub preset: Preset,
    /// Steps already done when this session started (0 for a new run).
    pub start_step: u64,
    /// Warnings to show the user (e.g. unreadable newer checkpoints that were skipped).
    pub notes: Vec<String>,
    /// The run directory's lock: no second process trains into this run while the session lives.
    lock: RunLock,
}

impl Session {
    /// The lock file this session holds (it holds this process's pid).
    pub fn lock_path(&self) -> &Path {
        self.lock.path()
    }

    /// Hand the recorder to whoever feeds it (the relay thread); the rest, the lock included, stays with the caller
    /// for as long as the run goes on.
    pub fn into_recorder(self) -> (Recorder, HeldRun) {
        let held = HeldRun {
            run: self.run,
            preset: self.preset,
            lock: self.lock,
        };
        (self.recorder, held)
    }
}

/// A running session without its recorder: the run directory, the preset, and the run directory's lock (released
/// when this is dropped).
pub struct HeldRun {
    pub run: RunDir,
    pub preset: Preset,
    lock: RunLock,
}

impl HeldRun {
    /// The lock file held.
    pub fn lock_path(&self) -> &Path {
        self.lock.path()
    }
}

/// Creates the run directory (`run_dir`, or `runs/<preset-stem>-<timestamp>`), writes the preset and creates
/// `metrics.h5`. The options carry the run directory and the checkpoint writer.
pub fn start_new(
    preset_path: &Path,
    preset: &Preset,
    run_dir: Option<&Path>,
) -> Result<(Session, TrainerOptions)> {
    let run = RunDir::create(run_dir, preset_path, preset)?;
    let lock = run.lock()?;
    let recorder = Recorder::create(&run)?;
    let opts = options_for(&run, preset);
    Ok((
        Session {
            run,
            recorder,
            preset: preset.clone(),
            start_step: 0,
            notes: Vec::new(),
            lock,
        },
        opts,
    ))
}

/// Opens a run directory to continue from its latest checkpoint. `more_steps` trains that many steps past the
/// checkpoint (the schedule is stretched to the new end); `None` runs to the preset's `run.steps`.
///
/// The metrics log drops the rows recorded after the checkpoint (they are trained again) and gets a `resumed` event.
pub fn start_resume(run_dir: &Path, more_steps: Option<u64>) -> Result<(Session, TrainerOptions)> {
    let run = RunDir::open(run_dir)?;
    // Before anything is read or truncated: a live process may be writing this run.
    let lock = run.lock()?;
    let (loaded, gap) = choose_checkpoint(&run)?;
    let fallback = loaded.fallback_warning();
    let ck_path = loaded.path.clone();
    let state = trainer_checkpoint::from_checkpoint(loaded)
        .map_err(|e| RecordError::checkpoint(&ck_path, crate::train::error_chain(&e)))?;
    let step = state.meta.step;
    let mut preset = state.meta.preset.clone();
    if let Some(n) = more_steps {
        preset.run.steps = step + n;
    }
    if step >= preset.run.steps {
        return Err(RecordError::invalid(
            &ck_path,
            format!(
                "the run is complete ({step} of {} steps); pass --steps N to train N more",
                preset.run.steps
            ),
        ));
    }
    let mut recorder = Recorder::open_for_resume(&run, step)?;
    let mut notes = Vec::new();
    for warning in fallback.into_iter().chain(gap) {
        recorder.note(step, "warning", "checkpoint", "", &warning);
        notes.push(format!("warning: {warning}"));
    }
    notes.push(format!("resuming from {} (step {step})", ck_path.display()));
    let mut opts = options_for(&run, &preset);
    opts.resume = Some(state);
    Ok((
        Session {
            run,
            recorder,
            preset,
            start_step: step,
            notes,
            lock,
        },
        opts,
    ))
}

/// The checkpoint to resume from: the latest readable one at or before the last step in the metrics log (so the
/// log gets no gap), else the latest readable one, with a warning that the log will have a gap.
fn choose_checkpoint(run: &RunDir) -> Result<(LoadedCheckpoint, Option<String>)> {
    let recorded = Recorder::last_recorded_step(run)?.unwrap_or(0);
    if let Some(loaded) = load_latest_up_to(run.path(), &Device::Cpu, Some(recorded))? {
        return Ok((loaded, None));
    }
    let loaded = load_latest(run.path(), &Device::Cpu)?.ok_or_else(|| {
        RecordError::invalid(
            &run.checkpoints_dir(),
            "no checkpoint to resume from (a run writes one every `run.checkpoint_every` steps and at its end)",
        )
    })?;
    let gap = format!(
        "the metrics log ends at step {recorded}, before any checkpoint: resuming from step {}, steps {}..={} \
         stay missing from the log",
        loaded.meta.step,
        recorded + 1,
        loaded.meta.step
    );
    Ok((loaded, Some(gap)))
}

fn options_for(run: &RunDir, preset: &Preset) -> TrainerOptions {
    TrainerOptions {
        run_dir: Some(run.path().to_path_buf()),
        checkpoint_writer: Some(Box::new(RecordCheckpointWriter {
            dir: run.checkpoints_dir(),
            keep_last: preset.run.keep_checkpoints,
        })),
        ..Default::default()
    }
}

/// Receives every event until the trainer exits, records each, and hands it to `on_event` (progress display).
/// A recording error is reported once through `on_error` and recording goes on (training is never stopped by it).
pub fn drive(
    handle: &TrainerHandle,
    recorder: &mut Recorder,
    mut on_event: impl FnMut(&Event),
    mut on_error: impl FnMut(&RecordError),
) -> Result<()> {
    let mut reported = false;
    while let Some(event) = handle.recv() {
        if let Err(e) = recorder.record(&event) {
            if !reported {
                on_error(&e);
                reported = true;
            }
        }
        on_event(&event);
    }
    recorder.sync()
}
