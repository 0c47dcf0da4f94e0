//! `nfbench train --headless`: training with a progress bar.

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

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
}

pub fn run(_args: TrainArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("headless training is not built yet (issue 3)")
}
