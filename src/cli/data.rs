//! `nfbench data import|inspect`.

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
        /// Source file or directory.
        src: PathBuf,
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

pub fn run(_cmd: DataCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("data commands are not built yet (issue 4)")
}
