//! `nfbench bench`: train-step throughput and its split.

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Preset file whose model, batch and resolution are measured.
    #[arg(long, default_value = "presets/default.toml")]
    pub preset: PathBuf,
    /// Override preset fields, e.g. `--set model.name=nf_resnet26` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Timed steps (after warm-up).
    #[arg(long, default_value_t = 20)]
    pub steps: u64,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the benchmark is not built yet (issue 3 / 9)")
}
