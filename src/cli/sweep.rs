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

impl Sweep {
    fn new(plan: Plan, out: PathBuf, jobs: usize) -> Sweep {
        let n = plan.points.len();
        Sweep {
            plan,
            out,
            jobs,
            status: vec![Status::Pending; n],
            outcome: vec![None; n],
            running: Vec::new(),
            drawn_lines: 0,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn dir(&self, i: usize) -> PathBuf {
        self.out.join(&self.plan.points[i].name)
    }

    /// Trains every point not done, `jobs` at a time, refreshing the table until all are done or failed.
    fn run_all(&mut self) -> anyhow::Result<()> {
        let mut queue: VecDeque<usize> = (0..self.plan.points.len()).collect();
        let waiting_since = Instant::now();
        loop {
            self.reap()?;
            let mut deferred = VecDeque::new();
            while self.running.len() < self.jobs {
                let Some(i) = queue.pop_front() else { break };
                if !self.start(i, waiting_since)? {
                    deferred.push_back(i);
                }
            }
            queue.extend(deferred);
            self.refresh_running();
            self.draw();
            if self.running.is_empty() && queue.is_empty() {
                return Ok(());
            }
            std::thread::sleep(REFRESH);
        }
    }

    /// Starts point `i`, or finds it done. False when a live process still holds its run (try again later).
    fn start(&mut self, i: usize, waiting_since: Instant) -> anyhow::Result<bool> {
        let dir = self.dir(i);
        if dir.join(METRICS_FILE).is_file() {
            if LiveFile::read_alive(&dir).is_some() {
                anyhow::ensure!(
                    waiting_since.elapsed() < LIVE_WAIT,
                    "{}: another process is still training it",
                    dir.display()
                );
                self.status[i] = Status::Waiting;
                return Ok(false);
            }
            if let Ok(outcome) = RunOutcome::read(&dir) {
                if outcome.is_done() {
                    self.outcome[i] = Some(outcome);
                    self.status[i] = Status::Done;
                    return Ok(true);
                }
                if has_checkpoint(&dir) {
                    self.outcome[i] = Some(outcome);
                    self.spawn(
                        i,
                        &[
                            "resume".into(),
                            dir.display().to_string(),
                            "--headless".into(),
                        ],
                    )?;
                    return Ok(true);
                }
            }
        }
        // Nothing to continue from: start afresh.
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| dir.display().to_string())?;
        }
        let mut args: Vec<String> = vec![
            "train".into(),
            "--headless".into(),
            "--preset".into(),
            self.plan.preset.display().to_string(),
            "--run-dir".into(),
            dir.display().to_string(),
        ];
        if let Some(n) = self.plan.steps {
            args.extend(["--steps".into(), n.to_string()]);
        }
        for s in self.point_sets(i) {
            args.extend(["--set".into(), s]);
        }
        self.spawn(i, &args)?;
        Ok(true)
    }

    /// The point's sets plus the loader workers of its share of the cores (unless the user chose them).
    fn point_sets(&self, i: usize) -> Vec<String> {
        let mut sets = self.plan.points[i].sets.clone();
        if !sets.iter().any(|s| s.starts_with("data.workers=")) {
            let base = effective_preset(&self.plan.preset, &sets, None)
                .map(|p| p.data.workers)
                .unwrap_or(1);
            sets.push(format!("data.workers={}", base.min(self.threads()).max(1)));
        }
        sets
    }

    /// Cores per job.
    fn threads(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / self.jobs).max(1)
    }

    fn spawn(&mut self, i: usize, args: &[String]) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("finding the nfbench executable")?;
        let log_path = self
            .out
            .join("logs")
            .join(format!("{}.log", self.plan.points[i].name));
        std::fs::create_dir_all(self.out.join("logs"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| log_path.display().to_string())?;
        let mut cmd = std::process::Command::new(exe);
        cmd.args(args)
            .env("RAYON_NUM_THREADS", self.threads().to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting the run {}", self.plan.points[i].name))?;
        self.running.push((i, child));
        self.status[i] = Status::Running;
        Ok(())
    }

    /// Collects the children that ended and reads their outcome.
    fn reap(&mut self) -> anyhow::Result<()> {
        let mut still = Vec::new();
        for (i, mut child) in std::mem::take(&mut self.running) {
            match child.try_wait()? {
                None => still.push((i, child)),
                Some(code) => {
                    let outcome = RunOutcome::read(&self.dir(i)).ok();
                    self.status[i] = match &outcome {
                        Some(o) if o.is_done() => Status::Done,
                        _ => Status::Failed(format!(
                            "exit {}; see logs/{}.log",
                            code.code().map_or("by a signal".into(), |c| c.to_string()),
                            self.plan.points[i].name
                        )),
                    };
                    self.outcome[i] = outcome;
                    self.note_end(i);
                }
            }
        }
        self.running = still;
        Ok(())
    }

    /// Re-reads the record of every running point (a live `metrics.h5` reads as its last flush).
    fn refresh_running(&mut self) {
        for k in 0..self.running.len() {
            let i = self.running[k].0;
            if let Ok(o) = RunOutcome::read(&self.dir(i)) {
                self.outcome[i] = Some(o);
            }
        }
    }

    /// Without a terminal, one line per run that ends (the table is printed at the end).
    fn note_end(&self, i: usize) {
        if !self.tty {
            eprintln!("sweep: {}", self.row(i).join("  "));
        }
    }

    fn state_text(&self, i: usize) -> String {
        match (&self.status[i], &self.outcome[i]) {
            (Status::Pending, _) => "pending".into(),
            (Status::Waiting, _) => "waiting for the previous process".into(),
            (Status::Running, _) => "running".into(),
            (Status::Failed(why), _) => format!("failed ({why})"),
            (Status::Done, Some(o)) if o.diverged => "DIVERGED".into(),
            (Status::Done, Some(o)) => o.state.clone(),
            (Status::Done, None) => "done".into(),
        }
    }

    fn row(&self, i: usize) -> Vec<String> {
        let point = &self.plan.points[i];
        let mut cells: Vec<String> = point.values.iter().map(|v| label(v)).collect();
        let o = self.outcome[i].as_ref();
        let pct = |v: Option<f64>| v.map_or("-".into(), |t| format!("{:.2}%", 100.0 * t));
        cells.push(format!(
            "{}/{}",
            o.map_or(0, |o| o.step),
            point.planned_steps
        ));
        cells.push(
            o.filter(|o| o.step > 0)
                .map_or("-".into(), |o| format!("{:.4}", o.loss)),
        );
        cells.push(pct(o.and_then(|o| o.val_top1)));
        cells.push(pct(o.and_then(|o| o.clipped_fraction)));
        cells.push(self.state_text(i));
        cells
    }

    fn table(&self) -> String {
        let mut header: Vec<String> = self.plan.axes.iter().map(|a| a.key.clone()).collect();
        header.extend(
            ["STEP", "LOSS", "VAL TOP-1", "CLIPPED", "STATE"]
                .iter()
                .map(|s| s.to_string()),
        );
        let rows: Vec<Vec<String>> = std::iter::once(header)
            .chain((0..self.plan.points.len()).map(|i| self.row(i)))
            .collect();
        align(&rows)
    }

    /// Redraws the table in place on a terminal.
    fn draw(&mut self) {
        if !self.tty {
            return;
        }
        let table = self.table();
        let mut err = std::io::stderr().lock();
        if self.drawn_lines > 0 {
            let _ = write!(err, "\x1b[{}F\x1b[J", self.drawn_lines);
        }
        let _ = write!(err, "{table}");
        let _ = err.flush();
        self.drawn_lines = table.lines().count();
    }

    /// `results.csv`, `results.json`, `heatmap.png`, the table on stdout and the best configuration.
    fn write_results(&self) -> anyhow::Result<ExitCode> {
        let csv = self.out.join("results.csv");
        std::fs::write(&csv, self.csv()).with_context(|| csv.display().to_string())?;
        let json = self.out.join("results.json");
        std::fs::write(&json, serde_json::to_string_pretty(&self.json())?)
            .with_context(|| json.display().to_string())?;
        let png = self.out.join("heatmap.png");
        write_sweep_heatmap(&png, &self.heatmap())?;
        if !self.tty {
            print!("{}", self.table());
        }
        match self.best() {
            Some(i) => println!(
                "best: {} (val top-1 {:.2}%) in {}",
                describe(&self.plan.axes, &self.plan.points[i].values),
                100.0
                    * self.outcome[i]
                        .as_ref()
                        .and_then(|o| o.val_top1)
                        .unwrap_or(0.0),
                self.dir(i).display()
            ),
            None => println!("best: none (no run finished with a validation result)"),
        }
        for p in [&csv, &json, &png] {
            println!("{}", p.display());
        }
        let failed = self.status.iter().any(|s| matches!(s, Status::Failed(_)));
        Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    }

    /// The point with the highest final val top-1 among those that did not diverge (the first of equals).
    fn best(&self) -> Option<usize> {
        (0..self.plan.points.len())
            .filter_map(|i| {
                let o = self.outcome[i].as_ref().filter(|o| !o.diverged)?;
                Some((i, o.val_top1?))
            })
            .fold(None, |best: Option<(usize, f64)>, (i, t)| match best {
                Some((_, b)) if b >= t => best,
                _ => Some((i, t)),
            })
            .map(|(i, _)| i)
    }

    /// Full-precision values (`{}` prints the shortest string that reads back to the same f64).
    fn csv(&self) -> String {
        let mut out = String::from("run");
        for a in &self.plan.axes {
            out.push_str(&format!(",{}", csv_cell(&a.key)));
        }
        out.push_str(",step,loss,val_top1,clipped_fraction,state,diverged\n");
        for (i, p) in self.plan.points.iter().enumerate() {
            out.push_str(&csv_cell(&p.name));
            for v in &p.values {
                out.push_str(&format!(",{}", csv_cell(&label(v))));
            }
            let o = self.outcome[i].as_ref();
            let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
            out.push_str(&format!(
                ",{},{},{},{},{},{}\n",
                o.map_or(0, |o| o.step),
                o.map_or(String::new(), |o| o.loss.to_string()),
                opt(o.and_then(|o| o.val_top1)),
                opt(o.and_then(|o| o.clipped_fraction)),
                csv_cell(&self.state_text(i)),
                o.is_some_and(|o| o.diverged)
            ));
        }
        out
    }

    fn json(&self) -> serde_json::Value {
        let runs: Vec<serde_json::Value> = self
            .plan
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let o = self.outcome[i].as_ref();
                serde_json::json!({
                    "run": p.name,
                    "run_dir": self.dir(i),
                    "values": self.plan.axes.iter().zip(&p.values)
                        .map(|(a, v)| (a.key.clone(), serde_json::Value::String(label(v))))
                        .collect::<serde_json::Map<_, _>>(),
                    "step": o.map(|o| o.step),
                    "loss": o.map(|o| o.loss).filter(|l| l.is_finite()),
                    "val_top1": o.and_then(|o| o.val_top1),
                    "clipped_fraction": o.and_then(|o| o.clipped_fraction),
                    "state": self.state_text(i),
                    "diverged": o.is_some_and(|o| o.diverged),
                })
            })
            .collect();
        serde_json::json!({
            "preset": self.plan.preset,
            "axes": self.plan.axes.iter().map(|a| serde_json::json!({"key": a.key, "values": a.values})).collect::<Vec<_>>(),
            "scale_lr": self.plan.scale_lr,
            "best": self.best().map(|i| self.plan.points[i].name.clone()),
            "runs": runs,
        })
    }

    /// Final val top-1 over the first two axes (columns: the first, rows: the second); with more axes each cell
    /// shows the best non-diverged run over the others (diverged only when all of them did).
    fn heatmap(&self) -> SweepHeatmap {
        let axes = &self.plan.axes;
        let x = &axes[0];
        let (y_key, y_values) = match axes.get(1) {
            Some(a) => (a.key.clone(), a.values.iter().map(|v| label(v)).collect()),
            None => (String::new(), vec![String::new()]),
        };
        let mut cells = vec![vec![None::<HeatmapCell>; x.values.len()]; y_values.len()];
        for (i, p) in self.plan.points.iter().enumerate() {
            let c = x.values.iter().position(|v| *v == p.values[0]).unwrap_or(0);
            let r = match axes.get(1) {
                Some(a) => a.values.iter().position(|v| *v == p.values[1]).unwrap_or(0),
                None => 0,
            };
            let o = self.outcome[i].as_ref();
            let cell = HeatmapCell {
                top1: o.filter(|o| !o.diverged).and_then(|o| o.val_top1),
                diverged: o.is_some_and(|o| o.diverged),
            };
            cells[r][c] = Some(merge(cells[r][c], cell));
        }
        SweepHeatmap {
            title: format!(
                "final val top-1 of {} runs ({})",
                self.plan.points.len(),
                self.out
                    .file_name()
                    .map_or(String::new(), |n| n.to_string_lossy().into_owned())
            ),
            x_key: x.key.clone(),
            x_values: x.values.iter().map(|v| label(v)).collect(),
            y_key,
            y_values,
            cells: cells
                .into_iter()
                .map(|row| row.into_iter().map(Option::unwrap_or_default).collect())
                .collect(),
        }
    }
}

/// Two runs in one heatmap cell: the better non-diverged one; diverged only when both are.
fn merge(a: Option<HeatmapCell>, b: HeatmapCell) -> HeatmapCell {
    let Some(a) = a else { return b };
    match (a.diverged, b.diverged) {
        (true, true) => a,
        (true, false) => b,
        (false, true) => a,
        (false, false) => {
            if b.top1.unwrap_or(f64::NEG_INFINITY) > a.top1.unwrap_or(f64::NEG_INFINITY) {
                b
            } else {
                a
            }
        }
    }
}

fn has_checkpoint(dir: &Path) -> bool {
    list_checkpoints(&dir.join(CHECKPOINT_DIR)).is_ok_and(|c| !c.is_empty())
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn align(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The child gets SIGTERM when the sweep dies, however it dies: it stops with a final checkpoint, so a killed
/// sweep leaves every run resumable and no orphan training on.
fn die_with_parent(cmd: &mut std::process::Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

#[cfg(test)]
mod tests {
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
