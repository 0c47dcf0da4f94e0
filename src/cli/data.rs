//! `nfbench data import|inspect`.

use crate::data::import::{JpegImportOptions, DEFAULT_MAX_PIXELS};
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
    /// ImageNet as JPEG bytes (format version 2): SRC/train/<wnid>/*; SRC/val/ as class folders or flat with the
    /// devkit's ground truth (+ --val-synsets) or Kaggle's LOC_val_solution.csv. Resumable.
    Imagenet,
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
        /// imagenet: images with a longer side above this are resized to it (and re-encoded).
        #[arg(long, default_value_t = 512)]
        max_side: u32,
        /// imagenet: JPEG quality of re-encoded images.
        #[arg(long, default_value_t = 90)]
        quality: u8,
        /// imagenet: skip files whose header gives more pixels than this (decompression bombs).
        #[arg(long, default_value_t = DEFAULT_MAX_PIXELS)]
        max_pixels: u64,
        /// imagenet: the devkit's synset order (one wnid per line, line k = devkit class id k).
        #[arg(long)]
        val_synsets: Option<PathBuf>,
        /// imagenet: the validation label file (devkit ground truth, or Kaggle's .csv) when not found in SRC.
        #[arg(long)]
        val_labels: Option<PathBuf>,
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
            max_side,
            quality,
            max_pixels,
            val_synsets,
            val_labels,
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
                ImportFormat::Imagenet => {
                    let jpeg = JpegImportOptions {
                        max_side,
                        quality,
                        max_pixels,
                        val_synsets,
                        val_labels,
                    };
                    println!("{}", import::import_imagenet(&src, &out, &opts, &jpeg)?);
                    return Ok(ExitCode::SUCCESS);
                }
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
