//! `nfbench preset fields|check`.

use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum PresetCommand {
    /// Every preset field: name, type, default, range, live or restart-only, and its documentation.
    Fields,
    /// Validate a preset and print the effective configuration.
    Check { file: PathBuf },
}

pub fn run(_cmd: PresetCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("preset commands are not built yet (issue 6)")
}
