//! The sweep's results: `results.csv`, `results.json`, the heatmap and the best configuration.

use super::*;

impl Sweep {
    /// `results.csv`, `results.json`, `heatmap.png`, the table on stdout and the best configuration.
    pub(super) fn write_results(&self) -> anyhow::Result<ExitCode> {
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
    pub(super) fn best(&self) -> Option<usize> {
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
    pub(super) fn csv(&self) -> String {
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

    pub(super) fn json(&self) -> serde_json::Value {
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
    pub(super) fn heatmap(&self) -> SweepHeatmap {
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
pub(super) fn merge(a: Option<HeatmapCell>, b: HeatmapCell) -> HeatmapCell {
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

pub(super) fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}
