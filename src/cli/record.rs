//! Run records on the command line: `resume`, `replay`, `report`, `runs`.

use clap::Args;
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

pub fn resume(_args: ResumeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("resume is not built yet (issue 7)")
}

pub fn replay(_args: ReplayArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("replay is not built yet (issue 7)")
}

pub fn report(_args: ReportArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("report is not built yet (issue 7)")
}

pub fn runs(_args: RunsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("runs is not built yet (issue 7)")
}
