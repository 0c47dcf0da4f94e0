//! `nfbench` / `nfbench tui`: the workbench.
//!
//! Loads the preset (with `--set` overrides), creates the run directory and its metrics log, starts the trainer
//! on its own thread with the relay that records it (`cli/live.rs`), watches the preset file, and runs the TUI
//! loop until the user quits and the trainer has stopped. When the terminal goes away the run detaches (or stops,
//! per `run.on_hangup`). Without a terminal it says so and trains headless instead.

use super::live::LiveRun;
use crate::preset::watch::PresetWatcher;
use crate::preset::OnHangup;
use crate::record::{session, LiveMode};
use crate::train::messages::{Command, RunState};
use crate::tui::events::Level;
use crate::tui::terminal::{self, Signals, TerminalGuard};
use crate::tui::{self as workbench, App, CrosstermInput, End, Link, Theme};
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
    /// A finished run to compare with: its loss and validation curves are drawn under the live ones and the
    /// hyperparameter pane marks where its preset differs.
    #[arg(long, value_name = "RUN_DIR")]
    pub compare: Option<PathBuf>,
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
    let (live, warnings) = LiveRun::start(session, opts, &preset_path, LiveMode::Workbench)?;
    let signals = Signals::install().context("installing the signal handlers")?;

    let mut app = App::new(&preset, preset_path.clone(), Theme::from_env());
    // The run picker (`r`) loads its choice the way `--compare` does.
    app.set_reference_loader(Box::new(|dir| {
        super::compare::reference(dir).map_err(|e| format!("{e:#}"))
    }));
    if let Some(dir) = &args.compare {
        let (reference, ref_preset) = super::compare::reference(dir)?;
        app.set_reference(reference, &ref_preset);
    }
    for w in warnings {
        app.log(Level::Warn, w);
    }
    let watcher = watch(&preset_path, &mut app);
    let mut guard = TerminalGuard::enter().context("opening the terminal")?;
    let mut input = CrosstermInput::start().context("reading the terminal")?;
    let outcome = {
        let events = live.subscribe();
        let mut link = Link {
            commands: live.handle().commands.clone(),
            events: events.events,
            telemetry: Some(events.telemetry),
            reloads: watcher.as_ref().map(|w| -> workbench::Reloads<'_> {
                Box::new(move || w.events.try_iter().map(workbench::notice_from).collect())
            }),
            preset_path: preset_path.clone(),
            tap: None,
            quit_flag: Some(signals.interrupt()),
            hangup_flag: Some(signals.hangup()),
        };
        workbench::run_loop(&mut guard.terminal, &mut app, &mut link, &mut input)
    };
    drop(watcher);
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            drop(guard);
            return Err(anyhow::Error::new(e).context("running the workbench"));
        }
    };
    if let End::TerminalLost(why) = &outcome.end {
        return Ok(after_hangup(live, guard, input, &signals, why));
    }
    // Restore the terminal before anything is printed.
    drop(guard);
    drop(input);
    match outcome.end {
        End::Abandoned if !live.handle().is_finished() => {
            // A second interrupt: leave without waiting for the final checkpoint.
            eprintln!(
                "nfbench: left without waiting for the trainer (step {})",
                outcome.step
            );
            live.abandon();
            return Ok(ExitCode::FAILURE);
        }
        End::Quit | End::Abandoned | End::TerminalLost(_) => {}
    }
    let run_dir = live.run().path().to_path_buf();
    let (summary, report) = live.finish();
    if let Some(e) = &report.record_error {
        eprintln!(
            "nfbench: the run record is incomplete: {}",
            crate::train::error_chain(e)
        );
    }
    let rate = summary.as_ref().map_or(f64::NAN, |s| s.images_per_sec);
    println!(
        "nfbench: {} at step {} ({rate:.1} img/s); run directory {}",
        app.status().state_label().to_lowercase(),
        outcome.step,
        run_dir.display()
    );
    match summary {
        Ok(s) if s.state != RunState::Failed && report.record_error.is_none() => {
            Ok(ExitCode::SUCCESS)
        }
        Ok(_) => Ok(ExitCode::FAILURE),
        Err(e) => Err(anyhow::Error::new(e).context("the trainer failed")),
    }
}

/// The terminal went away with the trainer still running: detach (training goes on headless, attachable) or stop
/// with a final checkpoint, per `run.on_hangup`; then wait for the trainer like a headless run.
fn after_hangup(
    mut live: LiveRun,
    guard: TerminalGuard,
    input: CrosstermInput,
    signals: &Signals,
    why: &str,
) -> ExitCode {
    // First the descriptors off the dead terminal (a write to it fails, and a failed `eprintln!` panics), then
    // the terminal left as it is: there is nothing to restore, and ratatui's drop would try.
    live.detach(why);
    guard.abandon();
    // The input reader can end now (see `CrosstermInput`).
    drop(input);
    let on_hangup = live.preset().run.on_hangup;
    if on_hangup == OnHangup::Stop {
        live.handle().send(Command::Stop { checkpoint: true });
    }
    // The hangup has been handled: a later SIGHUP (there is none to expect) must not detach again.
    signals
        .hangup()
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let events = live.subscribe();
    let waited = live.wait(&events, signals, on_hangup, |_| {});
    if waited.abandoned {
        live.abandon();
        return ExitCode::FAILURE;
    }
    let run_dir = live.run().path().to_path_buf();
    let (summary, report) = live.finish();
    let lines = super::train::final_lines(&summary, &report, &waited);
    if let Ok(s) = &summary {
        // Goes to nfbench.log in the run directory (the terminal is gone).
        eprintln!(
            "nfbench: {:?} at step {} after the terminal went away; run directory {}",
            s.state,
            s.steps,
            run_dir.display()
        );
    }
    for l in &lines.text {
        eprintln!("nfbench: {l}");
    }
    lines.code
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
