//! `nfbench model list|info`.

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// List the architectures.
    List,
    /// Parameter count, FLOPs and the per-block table of one architecture.
    Info {
        /// Architecture name.
        name: String,
        /// Number of classes.
        #[arg(long, default_value_t = 1000)]
        classes: usize,
        /// Input resolution in pixels (default: the architecture's training resolution).
        #[arg(long)]
        resolution: Option<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(_cmd: ModelCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the model zoo is not built yet (issue 2)")
}
