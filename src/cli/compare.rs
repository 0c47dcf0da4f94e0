//! `nfbench compare RUN_A RUN_B ... --out DIR`: overlay PNGs of the runs' loss and validation top-1, aligned by
//! step, and a markdown table of final metrics and preset differences.

use crate::record::report::compare::write_comparison;
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
