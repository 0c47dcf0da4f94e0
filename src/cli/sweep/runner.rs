//! Running the grid: child runs `jobs` at a time, their states from the run directories, the live table.

use super::*;

impl Sweep {
    pub(super) fn new(plan: Plan, out: PathBuf, jobs: usize) -> Sweep {
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

    pub(super) fn dir(&self, i: usize) -> PathBuf {
        self.out.join(&self.plan.points[i].name)
    }

    /// Trains every point not done, `jobs` at a time, refreshing the table until all are done or failed.
    pub(super) fn run_all(&mut self) -> anyhow::Result<()> {
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
    pub(super) fn start(&mut self, i: usize, waiting_since: Instant) -> anyhow::Result<bool> {
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
    pub(super) fn point_sets(&self, i: usize) -> Vec<String> {
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
    pub(super) fn threads(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / self.jobs).max(1)
    }

    pub(super) fn spawn(&mut self, i: usize, args: &[String]) -> anyhow::Result<()> {
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
    pub(super) fn reap(&mut self) -> anyhow::Result<()> {
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
    pub(super) fn refresh_running(&mut self) {
        for k in 0..self.running.len() {
            let i = self.running[k].0;
            if let Ok(o) = RunOutcome::read(&self.dir(i)) {
                self.outcome[i] = Some(o);
            }
        }
    }

    /// Without a terminal, one line per run that ends (the table is printed at the end).
    pub(super) fn note_end(&self, i: usize) {
        if !self.tty {
            eprintln!("sweep: {}", self.row(i).join("  "));
        }
    }

    pub(super) fn state_text(&self, i: usize) -> String {
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

    pub(super) fn row(&self, i: usize) -> Vec<String> {
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

    pub(super) fn table(&self) -> String {
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
    pub(super) fn draw(&mut self) {
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
}

pub(super) fn has_checkpoint(dir: &Path) -> bool {
    list_checkpoints(&dir.join(CHECKPOINT_DIR)).is_ok_and(|c| !c.is_empty())
}

pub(super) fn align(rows: &[Vec<String>]) -> String {
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
pub(super) fn die_with_parent(cmd: &mut std::process::Command) {
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
