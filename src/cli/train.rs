//! `nfbench train --headless`: training with a progress bar, recorded into a run directory.

use crate::preset::{self, Preset};
use crate::record::{session, Recorder, RunDir};
use crate::train::messages::{Command, Event, RunState};
use crate::train::{TrainSummary, Trainer, TrainerHandle};
use anyhow::Context;
use clap::Args;
use crossbeam::channel::RecvTimeoutError;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let session::Session {
        run, mut recorder, ..
    } = session;
    let handle = Trainer::spawn(preset.clone(), opts)?;
    let outcome = drive(&handle, &mut recorder, preset.run.steps);
    let joined = handle.join();
    recorder
        .flush()
        .with_context(|| format!("writing {}", recorder.path().display()))?;
    let summary = joined?;
    let outcome = outcome?;
    if args.json_summary {
        let line = serde_json::json!({
            "steps": summary.steps,
            "final_train_loss": summary.final_train_loss,
            "val_top1": summary.val_top1,
            "images_per_sec": summary.images_per_sec,
            "state": summary.state,
            "wall_secs": outcome.wall_secs,
            "run_dir": run.path(),
        });
        println!("{line}");
    } else {
        print_summary(&summary, &run, outcome.wall_secs);
    }
    Ok(match summary.state {
        RunState::Finished => ExitCode::SUCCESS,
        RunState::Stopped if outcome.interrupted => ExitCode::from(130),
        _ => ExitCode::FAILURE,
    })
}

fn print_summary(s: &TrainSummary, run: &RunDir, wall: f64) {
    eprintln!(
        "{:?} after {} steps in {:.0} s: train loss {:.4}, val top-1 {:.2}%, {:.1} img/s; run in {}",
        s.state,
        s.steps,
        wall,
        s.final_train_loss,
        s.val_top1 * 100.0,
        s.images_per_sec,
        run.path().display()
    );
}

/// Message lines above the bar, or on stderr when there is no terminal (the bar is hidden then).
struct Lines<'a>(&'a ProgressBar);

impl Lines<'_> {
    fn line(&self, s: impl AsRef<str>) {
        if self.0.is_hidden() {
            eprintln!("{}", s.as_ref());
        } else {
            self.0.println(s.as_ref());
        }
    }
}

struct Outcome {
    interrupted: bool,
    wall_secs: f64,
}

fn progress_bar(steps: u64) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} {msg} ETA {eta_precise}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb
}

/// Consume events until the trainer exits: progress bar, run record, Ctrl-C, divergence.
fn drive(handle: &TrainerHandle, recorder: &mut Recorder, steps: u64) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, interrupted.clone())
            .context("installing the Ctrl-C handler")?;
    }
    let pb = progress_bar(steps);
    let mut stop_sent = false;
    let mut record_error: Option<String> = None;
    let out = Lines(&pb);
    let mut next_line = Instant::now();
    loop {
        if interrupted.load(Ordering::Relaxed) && !stop_sent {
            out.line("interrupted: stopping after this step with a checkpoint");
            handle.send(Command::Stop { checkpoint: true });
            stop_sent = true;
        }
        let event = match handle.recv_timeout(Duration::from_millis(200)) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if let Err(e) = recorder.record(&event) {
            if record_error.is_none() {
                out.line(format!("warning: cannot record metrics: {e}"));
                record_error = Some(e.to_string());
            }
        }
        match &event {
            Event::Started {
                model,
                device,
                precision,
                params,
                start_step,
                run_dir,
                ..
            } => {
                pb.set_position(*start_step);
                out.line(format!(
                    "{model} on {device} ({precision}): {params} parameters; run in {}",
                    run_dir
                        .as_ref()
                        .map(|d| d.display().to_string())
                        .unwrap_or_default()
                ));
            }
            Event::Step(m) => {
                pb.set_position(m.step);
                let msg = format!(
                    "loss {:.3} | {:.1} img/s | lr {:.4}",
                    m.loss, m.images_per_sec, m.lr
                );
                // Without a terminal the bar is hidden: log a progress line every 30 s instead.
                if pb.is_hidden() && Instant::now() >= next_line {
                    eprintln!("step {:>6}/{steps}: {msg}", m.step);
                    next_line = Instant::now() + Duration::from_secs(30);
                }
                pb.set_message(msg);
            }
            Event::Eval(e) => out.line(format!(
                "step {:>6}: val top-1 {:.2}% top-5 {:.2}% loss {:.4} ({} images{})",
                e.step,
                e.top1 * 100.0,
                e.top5 * 100.0,
                e.loss,
                e.images,
                if e.ema { ", EMA" } else { "" }
            )),
            Event::NonFinite {
                step,
                what,
                consecutive,
            } => out.line(format!(
                "step {step}: non-finite {what}; update skipped ({consecutive} in a row)"
            )),
            Event::State {
                state: RunState::Diverged,
                step,
            } => {
                out.line(format!(
                    "diverged at step {step}: stopping (nobody can resume a headless run)"
                ));
                handle.send(Command::Stop { checkpoint: false });
            }
            Event::Rescued(r) => out.line(format!("rescue: {}", r.describe())),
            Event::Warning(w) => out.line(format!("warning: {w}")),
            Event::Error(e) => out.line(format!("error: {e}")),
            Event::Checkpoint { path, step } => {
                out.line(format!("step {step:>6}: checkpoint {}", path.display()))
            }
            Event::Rejected { what, reason, .. } => out.line(format!("rejected {what}: {reason}")),
            _ => {}
        }
    }
    pb.finish_and_clear();
    Ok(Outcome {
        interrupted: interrupted.load(Ordering::Relaxed),
        wall_secs: start.elapsed().as_secs_f64(),
    })
}
