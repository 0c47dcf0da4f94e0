//! The headless runs' progress: a bar on a terminal, and plain lines for what happened (evaluations, checkpoints,
//! live changes, incidents) either way; without a terminal a progress line every 30 s instead of the bar. Shared by
//! `nfbench train --headless` and `nfbench resume`.

use crate::train::messages::{Event, RunState};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::{Duration, Instant};

/// Progress of one headless run.
pub struct Progress {
    bar: ProgressBar,
    steps: u64,
    next_line: Instant,
    /// The run diverged (nobody is at a workbench to resume it).
    diverged: bool,
}

impl Progress {
    pub fn new(start_step: u64, steps: u64) -> Self {
        let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} {msg} ETA {eta_precise}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_position(start_step);
        Progress {
            bar,
            steps,
            next_line: Instant::now(),
            diverged: false,
        }
    }

    /// A message line above the bar, or on stderr when there is no terminal (the bar is hidden then).
    pub fn line(&self, s: impl AsRef<str>) {
        if self.bar.is_hidden() {
            eprintln!("{}", s.as_ref());
        } else {
            self.bar.println(s.as_ref());
        }
    }

    /// Whether the run went into `Diverged` since the last call (the caller stops it).
    pub fn take_diverged(&mut self) -> bool {
        std::mem::take(&mut self.diverged)
    }

    pub fn on_event(&mut self, event: &Event) {
        match event {
            Event::Started(s) => {
                self.bar.set_position(s.start_step);
                let dir = s
                    .run_dir
                    .as_ref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default();
                self.line(format!(
                    "{} on {} ({}): {} parameters; run in {dir}",
                    s.model, s.device, s.precision, s.params
                ));
            }
            Event::Step(m) => {
                self.bar.set_position(m.step);
                let msg = format!(
                    "loss {:.3} | {:.1} img/s | lr {:.4}",
                    m.loss, m.images_per_sec, m.lr
                );
                if self.bar.is_hidden() && Instant::now() >= self.next_line {
                    eprintln!("step {:>6}/{}: {msg}", m.step, self.steps);
                    self.next_line = Instant::now() + Duration::from_secs(30);
                }
                self.bar.set_message(msg);
            }
            Event::Eval(e) => self.line(format!(
                "step {:>6}: val top-1 {:.2}% top-5 {:.2}% loss {:.4} ({} images{})",
                e.step,
                e.top1 * 100.0,
                e.top5 * 100.0,
                e.loss,
                e.images,
                if e.ema { ", EMA" } else { "" }
            )),
            Event::NonFinite {
                step,
                what,
                consecutive,
            } => self.line(format!(
                "step {step}: non-finite {what}; update skipped ({consecutive} in a row)"
            )),
            Event::State {
                state: RunState::Diverged,
                step,
            } => {
                self.line(format!(
                    "diverged at step {step}: stopping (nobody is at a workbench to resume it; `nfbench attach` \
                     could)"
                ));
                self.diverged = true;
            }
            Event::Applied {
                params,
                origin,
                step,
            } => {
                for p in params {
                    self.line(format!(
                        "step {step}: {} = {} ({origin})",
                        p.key(),
                        p.value_string()
                    ));
                }
            }
            Event::Rescued(r) => self.line(format!("rescue: {}", r.describe())),
            Event::Warning(w) => self.line(format!("warning: {w}")),
            Event::Error(e) => self.line(format!("error: {e}")),
            Event::Checkpoint { path, step } => {
                self.line(format!("step {step:>6}: checkpoint {}", path.display()))
            }
            Event::CheckpointFailed { step, reason, .. } => {
                self.line(format!("step {step:>6}: checkpoint FAILED: {reason}"))
            }
            Event::Rejected { what, reason, .. } => self.line(format!("rejected {what}: {reason}")),
            _ => {}
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
