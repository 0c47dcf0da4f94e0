//! Run records on the command line: `resume`, `replay`, `report`, `runs`.

use crate::record::metrics::read_run;
use crate::record::{replay, report, runs, session, RunDir};
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
    let (session, opts) = session::start_resume(&args.run_dir, args.steps)?;
    if !args.headless {
        eprintln!("note: the workbench does not resume runs yet; continuing headless (`nfbench attach` opens it)");
    }
    let preset_path = session.run.preset_path();
    super::train::run_headless(session, opts, &preset_path, Default::default())
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
