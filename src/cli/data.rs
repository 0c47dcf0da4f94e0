//! `nfbench data import|inspect`.

use crate::data::{import, inspect, ImportOptions};
use clap::{Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ImportFormat {
    /// CIFAR-10 binary records (label byte + 3072 CHW bytes), files or a directory.
    CifarBin,
    /// MNIST-family IDX files in a directory (gzip or not).
    Idx,
    /// ImageNet layout: SRC/train/<class>/* and SRC/val/<class>/*.
    Folder,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Import a data set into one HDF5 file.
    Import {
        #[arg(long, value_enum)]
        format: ImportFormat,
        /// Source: a directory, or (cifar-bin) one or more record files.
        #[arg(required = true, num_args = 1..)]
        src: Vec<PathBuf>,
        /// Output HDF5 file.
        #[arg(long)]
        out: PathBuf,
        /// Resize (shorter side to R, centre crop R x R); folder format only.
        #[arg(long)]
        resolution: Option<u32>,
        /// Fraction of the training images held out for validation when the source has no validation split.
        #[arg(long, default_value_t = 0.2)]
        val_split: f64,
        /// Fail on the first bad image instead of skipping it.
        #[arg(long)]
        strict: bool,
    },
    /// Check a data-set file: shapes, classes, counts, pixel statistics.
    Inspect {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: DataCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DataCommand::Import {
            format,
            src,
            out,
            resolution,
            val_split,
            strict,
        } => {
            let opts = ImportOptions {
                resolution,
                val_split,
                strict,
                progress: true,
            };
            let summary = match format {
                ImportFormat::CifarBin => import::import_cifar_bin(&src, &out, &opts)?,
                ImportFormat::Idx => import::import_idx(&src, &out, &opts)?,
                ImportFormat::Folder => import::import_folder(&src, &out, &opts)?,
            };
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Inspect { file, json } => {
            let report = inspect(&file)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
