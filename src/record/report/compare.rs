//! `nfbench compare RUN_A RUN_B ... --out DIR`: the runs' curves overlaid, aligned by step (`compare_loss.png`:
//! smoothed training loss and validation loss; `compare_top1.png`: validation top-1), and `compare.md`: a table of
//! final metrics and the preset fields where the runs differ.

use super::charts::{draw_legend, range_of, smooth, step_label, DrawResult};
use super::{plot_err, FONT};
use crate::record::metrics::{read_run, RecordedRun};
use crate::record::run_dir::{RunDir, METRICS_FILE};
use crate::record::runs::{RunOutcome, LOSS_WINDOW};
use crate::record::Result;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One run of a comparison: its label (the directory name), record and preset (TOML text).
#[derive(Debug, Clone)]
pub struct ComparedRun {
    pub label: String,
    pub dir: PathBuf,
    pub run: RecordedRun,
    pub preset_toml: String,
}

impl ComparedRun {
    /// Reads the run in `dir`: its `metrics.h5` and `preset.toml` (the record's copy when the file is missing).
    pub fn open(dir: &Path) -> Result<ComparedRun> {
        let rd = RunDir::open(dir)?;
        let run = read_run(&rd.path().join(METRICS_FILE))?;
        let preset_toml =
            std::fs::read_to_string(rd.preset_path()).unwrap_or_else(|_| run.preset_toml.clone());
        let label = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(ComparedRun {
            label,
            dir: dir.to_path_buf(),
            run,
            preset_toml,
        })
    }
}

/// A preset field whose value differs between runs: the dotted key and each run's value (`-` when unset).
#[derive(Debug, Clone, PartialEq)]
pub struct PresetDifference {
    pub key: String,
    pub values: Vec<String>,
}

/// The fields where the presets differ, in key order. Each TOML text is flattened to dotted keys (tables
/// recursively; lists and values as TOML literals); a text that does not parse counts as empty.
pub fn preset_differences(presets: &[&str]) -> Vec<PresetDifference> {
    let flat: Vec<BTreeMap<String, String>> = presets
        .iter()
        .map(|t| {
            let mut out = BTreeMap::new();
            if let Ok(table) = toml::from_str::<toml::Table>(t) {
                flatten("", &toml::Value::Table(table), &mut out);
            }
            out
        })
        .collect();
    let mut keys: Vec<&String> = flat.iter().flat_map(|m| m.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let values: Vec<String> = flat
                .iter()
                .map(|m| m.get(k).cloned().unwrap_or_else(|| "-".into()))
                .collect();
            (values.iter().any(|v| *v != values[0])).then(|| PresetDifference {
                key: k.clone(),
                values,
            })
        })
        .collect()
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// What a comparison wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub pictures: Vec<PathBuf>,
    pub summary: PathBuf,
}

/// Reads the runs and writes the overlays and `compare.md` into `out`.
pub fn write_comparison(dirs: &[PathBuf], out: &Path) -> Result<Comparison> {
    let runs = dirs
        .iter()
        .map(|d| ComparedRun::open(d))
        .collect::<Result<Vec<_>>>()?;
    std::fs::create_dir_all(out).map_err(|e| crate::record::RecordError::io(out, e))?;
    let loss = out.join("compare_loss.png");
    draw_overlay(&loss, &runs, Metric::Loss).map_err(|e| plot_err(&loss, e))?;
    let top1 = out.join("compare_top1.png");
    draw_overlay(&top1, &runs, Metric::Top1).map_err(|e| plot_err(&top1, e))?;
    let summary = out.join("compare.md");
    let pictures = vec![loss, top1];
    std::fs::write(&summary, compare_markdown(&runs, &pictures))
        .map_err(|e| crate::record::RecordError::io(&summary, e))?;
    Ok(Comparison { pictures, summary })
}

/// Distinct colours for up to ten runs (matplotlib's tab10), then repeating.
pub const RUN_COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// (step, value) points of one curve.
type Points = Vec<(f64, f64)>;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    Loss,
    Top1,
}

fn draw_overlay(path: &Path, runs: &[ComparedRun], metric: Metric) -> DrawResult<()> {
    let root = BitMapBackend::new(path, (1200, 650)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = match metric {
        Metric::Loss => "training loss (smoothed, solid) and validation loss (dots), by step",
        Metric::Top1 => "validation top-1, by step",
    };
    let root = root.titled(title, (FONT, 22))?;
    let curves: Vec<(Points, Points)> = runs
        .iter()
        .map(|r| {
            let val: Vec<(f64, f64)> = r
                .run
                .evals
                .iter()
                .map(|e| match metric {
                    Metric::Loss => (e.step as f64, e.loss),
                    Metric::Top1 => (e.step as f64, 100.0 * e.top1),
                })
                .collect();
            let train = match metric {
                Metric::Loss => {
                    let raw: Vec<(f64, f64)> = r
                        .run
                        .steps
                        .iter()
                        .map(|s| (s.step as f64, s.loss))
                        .collect();
                    smooth(&raw, (raw.len() / 50).clamp(1, 200))
                }
                Metric::Top1 => Vec::new(),
            };
            (train, val)
        })
        .collect();
    let all = || curves.iter().flat_map(|(t, v)| t.iter().chain(v));
    let (x0, x1) = range_of(all().map(|p| p.0)).unwrap_or((0.0, 1.0));
    let (y0, y1) = match metric {
        Metric::Loss => {
            let cap = loss_cap(runs);
            range_of(all().map(|p| p.1).filter(|&v| v <= cap)).unwrap_or((0.0, 1.0))
        }
        Metric::Top1 => (
            0.0,
            range_of(all().map(|p| p.1)).map_or(100.0, |r| r.1.min(100.0)),
        ),
    };
    let mut chart = ChartBuilder::on(&root)
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0.max(0.0)..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .x_label_formatter(&step_label)
        .y_desc(match metric {
            Metric::Loss => "loss",
            Metric::Top1 => "top-1 (%)",
        })
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (i, (r, (train, val))) in runs.iter().zip(&curves).enumerate() {
        let color = RUN_COLORS[i % RUN_COLORS.len()];
        let finite = |p: &&(f64, f64)| p.1.is_finite();
        let line: Vec<(f64, f64)> = if train.is_empty() {
            val.iter().filter(finite).copied().collect()
        } else {
            train.iter().filter(finite).copied().collect()
        };
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))?
            .label(r.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart.draw_series(
            val.iter()
                .filter(finite)
                .map(|&p| Circle::new(p, 4, color.filled())),
        )?;
    }
    draw_legend(
        &mut chart,
        match metric {
            Metric::Loss => SeriesLabelPosition::UpperRight,
            Metric::Top1 => SeriesLabelPosition::LowerRight,
        },
    )?;
    root.present()?;
    Ok(())
}

/// The top of the loss axis: 3x the largest starting loss. A diverged run's loss reaches 1e10 and would flatten
/// every other curve into the axis (its climb still shows, leaving the top of the chart).
fn loss_cap(runs: &[ComparedRun]) -> f64 {
    let start = runs
        .iter()
        .filter_map(|r| r.run.steps.iter().map(|s| s.loss).find(|l| l.is_finite()))
        .fold(f64::NEG_INFINITY, f64::max);
    if start.is_finite() && start > 0.0 {
        3.0 * start
    } else {
        f64::INFINITY
    }
}

/// The final-metrics table and the preset differences, as markdown.
pub fn compare_markdown(runs: &[ComparedRun], pictures: &[PathBuf]) -> String {
    let pct = |v: Option<f64>| v.map_or("-".into(), |t| format!("{:.2}%", 100.0 * t));
    let mut s = String::from("# Run comparison\n\n");
    s.push_str(&format!(
        "| run | model | steps | final loss (mean of last {LOSS_WINDOW}) | val top-1 (last) | best val top-1 (step) | clipped | state |\n"
    ));
    s.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for r in runs {
        let o = RunOutcome::of(&r.run);
        let tail: Vec<f64> = r
            .run
            .steps
            .iter()
            .rev()
            .map(|m| m.loss)
            .filter(|l| l.is_finite())
            .take(LOSS_WINDOW)
            .collect();
        let loss = if tail.is_empty() {
            "-".into()
        } else {
            format!("{:.4}", tail.iter().sum::<f64>() / tail.len() as f64)
        };
        let best = r.run.best_eval().map_or("-".into(), |e| {
            format!("{} ({})", pct(Some(e.top1)), e.step)
        });
        let state = if o.diverged {
            format!("{} (diverged)", o.state)
        } else {
            o.state.clone()
        };
        s.push_str(&format!(
            "| {} | {} | {} | {loss} | {} | {best} | {} | {state} |\n",
            r.label,
            r.run.started().map(|i| i.model).unwrap_or_default(),
            o.step,
            pct(o.val_top1),
            pct(o.clipped_fraction),
        ));
    }
    let texts: Vec<&str> = runs.iter().map(|r| r.preset_toml.as_str()).collect();
    let diffs = preset_differences(&texts);
    s.push_str("\n## Preset differences\n\n");
    if diffs.is_empty() {
        s.push_str("The presets are the same.\n");
    } else {
        s.push_str("| field |");
        for r in runs {
            s.push_str(&format!(" {} |", r.label));
        }
        s.push_str("\n| --- |");
        s.push_str(&" --- |".repeat(runs.len()));
        s.push('\n');
        for d in &diffs {
            s.push_str(&format!("| `{}` |", d.key));
            for v in &d.values {
                s.push_str(&format!(" {} |", v.replace('|', "\\|")));
            }
            s.push('\n');
        }
    }
    s.push_str("\n## Pictures\n\n");
    for p in pictures {
        let name = p
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        s.push_str(&format!("![{name}]({name})\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_the_fields_that_differ_including_missing_ones() {
        let a = "[agc]\nlambda = 0.01\neps = 0.001\n[data]\nbatch_size = 64\n";
        let b = "[agc]\nlambda = 0.02\neps = 0.001\n[data]\nbatch_size = 64\nworkers = 2\n";
        let d = preset_differences(&[a, b]);
        assert_eq!(
            d,
            vec![
                PresetDifference {
                    key: "agc.lambda".into(),
                    values: vec!["0.01".into(), "0.02".into()]
                },
                PresetDifference {
                    key: "data.workers".into(),
                    values: vec!["-".into(), "2".into()]
                },
            ]
        );
        assert!(preset_differences(&[a, a]).is_empty());
    }
}
