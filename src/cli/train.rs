//! `nfbench train --headless`: training with a progress bar, recorded into a run directory.

use super::live::{top1_text, unsaved_message, LiveRun, Waited};
use super::progress::Progress;
use crate::preset::{self, Preset};
use crate::record::session::{self, Session};
use crate::record::{LiveMode, RelayReport};
use crate::train::messages::{Command, RunState};
use crate::train::{TrainSummary, TrainerOptions};
use crate::tui::terminal::Signals;
use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Train without the workbench (required: the workbench is `nfbench tui`).
    #[arg(long)]
    pub headless: bool,
    /// Preset file.
    #[arg(long, default_value = "presets/default.toml")]
    pub preset: PathBuf,
    /// Override `run.steps`.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Override preset fields, e.g. `--set agc.lambda=0.02` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Run directory (default `runs/<preset>-<timestamp>/`).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Print one JSON line with the run's summary at the end.
    #[arg(long)]
    pub json_summary: bool,
    #[command(flatten)]
    pub device: super::DeviceArgs,
}

/// The effective preset: the file, its `extends` chain, `--set` overrides and `--steps`, validated.
pub fn effective_preset(
    path: &std::path::Path,
    sets: &[String],
    steps: Option<u64>,
) -> anyhow::Result<Preset> {
    let mut p = preset::load(path)?;
    preset::apply_overrides(&mut p, sets)?;
    if let Some(n) = steps {
        anyhow::ensure!(n >= 1, "--steps must be >= 1");
        p.run.steps = n;
    }
    let bad = preset::violations(&p);
    if !bad.is_empty() {
        let list: Vec<String> = bad.iter().map(|(k, why)| format!("{k}: {why}")).collect();
        anyhow::bail!("{}: {}", path.display(), list.join("; "));
    }
    Ok(p)
}

pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.headless,
        "`nfbench train` runs without the workbench and needs --headless; the workbench is `nfbench tui`"
    );
    let preset = effective_preset(&args.preset, &args.device.with_sets(&args.set), args.steps)?;
    let (session, opts) = session::start_new(&args.preset, &preset, args.run_dir.as_deref())?;
    run_headless(
        session,
        opts,
        &args.preset,
        HeadlessOptions {
            json_summary: args.json_summary,
        },
    )
}

/// How a headless run reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeadlessOptions {
    /// One JSON line with the summary on stdout at the end, instead of the human line on stderr.
    pub json_summary: bool,
}

/// Train a started session without a workbench (`nfbench train --headless`, `nfbench resume`): progress on
/// stderr, the record written by the relay, attachable with `nfbench attach`; SIGINT / SIGTERM stop with a final
/// checkpoint; a hangup detaches or stops per `run.on_hangup`. The exit code says whether the run ended well: a
/// run whose last checkpoint could not be written, or whose record is incomplete, does not exit 0.
pub fn run_headless(
    session: Session,
    opts: TrainerOptions,
    preset_path: &Path,
    options: HeadlessOptions,
) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let signals = Signals::install().context("installing the signal handlers")?;
    let mut progress = Progress::new(session.start_step, session.preset.run.steps);
    for note in &session.notes {
        progress.line(note);
    }
    let (mut live, warnings) = LiveRun::start(session, opts, preset_path, LiveMode::Headless)?;
    for w in warnings {
        progress.line(format!("warning: {w}"));
    }
    let events = live.subscribe();
    let commands = live.handle().commands.clone();
    let on_hangup = live.preset().run.on_hangup;
    let waited = live.wait(&events, &signals, on_hangup, |ev| {
        progress.on_event(ev);
        if progress.take_diverged() {
            let _ = commands.send(Command::Stop { checkpoint: false });
        }
    });
    progress.finish();
    if waited.abandoned {
        eprintln!("nfbench: left without waiting for the trainer's final checkpoint");
        live.abandon();
        return Ok(ExitCode::FAILURE);
    }
    let run_path = live.run().path().to_path_buf();
    let (summary, report) = live.finish();
    let lines = final_lines(&summary, &report, &waited);
    let summary = summary?;
    if options.json_summary {
        let line = serde_json::json!({
            "steps": summary.steps,
            "final_train_loss": summary.final_train_loss,
            "val_top1": summary.val_top1,
            "images_per_sec": summary.images_per_sec,
            "state": summary.state,
            "wall_secs": start.elapsed().as_secs_f64(),
            "run_dir": run_path,
        });
        println!("{line}");
    } else {
        eprintln!(
            "{:?} after {} steps in {:.0} s: train loss {:.4}, val top-1 {}, {:.1} img/s; run in {}",
            summary.state,
            summary.steps,
            start.elapsed().as_secs_f64(),
            summary.final_train_loss,
            top1_text(summary.val_top1),
            summary.images_per_sec,
            run_path.display()
        );
    }
    for l in &lines.text {
        eprintln!("nfbench: {l}");
    }
    Ok(lines.code)
}

/// What to tell the user at the end of a run, and the exit code.
pub struct FinalLines {
    pub text: Vec<String>,
    pub code: ExitCode,
}

/// The end of a run without a workbench: 0 for a finished run, 130 for one stopped by a signal, 1 for a failed or
/// diverged one, and 1 whenever the last checkpoint or the record could not be written, whatever the state.
pub fn final_lines(
    summary: &crate::train::Result<TrainSummary>,
    report: &RelayReport,
    waited: &Waited,
) -> FinalLines {
    let mut text = Vec::new();
    let mut code = match summary {
        Ok(s) => match s.state {
            RunState::Finished => ExitCode::SUCCESS,
            RunState::Stopped if waited.interrupted => ExitCode::from(130),
            RunState::Stopped => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        },
        Err(e) => {
            text.push(format!("the trainer failed: {e}"));
            ExitCode::FAILURE
        }
    };
    if let Some(unsaved) = &waited.unsaved {
        text.push(unsaved_message(unsaved));
        code = ExitCode::FAILURE;
    }
    if let Some(e) = &report.record_error {
        text.push(format!(
            "the run record is incomplete: {}",
            crate::train::error_chain(e)
        ));
        code = ExitCode::FAILURE;
    }
    FinalLines { text, code }
}
