//! CSV files of a recorded run: `steps.csv`, `eval.csv`, `layers_agc.csv` (one row per snapshot and layer) and
//! `scalars.csv` (every TensorBoard scalar, long format). Numbers are written in full precision.

use super::scalars;
use crate::record::metrics::RecordedRun;
use crate::record::{RecordError, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Writes the CSV files into `dir` and returns their paths.
pub fn write_csv(run: &RecordedRun, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| RecordError::io(dir, e))?;
    let files = [
        ("steps.csv", steps_csv(run)),
        ("eval.csv", eval_csv(run)),
        ("layers_agc.csv", layers_csv(run)),
        ("scalars.csv", scalars_csv(run)),
    ];
    let mut out = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| RecordError::io(&path, e))?;
        out.push(path);
    }
    Ok(out)
}

fn steps_csv(run: &RecordedRun) -> String {
    let mut s = String::from("step,time,epoch,loss,train_top1,lr,lambda,alpha,grad_norm,clipped_fraction,images_per_sec,step_ms\n");
    for (i, m) in run.steps.iter().enumerate() {
        let t = run.step_times.get(i).copied().unwrap_or(f64::NAN);
        let _ = writeln!(
            s,
            "{},{t},{},{},{},{},{},{},{},{},{},{}",
            m.step,
            m.epoch,
            m.loss,
            m.train_top1,
            m.lr,
            m.lambda,
            m.alpha,
            m.grad_norm,
            m.clipped_fraction,
            m.images_per_sec,
            m.step_ms
        );
    }
    s
}

fn eval_csv(run: &RecordedRun) -> String {
    let mut s = String::from("step,loss,top1,top5,images,ema\n");
    for e in &run.evals {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{}",
            e.step, e.loss, e.top1, e.top5, e.images, e.ema as u8
        );
    }
    s
}

fn layers_csv(run: &RecordedRun) -> String {
    let mut s = String::from(
        "step,layer,weight_norm,grad_norm,max_ratio,mean_ratio,clipped_fraction,units,clipped_by_agc\n",
    );
    for snap in &run.layers {
        for l in &snap.agc {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{}",
                snap.step,
                l.name,
                l.weight_norm,
                l.grad_norm,
                l.max_ratio,
                l.mean_ratio,
                l.clipped_fraction,
                l.units,
                l.clipped_by_agc as u8
            );
        }
    }
    s
}

fn scalars_csv(run: &RecordedRun) -> String {
    let mut s = String::from("tag,step,wall_time,value\n");
    for p in scalars(run) {
        let _ = writeln!(s, "{},{},{},{}", p.tag, p.step, p.wall_time, p.value);
    }
    s
}
