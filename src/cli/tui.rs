//! `nfbench` / `nfbench tui`: the workbench.
//!
//! Loads the preset (with `--set` overrides), creates the run directory and its metrics log, starts the trainer
//! on its own thread, watches the preset file, and runs the TUI loop until the user quits and the trainer has
//! stopped. Without a terminal it says so and trains headless instead.

use crate::preset::watch::PresetWatcher;
use crate::record::{session, Recorder};
use crate::train::messages::{Event, RunState};
use crate::train::Trainer;
use crate::tui::terminal::{self, TerminalGuard};
use crate::tui::{self as workbench, App, CrosstermInput, Link, Theme};
use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The preset `nfbench` opens when none is named.
pub const DEFAULT_PRESET: &str = "presets/default.toml";

#[derive(Debug, Args, Default)]
pub struct TuiArgs {
    /// Preset file to train with (watched and hot-reloaded).
    #[arg(long, default_value = DEFAULT_PRESET)]
    pub preset: PathBuf,
    /// Override preset fields, e.g. `--set agc.lambda=0.02` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Run directory (default `runs/<preset>-<timestamp>/`).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    #[command(flatten)]
    pub device: super::DeviceArgs,
}

pub fn run(args: TuiArgs) -> anyhow::Result<ExitCode> {
    // `nfbench` with no command builds the arguments with Default, which leaves the path empty.
    let preset_path = if args.preset.as_os_str().is_empty() {
        PathBuf::from(DEFAULT_PRESET)
    } else {
        args.preset.clone()
    };
    if !terminal::is_interactive() {
        eprintln!(
            "nfbench: stdin or stdout is not a terminal, so the workbench cannot open; training headless \
             (as `nfbench train --headless --preset {}`)",
            preset_path.display()
        );
        return super::train::run(super::train::TrainArgs {
            headless: true,
            preset: preset_path,
            steps: None,
            set: args.set,
            run_dir: args.run_dir,
            json_summary: false,
            device: args.device,
        });
    }
    let sets = args.device.with_sets(&args.set);
    let preset = super::train::effective_preset(&preset_path, &sets, None)?;
    let (session, opts) = session::start_new(&preset_path, &preset, args.run_dir.as_deref())?;
    let session::Session {
        run: run_dir,
        mut recorder,
        ..
    } = session;
    let handle = Trainer::spawn(preset.clone(), opts).context("starting the trainer")?;

    let mut app = App::new(&preset, preset_path.clone(), Theme::from_env());
    let watcher = watch(&preset_path, &mut app);
    let quit = terminal::quit_signals().context("installing the SIGINT/SIGTERM handlers")?;

    let mut record_failed = false;
    let outcome = {
        let mut guard = TerminalGuard::enter().context("opening the terminal")?;
        let mut link = Link {
            commands: handle.commands.clone(),
            events: handle.events.clone(),
            telemetry: Some(handle.telemetry.clone()),
            reloads: watcher.as_ref().map(|w| -> workbench::Reloads<'_> {
                Box::new(move || w.events.try_iter().map(workbench::notice_from).collect())
            }),
            preset_path: preset_path.clone(),
            tap: Some(Box::new(|ev: &Event| {
                record(&mut recorder, ev, &mut record_failed)
            })),
            quit_flag: Some(&quit),
        };
        workbench::run_loop(
            &mut guard.terminal,
            &mut app,
            &mut link,
            &mut CrosstermInput,
        )
        // The guard restores the terminal here, before anything is printed.
    };
    let outcome = outcome.context("running the workbench")?;
    drop(watcher);
    if outcome.abandoned && !handle.is_finished() {
        // A second interrupt: leave without waiting for the final checkpoint.
        let _ = recorder.sync();
        eprintln!(
            "nfbench: left without waiting for the trainer (step {})",
            outcome.step
        );
        return Ok(ExitCode::FAILURE);
    }
    // Whatever the trainer still sent after the loop ended belongs in the record too.
    while let Some(ev) = handle.try_recv() {
        record(&mut recorder, &ev, &mut record_failed);
    }
    recorder
        .sync()
        .with_context(|| format!("finishing {}", recorder.path().display()))?;
    let summary = handle.join();
    let rate = summary.as_ref().map_or(f64::NAN, |s| s.images_per_sec);
    println!(
        "nfbench: {} at step {} ({rate:.1} img/s); run directory {}",
        app.status().state_label().to_lowercase(),
        outcome.step,
        run_dir.path().display()
    );
    match summary {
        Ok(s) if s.state != RunState::Failed => Ok(ExitCode::SUCCESS),
        Ok(_) => Ok(ExitCode::FAILURE),
        Err(e) => Err(anyhow::Error::new(e).context("the trainer failed")),
    }
}

/// Watch the preset file; the workbench still runs (unwatched) when watching is impossible.
fn watch(path: &Path, app: &mut App) -> Option<PresetWatcher> {
    match PresetWatcher::spawn(path) {
        Ok(w) => Some(w),
        Err(e) => {
            app.on_not_watched(e);
            None
        }
    }
}

/// Append an event to the metrics log; the first failure is reported once and recording stops.
fn record(recorder: &mut Recorder, ev: &Event, failed: &mut bool) -> Option<String> {
    if *failed {
        return None;
    }
    match recorder.record(ev) {
        Ok(()) => None,
        Err(e) => {
            *failed = true;
            Some(format!(
                "run record: {} (recording stopped; training goes on)",
                crate::train::error_chain(&e)
            ))
        }
    }
}
