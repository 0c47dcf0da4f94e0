//! `nfbench` / `nfbench tui`: the workbench.

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args, Default)]
pub struct TuiArgs {
    /// Preset file to train with (watched and hot-reloaded).
    #[arg(long, default_value = "presets/default.toml")]
    pub preset: PathBuf,
    /// Override preset fields, e.g. `--set agc.lambda=0.02` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Run directory (default `runs/<preset>-<timestamp>/`).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
}

pub fn run(_args: TuiArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the workbench is not built yet (issue 5)")
}
