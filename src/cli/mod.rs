//! The command line: one file per command group, each with its own clap arguments and a `run` function.
//! `nfbench` with no command opens the workbench (TUI) on `presets/default.toml`.

pub mod attach;
pub mod bench;
pub mod compare;
pub mod data;
pub mod eval;
pub mod export;
pub mod live;
pub mod model;
pub mod predict;
pub mod preset;
pub mod progress;
pub mod record;
pub mod spp;
pub mod sweep;
pub mod train;
pub mod tui;
pub mod weights;

use crate::model::Precision;
use crate::preset::schema::DeviceSpec;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// A terminal workbench for training Normalizer-Free ResNets and NFNets with Adaptive Gradient Clipping.
#[derive(Debug, Parser)]
#[command(name = "nfbench", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the workbench on a preset (the default when no command is given).
    Tui(tui::TuiArgs),
    /// Train without the workbench (a progress bar; for scripts and CI).
    Train(train::TrainArgs),
    /// Continue a run from its latest checkpoint.
    Resume(record::ResumeArgs),
    /// Reopen the workbench on a run that is training (detached, headless, or in another terminal).
    Attach(attach::AttachArgs),
    /// Open the workbench over a recorded run, read-only, with a step cursor.
    Replay(record::ReplayArgs),
    /// Write PNG pictures and a markdown summary of a recorded run.
    Report(record::ReportArgs),
    /// List the runs in a directory with their final metrics.
    Runs(record::RunsArgs),
    /// The model zoo: list architectures, show one's blocks and parameter count.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Signal propagation at init: per-block variance against the prediction.
    Spp(spp::SppArgs),
    /// Data sets: import into HDF5, inspect.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Presets: list the fields, check a file.
    #[command(subcommand)]
    Preset(preset::PresetCommand),
    /// Measure training throughput and where a step's time goes.
    Bench(bench::BenchArgs),
    // Weights in and out (nfbench issue 17).
    /// Weights: import timm / DeepMind checkpoints, export to their layouts.
    #[command(subcommand)]
    Weights(weights::WeightsCommand),
    /// Top-1 / top-5 / loss of a checkpoint on a data set's val split (a JSON line).
    Eval(eval::EvalArgs),
    /// The top classes of images, with probabilities and class names.
    Predict(predict::PredictArgs),
    /// Train a grid of runs (e.g. lambda x batch size) and tabulate them: CSV, JSON, a heatmap PNG.
    Sweep(sweep::SweepArgs),
    /// Export a recorded run: TensorBoard event files, CSV.
    Export(export::ExportArgs),
    /// Overlay recorded runs: loss and validation PNGs, a table of final metrics and preset differences.
    Compare(compare::CompareArgs),
}

/// Parse the command line, run the command, and turn its error into a message and an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.as_ref().is_some_and(Command::prints_a_listing) {
        end_quietly_on_closed_pipe();
    }
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

impl Command {
    /// Commands that only print (a listing, a table, a file check): a closed pipe (`nfbench model list | head`)
    /// ends them quietly, as it ends `ls`.
    fn prints_a_listing(&self) -> bool {
        matches!(
            self,
            Command::Runs(_)
                | Command::Model(_)
                | Command::Preset(_)
                | Command::Data(data::DataCommand::Inspect { .. })
        )
    }
}

/// Restore the default action of SIGPIPE, which the Rust runtime sets to "ignore": `println!` would then panic
/// on a closed pipe ("failed printing to stdout: Broken pipe", exit 101). With the default, the process ends
/// silently the way every Unix filter does. Not for the training commands: a run must never die because whoever
/// read its output went away.
fn end_quietly_on_closed_pipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Run one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => tui::run(tui::TuiArgs::default()),
        Some(Command::Tui(args)) => tui::run(args),
        Some(Command::Train(args)) => train::run(args),
        Some(Command::Resume(args)) => record::resume(args),
        Some(Command::Attach(args)) => attach::run(args),
        Some(Command::Replay(args)) => record::replay(args),
        Some(Command::Report(args)) => record::report(args),
        Some(Command::Runs(args)) => record::runs(args),
        Some(Command::Model(cmd)) => model::run(cmd),
        Some(Command::Spp(args)) => spp::run(args),
        Some(Command::Data(cmd)) => data::run(cmd),
        Some(Command::Preset(cmd)) => preset::run(cmd),
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::Weights(cmd)) => weights::run(cmd),
        Some(Command::Eval(args)) => eval::run(args),
        Some(Command::Predict(args)) => predict::run(args),
        Some(Command::Sweep(args)) => sweep::run(args),
        Some(Command::Export(args)) => export::run(args),
        Some(Command::Compare(args)) => compare::run(args),
    }
}

/// `--device` and `--dtype`, shorthands for `--set run.device=...` and `--set run.dtype=...` (validated as those).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DeviceArgs {
    /// Where to train: `auto` (a GPU when there is one, else the CPU), `cpu`, or `cuda:N`. Overrides `run.device`.
    #[arg(long, value_name = "auto|cpu|cuda:N")]
    pub device: Option<DeviceSpec>,
    /// Activation precision: `f32`, or `bf16` (master weights and AGC stay f32). Overrides `run.dtype`.
    #[arg(long, value_name = "f32|bf16", value_parser = parse_dtype)]
    pub dtype: Option<Precision>,
}

/// `--dtype`'s words, named by the preset field they set.
fn parse_dtype(text: &str) -> Result<Precision, String> {
    Precision::parse(text).ok_or_else(|| format!("run.dtype `{text}` is not `f32` or `bf16`"))
}

impl DeviceArgs {
    /// `sets` followed by the overrides these flags stand for (so they win over an earlier `--set`).
    pub fn with_sets(&self, sets: &[String]) -> Vec<String> {
        let mut all = sets.to_vec();
        if let Some(d) = self.device {
            all.push(format!("run.device={d}"));
        }
        if let Some(t) = self.dtype {
            all.push(format!("run.dtype={}", t.name()));
        }
        all
    }
}
