//! `summary.md`: the run at a glance, its validation table, live changes and incidents, and the pictures.

use crate::record::metrics::RecordedRun;
use crate::record::run_dir::RunDir;
use std::fmt::Write;
use std::path::PathBuf;

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.2}%", 100.0 * v)
    } else {
        "-".into()
    }
}

/// Mean of a non-empty slice.
fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The markdown summary: the run at a glance, its live changes and incidents, and the pictures.
pub fn summary_markdown(run_dir: &RunDir, run: &RecordedRun, pictures: &[PathBuf]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Run `{}`\n", run_dir.name());
    let _ = writeln!(s, "| | |\n| --- | --- |");
    for (k, v) in facts(run) {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    write_validation(&mut s, run);
    write_live_changes(&mut s, run);
    write_incidents(&mut s, run);
    write_pictures(&mut s, pictures);
    s
}

/// The at-a-glance table: model, device, steps, final and best results, throughput, wall time, clipping.
fn facts(run: &RecordedRun) -> Vec<(String, String)> {
    let started = run.started();
    let mut facts: Vec<(String, String)> = Vec::new();
    if let Some(info) = &started {
        facts.push((
            "model".into(),
            format!("`{}` ({} parameters)", info.model, info.params),
        ));
        facts.push(("device".into(), info.device.clone()));
    }
    let last = run.last_step().unwrap_or(0);
    let planned = started.as_ref().map(|i| i.steps).unwrap_or(0);
    facts.push(("steps recorded".into(), format!("{last} of {planned}")));
    let tail: Vec<f64> = run
        .steps
        .iter()
        .rev()
        .take(50)
        .map(|s| s.loss)
        .filter(|l| l.is_finite())
        .collect();
    if !tail.is_empty() {
        facts.push((
            "final training loss".into(),
            format!("{:.4} (mean of the last {} steps)", mean(&tail), tail.len()),
        ));
    }
    if let Some(e) = run.evals.last() {
        facts.push((
            "final validation".into(),
            format!(
                "top-1 {}, top-5 {}, loss {:.4} at step {}",
                pct(e.top1),
                pct(e.top5),
                e.loss,
                e.step
            ),
        ));
    }
    if let Some(e) = run.best_eval() {
        facts.push((
            "best validation top-1".into(),
            format!("{} at step {}", pct(e.top1), e.step),
        ));
    }
    let ips: Vec<f64> = run
        .steps
        .iter()
        .map(|s| s.images_per_sec)
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    if !ips.is_empty() {
        facts.push((
            "throughput".into(),
            format!("{:.1} images/s (mean over steps)", mean(&ips)),
        ));
    }
    if let (Some(a), Some(b)) = (run.step_times.first(), run.step_times.last()) {
        facts.push(("wall time recorded".into(), format!("{:.1} s", b - a)));
    }
    let clip: Vec<f64> = run
        .steps
        .iter()
        .map(|s| s.clipped_fraction)
        .filter(|v| v.is_finite())
        .collect();
    if !clip.is_empty() {
        facts.push((
            "AGC units clipped".into(),
            format!(
                "{} on average, {} at the end",
                pct(mean(&clip)),
                pct(clip[clip.len() - 1])
            ),
        ));
    }
    facts
}

/// One row per evaluation, when there were any.
fn write_validation(s: &mut String, run: &RecordedRun) {
    if run.evals.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n## Validation\n");
    let _ = writeln!(
        s,
        "| step | top-1 | top-5 | loss | images | weights |\n| --- | --- | --- | --- | --- | --- |"
    );
    for e in &run.evals {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.4} | {} | {} |",
            e.step,
            pct(e.top1),
            pct(e.top5),
            e.loss,
            e.images,
            if e.ema { "EMA" } else { "live" }
        );
    }
}

/// The live changes the trainer applied.
fn write_live_changes(s: &mut String, run: &RecordedRun) {
    let applied: Vec<_> = run.events.iter().filter(|e| e.kind == "applied").collect();
    let _ = writeln!(s, "\n## Live changes\n");
    if applied.is_empty() {
        let _ = writeln!(s, "None.");
        return;
    }
    let _ = writeln!(
        s,
        "| step | parameter | value | from |\n| --- | --- | --- | --- |"
    );
    for e in applied {
        let _ = writeln!(
            s,
            "| {} | `{}` | {} | {} |",
            e.step, e.key, e.value, e.detail
        );
    }
}

/// Counts of each kind of incident, then the first 20 rejections, warnings and errors.
fn write_incidents(s: &mut String, run: &RecordedRun) {
    let count = |kind: &str| run.events.iter().filter(|e| e.kind == kind).count();
    let _ = writeln!(
        s,
        "\n## Incidents\n\n{} rejected edits, {} non-finite steps, {} warnings, {} errors, {} checkpoints, {} resumes.",
        count("rejected"),
        count("nonfinite"),
        count("warning"),
        count("error"),
        count("checkpoint"),
        count("resumed")
    );
    for e in run
        .events
        .iter()
        .filter(|e| matches!(e.kind.as_str(), "rejected" | "warning" | "error"))
        .take(20)
    {
        let what = if e.key.is_empty() {
            String::new()
        } else {
            format!("`{}`: ", e.key)
        };
        let _ = writeln!(
            s,
            "- step {} {}: {what}{}",
            e.step,
            e.kind,
            e.detail.replace('\n', " ")
        );
    }
}

/// The pictures, by file name (they lie next to the summary).
fn write_pictures(s: &mut String, pictures: &[PathBuf]) {
    let _ = writeln!(s, "\n## Pictures\n");
    for p in pictures {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = writeln!(s, "![{name}]({name})\n");
    }
}
