//! `nfbench export RUN_DIR [--tensorboard DIR] [--csv DIR]`: a recorded run as TensorBoard event files and CSV.

use crate::record::export::{csv::write_csv, tensorboard::write_events};
use crate::record::metrics::read_run;
use crate::record::RunDir;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run directory to export.
    pub run_dir: PathBuf,
    /// Write a TensorBoard event file here (`tensorboard --logdir DIR` shows it).
    #[arg(long, value_name = "DIR")]
    pub tensorboard: Option<PathBuf>,
    /// Write steps.csv, eval.csv, layers_agc.csv and scalars.csv here.
    #[arg(long, value_name = "DIR")]
    pub csv: Option<PathBuf>,
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.tensorboard.is_some() || args.csv.is_some(),
        "nothing to export: give --tensorboard DIR and/or --csv DIR"
    );
    let run = RunDir::open(&args.run_dir)?;
    let recorded = read_run(&run.metrics_path())?;
    if let Some(dir) = &args.tensorboard {
        println!("{}", write_events(&recorded, dir)?.display());
    }
    if let Some(dir) = &args.csv {
        for p in write_csv(&recorded, dir)? {
            println!("{}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
