//! `nfbench compare RUN_A RUN_B ... --out DIR`: overlay PNGs of the runs' loss and validation top-1, aligned by
//! step, and a markdown table of final metrics and preset differences.

use crate::preset::Preset;
use crate::record::report::compare::{write_comparison, ComparedRun};
use crate::tui::loss::Reference;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Two or more run directories.
    #[arg(required = true, num_args = 2..)]
    pub runs: Vec<PathBuf>,
    /// Where compare_loss.png, compare_top1.png and compare.md go.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let c = write_comparison(&args.runs, &args.out)?;
    for p in &c.pictures {
        println!("{}", p.display());
    }
    println!("{}", c.summary.display());
    Ok(ExitCode::SUCCESS)
}

/// The reference of `tui --compare RUN_DIR`: its curves and its preset (the record's copy when the file is gone).
pub fn reference(dir: &std::path::Path) -> anyhow::Result<(Reference, Preset)> {
    let run = ComparedRun::open(dir)?;
    let preset: Preset = toml::from_str(&run.preset_toml)
        .with_context(|| format!("{}: the run's preset does not parse", dir.display()))?;
    Ok((
        Reference::new(&run.label, &run.run.steps, &run.run.evals),
        preset,
    ))
}
