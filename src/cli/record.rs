//! Run records on the command line: `resume`, `replay`, `report`, `runs`.

use crate::record::metrics::read_run;
use crate::record::{replay, report, runs, session, RunDir};
use crate::train::messages::{Event, RunState};
use crate::train::Trainer;
use crate::tui::{App, Theme};
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run directory to continue.
    pub run_dir: PathBuf,
    /// Train this many more steps (default: to the preset's `run.steps`).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Without the workbench.
    #[arg(long)]
    pub headless: bool,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The run directory to look at.
    pub run_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run directory to report on.
    pub run_dir: PathBuf,
    /// Where the PNG pictures and the summary go.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Directory holding run directories.
    #[arg(default_value = "runs")]
    pub dir: PathBuf,
}

pub fn resume(args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let (mut session, opts) = session::start_resume(&args.run_dir, args.steps)?;
    for note in &session.notes {
        eprintln!("{note}");
    }
    if !args.headless {
        eprintln!("note: the workbench does not resume runs yet; continuing headless");
    }
    let total = session.preset.run.steps;
    let handle = Trainer::spawn(session.preset.clone(), opts)?;
    let progress = Progress::new(session.start_step, total);
    session::drive(
        &handle,
        &mut session.recorder,
        |e| progress.on_event(e),
        |e| {
            progress.line(&format!(
                "warning: recording failed (training goes on): {}",
                crate::train::error_chain(e)
            ))
        },
    )?;
    progress.finish();
    let summary = handle.join()?;
    eprintln!(
        "{}: {:?} at step {} (final training loss {:.4}, val top-1 {})",
        session.run.path().display(),
        summary.state,
        summary.steps,
        summary.final_train_loss,
        if summary.val_top1.is_finite() {
            format!("{:.2}%", 100.0 * summary.val_top1)
        } else {
            "-".into()
        }
    );
    Ok(match summary.state {
        RunState::Finished | RunState::Stopped => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

/// A progress bar on a terminal; plain lines for checkpoints, evaluations and incidents either way.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(start: u64, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            let style = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_position(start);
            bar
        });
        Progress { bar }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    fn on_event(&self, event: &Event) {
        match event {
            Event::Step(m) => {
                if let Some(bar) = &self.bar {
                    bar.set_position(m.step);
                    bar.set_message(format!("loss {:.4}  {:.0} img/s", m.loss, m.images_per_sec));
                }
            }
            Event::Eval(e) => self.line(&format!(
                "step {}: validation top-1 {:.2}%, loss {:.4}",
                e.step,
                100.0 * e.top1,
                e.loss
            )),
            Event::Checkpoint { path, step } => {
                self.line(&format!("step {step}: checkpoint {}", path.display()))
            }
            Event::Applied {
                params,
                origin,
                step,
            } => {
                for p in params {
                    self.line(&format!(
                        "step {step}: {} = {} ({origin})",
                        p.key(),
                        p.value_string()
                    ));
                }
            }
            Event::Rejected { what, reason, step } => {
                self.line(&format!("step {step}: rejected {what}: {reason}"))
            }
            Event::NonFinite {
                step,
                what,
                consecutive,
            } => self.line(&format!(
                "step {step}: non-finite {what} ({consecutive} in a row), update skipped"
            )),
            Event::Warning(w) => self.line(&format!("warning: {w}")),
            Event::Error(e) => self.line(&format!("error: {e}")),
            _ => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let run = RunDir::open(&args.run_dir)?;
    let recorded = read_run(&run.metrics_path())?;
    // The preset the run was created with; a run without one (or an unreadable one) replays on the defaults.
    let preset = run.load_preset().unwrap_or_default();
    let events = replay::recorded_events(&recorded);
    if events.is_empty() {
        anyhow::bail!("{}: nothing recorded yet", run.metrics_path().display());
    }
    if !std::io::stdout().is_terminal() {
        anyhow::bail!("replay needs a terminal (use `nfbench report` for pictures)");
    }
    let label = run.path().to_path_buf();
    let make_app = || App::replay(&preset, label.clone(), Theme::from_env());
    crate::tui::run_replay(&make_app, &events)?;
    Ok(ExitCode::SUCCESS)
}

pub fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let report = report::write_report(&args.run_dir, &args.out)?;
    for p in &report.pictures {
        println!("{}", p.display());
    }
    println!("{}", report.summary.display());
    Ok(ExitCode::SUCCESS)
}

pub fn runs(args: RunsArgs) -> anyhow::Result<ExitCode> {
    let list = runs::list_runs(&args.dir)?;
    if list.is_empty() {
        println!("no runs in {}", args.dir.display());
    } else {
        print!("{}", runs::format_table(&list));
    }
    Ok(ExitCode::SUCCESS)
}
