//! `nfbench spp`: signal propagation at init.

use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct SppArgs {
    /// Architecture name.
    #[arg(long)]
    pub model: String,
    /// Batch size of the unit-Gaussian input.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Input resolution in pixels (default: the architecture's training resolution).
    #[arg(long)]
    pub resolution: Option<usize>,
    /// SkipInit gain at init (1 shows the alpha^2 staircase).
    #[arg(long, default_value_t = 1.0)]
    pub skip_gain: f64,
    /// Seed for the weights and the input.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: SppArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("spp is not built yet (issue 2)")
}
