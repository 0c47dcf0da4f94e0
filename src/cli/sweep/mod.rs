//! `nfbench sweep PRESET --grid KEY=V1,V2 ... [--steps N] [--jobs J] [--scale-lr linear|sqrt|none] [--out DIR]`:
//! a grid of ordinary runs under one sweep directory, trained as child `nfbench train --headless` processes, J at
//! a time, with a live table; results as `results.csv`, `results.json` and `heatmap.png`.
//!
//! Resumable: `sweep.json` in the sweep directory holds the plan. Running the same command again skips the runs
//! whose record says they are done (finished or diverged), resumes a half-done run from its checkpoint
//! (`nfbench resume`), and starts the others afresh. Children get SIGTERM when the sweep dies (Linux), which stops
//! them with a final checkpoint, so even a SIGKILLed sweep leaves every run resumable.

use super::train::effective_preset;
use crate::preset::schema::{GridAxis, ScaleLr};
use crate::record::checkpoint::list_checkpoints;
use crate::record::report::{write_sweep_heatmap, HeatmapCell, SweepHeatmap};
use crate::record::run_dir::{CHECKPOINT_DIR, METRICS_FILE};
use crate::record::runs::RunOutcome;
use crate::record::LiveFile;
use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::time::{Duration, Instant};

mod results;
mod runner;

/// The plan file in a sweep directory.
pub const PLAN_FILE: &str = "sweep.json";
/// How often the live table is refreshed.
const REFRESH: Duration = Duration::from_millis(500);
/// The longest a restarted sweep waits for a run the previous sweep's child is still stopping.
const LIVE_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The preset every run starts from (its `[sweep]` table gives the grid when there is no --grid).
    pub preset: PathBuf,
    /// One grid axis: a preset key and its values, e.g. `--grid agc.lambda=0.01,0.02` (repeatable; replaces the
    /// preset's `sweep.grid`). Values are TOML values, as `--set` takes them.
    #[arg(long = "grid", value_name = "KEY=V1,V2,...")]
    pub grid: Vec<String>,
    /// Train each run this many steps (overrides `run.steps`).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Runs at the same time (overrides `sweep.jobs`).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// How the learning rate follows the batch size (overrides `sweep.scale_lr`).
    #[arg(long, value_name = "linear|sqrt|none", value_parser = parse_scale_lr)]
    pub scale_lr: Option<ScaleLr>,
    /// Override preset fields of every run, e.g. `--set data.eval_images=500` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The sweep directory (default `runs/sweep-<preset>-<timestamp>/`); give an existing one to continue it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn parse_scale_lr(text: &str) -> Result<ScaleLr, String> {
    toml::Value::String(text.into())
        .try_into()
        .map_err(|_| format!("--scale-lr `{text}` is not one of linear, sqrt, none"))
}

/// The whole sweep, as `sweep.json` keeps it: what a restart must match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub preset: PathBuf,
    pub sets: Vec<String>,
    pub steps: Option<u64>,
    pub scale_lr: ScaleLr,
    pub axes: Vec<Axis>,
    pub points: Vec<Point>,
}

/// A grid axis with its values as `--set` writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

/// One grid point: its run directory's name, its value on each axis, and every `--set` its run gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub name: String,
    pub values: Vec<String>,
    pub sets: Vec<String>,
    pub planned_steps: u64,
}

pub fn run(args: SweepArgs) -> anyhow::Result<ExitCode> {
    let base = effective_preset(&args.preset, &args.set, args.steps)?;
    let axes = if args.grid.is_empty() {
        base.sweep.grid.iter().map(axis_of_preset).collect()
    } else {
        args.grid
            .iter()
            .map(|g| parse_grid(g))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    anyhow::ensure!(
        !axes.is_empty(),
        "{}: no grid: give --grid KEY=V1,V2 or a [sweep] grid in the preset",
        args.preset.display()
    );
    let scale_lr = args.scale_lr.unwrap_or(base.sweep.scale_lr);
    let jobs = args.jobs.unwrap_or(base.sweep.jobs);
    anyhow::ensure!(jobs >= 1, "--jobs must be >= 1");
    let plan = make_plan(&args, axes, scale_lr)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&args.preset));
    prepare_out(&out, &plan)?;
    let mut sweep = Sweep::new(plan, out, jobs);
    sweep.run_all()?;
    sweep.write_results()
}

/// `KEY=V1,V2,...` into an axis, each value checked as a TOML literal (a bare word is a string).
pub fn parse_grid(arg: &str) -> anyhow::Result<Axis> {
    let (key, values) = arg.split_once('=').with_context(|| {
        format!("--grid {arg}: expected KEY=V1,V2,..., e.g. agc.lambda=0.01,0.02")
    })?;
    let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
    anyhow::ensure!(
        !key.trim().is_empty() && values.iter().all(|v| !v.is_empty()),
        "--grid {arg}: a key and non-empty values are needed"
    );
    Ok(Axis {
        key: key.trim().to_string(),
        values,
    })
}

fn axis_of_preset(axis: &GridAxis) -> Axis {
    Axis {
        key: axis.key.clone(),
        values: axis.values.iter().map(|v| v.to_string()).collect(),
    }
}

/// Every grid point in order (the first axis slowest), each checked now by building its preset, so a bad key
/// or value stops the sweep before anything runs.
fn make_plan(args: &SweepArgs, axes: Vec<Axis>, scale_lr: ScaleLr) -> anyhow::Result<Plan> {
    let base = effective_preset(&args.preset, &args.set, args.steps)?;
    let mut points = Vec::new();
    for (i, combo) in cartesian(&axes).into_iter().enumerate() {
        let mut sets = args.set.clone();
        sets.extend(
            axes.iter()
                .zip(&combo)
                .map(|(a, v)| format!("{}={v}", a.key)),
        );
        let p = effective_preset(&args.preset, &sets, args.steps)
            .with_context(|| format!("grid point {}", describe(&axes, &combo)))?;
        let factor = scale_lr.lr_scale_factor(base.data.batch_size, p.data.batch_size);
        if factor != 1.0 {
            sets.push(format!("optim.lr_scale={}", p.optim.lr_scale * factor));
        }
        points.push(Point {
            name: point_name(i, &axes, &combo),
            values: combo,
            sets,
            planned_steps: p.run.steps,
        });
    }
    let preset = std::fs::canonicalize(&args.preset)
        .with_context(|| format!("{}", args.preset.display()))?;
    Ok(Plan {
        preset,
        sets: args.set.clone(),
        steps: args.steps,
        scale_lr,
        axes,
        points,
    })
}

fn cartesian(axes: &[Axis]) -> Vec<Vec<String>> {
    axes.iter().fold(vec![Vec::new()], |acc, axis| {
        acc.iter()
            .flat_map(|prefix| {
                axis.values.iter().map(move |v| {
                    let mut p = prefix.clone();
                    p.push(v.clone());
                    p
                })
            })
            .collect()
    })
}

fn describe(axes: &[Axis], values: &[String]) -> String {
    axes.iter()
        .zip(values)
        .map(|(a, v)| format!("{}={}", a.key, label(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A value as a label: strings without their TOML quotes.
fn label(value: &str) -> String {
    value.trim_matches('"').to_string()
}

/// `03-agc.lambda=0.02_data.batch_size=64`: the index keeps the grid order, the rest says what it is; anything
/// a file name should not hold becomes `_`.
fn point_name(i: usize, axes: &[Axis], values: &[String]) -> String {
    let body: String = axes
        .iter()
        .zip(values)
        .map(|(a, v)| format!("{}={}", a.key, label(v)))
        .collect::<Vec<_>>()
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._=-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{i:02}-{body}")
}

fn default_out(preset: &Path) -> PathBuf {
    let stem = preset
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "preset".into());
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    PathBuf::from("runs").join(format!("sweep-{stem}-{stamp}"))
}

/// Creates the sweep directory with its plan, or checks that an existing one holds this same sweep.
fn prepare_out(out: &Path, plan: &Plan) -> anyhow::Result<()> {
    let path = out.join(PLAN_FILE);
    if path.is_file() {
        let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        let old: Plan = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a sweep plan", path.display()))?;
        anyhow::ensure!(
            &old == plan,
            "{} holds a different sweep (preset, --set, --steps, --scale-lr or grid differ); pick another --out",
            out.display()
        );
        return Ok(());
    }
    std::fs::create_dir_all(out.join("logs")).with_context(|| out.display().to_string())?;
    let text = serde_json::to_string_pretty(plan)?;
    std::fs::write(&path, text).with_context(|| path.display().to_string())
}

/// Where one grid point stands.
#[derive(Debug, Clone, PartialEq)]
enum Status {
    Pending,
    /// A previous sweep's child still holds the run (stopping after its kill).
    Waiting,
    Running,
    /// Done: its record's outcome.
    Done,
    /// The child exited without the run being done.
    Failed(String),
}

struct Sweep {
    plan: Plan,
    out: PathBuf,
    jobs: usize,
    status: Vec<Status>,
    outcome: Vec<Option<RunOutcome>>,
    running: Vec<(usize, Child)>,
    drawn_lines: usize,
    tty: bool,
}

#[cfg(test)]
mod tests {
    use super::results::merge;
    use super::*;

    fn axis(key: &str, values: &[&str]) -> Axis {
        Axis {
            key: key.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn the_grid_is_the_product_with_the_first_axis_slowest() {
        let axes = [axis("a", &["1", "2"]), axis("b", &["x", "y", "z"])];
        let got = cartesian(&axes);
        assert_eq!(got.len(), 6);
        assert_eq!(got[0], ["1", "x"]);
        assert_eq!(got[2], ["1", "z"]);
        assert_eq!(got[3], ["2", "x"]);
        assert_eq!(
            point_name(3, &axes, &got[3]),
            "03-a=2_b=x",
            "index, then key=value joined by _"
        );
        let odd = [axis("data.path", &["\"d/x y.h5\""])];
        assert_eq!(point_name(0, &odd, &odd[0].values), "00-data.path=d_x_y.h5");
    }

    #[test]
    fn grid_arguments_parse_or_say_what_is_wrong() {
        assert_eq!(
            parse_grid("agc.lambda=0.01, 0.02").unwrap(),
            axis("agc.lambda", &["0.01", "0.02"])
        );
        for bad in ["agc.lambda", "=1,2", "agc.lambda=1,,2"] {
            let e = parse_grid(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
        assert_eq!(parse_scale_lr("sqrt"), Ok(ScaleLr::Sqrt));
        assert!(parse_scale_lr("cubic").unwrap_err().contains("cubic"));
    }

    #[test]
    fn a_diverged_cell_gives_way_to_a_finite_one() {
        let div = HeatmapCell {
            top1: None,
            diverged: true,
        };
        let (lo, hi) = (
            HeatmapCell {
                top1: Some(0.2),
                diverged: false,
            },
            HeatmapCell {
                top1: Some(0.5),
                diverged: false,
            },
        );
        assert_eq!(merge(Some(div), lo), lo);
        assert_eq!(merge(Some(lo), div), lo);
        assert_eq!(merge(Some(lo), hi), hi);
        assert_eq!(merge(Some(div), div), div);
    }
}
