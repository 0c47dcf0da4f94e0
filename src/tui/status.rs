//! The status bar: run state, step, epoch, img/s, data time per step (and whether the loader keeps up), ETA, device,
//! the preset file and its reload state, run directory.

use super::text::{duration, fit_tail};
use super::theme::Theme;
use crate::train::messages::{RunState, StepMetrics, Throughput};
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Weight of the newest step in the step-time average behind the ETA.
const STEP_TIME_SMOOTHING: f64 = 0.1;
/// The share of a step spent waiting on the loader above which the bar says the loader does not keep up.
pub const LOADER_BEHIND_SHARE: f64 = 0.10;

/// What the last look at the preset file found.
#[derive(Debug, Clone, PartialEq)]
pub enum ReloadState {
    /// Not reloaded since start.
    Loaded,
    Reloaded,
    /// The file has an error; the old values stay in force.
    Invalid,
    Deleted,
    /// No watcher (replay, or watching failed).
    NotWatched,
}

#[derive(Debug, Clone)]
pub struct StatusBar {
    pub state: RunState,
    pub step: u64,
    pub total_steps: u64,
    pub epoch: f64,
    pub images_per_sec: f64,
    /// Moving average of the wall time per step, in milliseconds.
    pub step_ms: f64,
    /// Milliseconds the trainer waited for its batch in the last timed step (the trainer's throughput report).
    pub data_ms: f64,
    /// That wait as a share of the step's wall time.
    pub data_share: f64,
    pub device: String,
    /// Activation precision (`f32`, `bf16`).
    pub precision: String,
    /// Memory in use on the device (`1.2/23.4 GiB`), from the trainer's last statistics interval.
    pub memory: Option<crate::train::device::MemoryUse>,
    pub model: String,
    pub preset: PathBuf,
    pub reload: ReloadState,
    pub reload_at: Option<Instant>,
    pub run_dir: Option<PathBuf>,
    /// Set once the user confirmed quitting: the trainer is writing its final checkpoint.
    pub stopping: bool,
    /// Replay: read-only, with the step cursor shown instead of live figures.
    pub replay: bool,
}

impl StatusBar {
    pub fn new(preset: PathBuf, total_steps: u64) -> Self {
        Self {
            state: RunState::Starting,
            step: 0,
            total_steps,
            epoch: 0.0,
            images_per_sec: f64::NAN,
            step_ms: f64::NAN,
            data_ms: f64::NAN,
            data_share: f64::NAN,
            device: String::new(),
            precision: String::new(),
            memory: None,
            model: String::new(),
            preset,
            reload: ReloadState::Loaded,
            reload_at: None,
            run_dir: None,
            stopping: false,
            replay: false,
        }
    }

    pub fn on_step(&mut self, m: &StepMetrics) {
        self.step = m.step;
        self.epoch = m.epoch;
        if m.images_per_sec.is_finite() && m.images_per_sec > 0.0 {
            self.images_per_sec = m.images_per_sec;
        }
        self.average_step_ms(m.step_ms);
    }

    pub fn on_throughput(&mut self, t: &Throughput) {
        if t.images_per_sec.is_finite() && t.images_per_sec > 0.0 {
            self.images_per_sec = t.images_per_sec;
        }
        if t.data_ms.is_finite() && t.data_ms >= 0.0 && t.step_ms > 0.0 {
            self.data_ms = t.data_ms;
            self.data_share = t.data_ms / t.step_ms;
        }
    }

    /// Whether the trainer waited on data for more than [`LOADER_BEHIND_SHARE`] of its last timed step.
    pub fn loader_behind(&self) -> bool {
        self.data_share.is_finite() && self.data_share > LOADER_BEHIND_SHARE
    }

    /// `data 3 ms/step`, or with the share and a warning when the loader does not keep up.
    fn data_text(&self) -> Option<String> {
        if !self.data_ms.is_finite() {
            return None;
        }
        Some(if self.loader_behind() {
            format!(
                "data {:.0} ms/step ({:.0}%): LOADER BEHIND",
                self.data_ms,
                self.data_share * 100.0
            )
        } else {
            format!("data {:.0} ms/step", self.data_ms)
        })
    }

    fn average_step_ms(&mut self, ms: f64) {
        if !(ms.is_finite() && ms > 0.0) {
            return;
        }
        self.step_ms = if self.step_ms.is_finite() {
            (1.0 - STEP_TIME_SMOOTHING) * self.step_ms + STEP_TIME_SMOOTHING * ms
        } else {
            ms
        };
    }

    /// Time left at the current pace.
    pub fn eta(&self) -> Option<Duration> {
        let left = self.total_steps.saturating_sub(self.step) as f64;
        let ms = left * self.step_ms;
        (ms.is_finite() && self.step_ms > 0.0).then(|| Duration::from_secs_f64(ms / 1000.0))
    }

    pub fn state_label(&self) -> &'static str {
        if self.stopping
            && !matches!(
                self.state,
                RunState::Stopped | RunState::Finished | RunState::Failed
            )
        {
            return "STOPPING";
        }
        match self.state {
            RunState::Starting => "STARTING",
            RunState::Running => "RUNNING",
            RunState::Paused => "PAUSED",
            RunState::Diverged => "DIVERGED",
            RunState::Finished => "FINISHED",
            RunState::Stopped => "STOPPED",
            RunState::Failed => "FAILED",
        }
    }

    fn state_style(&self, theme: &Theme) -> Style {
        match self.state {
            RunState::Running | RunState::Finished => theme.good(),
            RunState::Paused | RunState::Starting | RunState::Stopped => theme.warn(),
            RunState::Diverged | RunState::Failed => theme.bad(),
        }
        .add_modifier(ratatui::style::Modifier::REVERSED)
    }

    fn reload_text(&self) -> String {
        let ago = self
            .reload_at
            .map(|t| format!(" {} ago", duration(t.elapsed())))
            .unwrap_or_default();
        match self.reload {
            ReloadState::Loaded => String::new(),
            ReloadState::Reloaded => format!(" (reloaded{ago})"),
            ReloadState::Invalid => format!(" (INVALID{ago}, old values kept)"),
            ReloadState::Deleted => " (deleted, old values kept)".into(),
            ReloadState::NotWatched => " (not watched)".into(),
        }
    }

    /// The segments of the bar, most important first, each with whether it is a warning; the bar keeps as many as
    /// fit.
    fn segments(&self) -> Vec<(String, bool)> {
        let mut seg: Vec<(String, bool)> = self
            .plain_segments()
            .into_iter()
            .map(|s| (s, false))
            .collect();
        if let Some(d) = self.data_text() {
            // After img/s (or epoch when there is no rate yet): what explains a low rate sits next to it.
            let at = seg
                .iter()
                .position(|(s, _)| s.ends_with("img/s"))
                .map_or(2, |i| i + 1);
            seg.insert(at.min(seg.len()), (d, self.loader_behind()));
        }
        seg
    }

    fn plain_segments(&self) -> Vec<String> {
        let mut seg = Vec::new();
        let steps = if self.total_steps > 0 {
            format!("step {}/{}", self.step, self.total_steps)
        } else {
            format!("step {}", self.step)
        };
        seg.push(steps);
        seg.push(format!("epoch {:.1}", self.epoch));
        if self.images_per_sec.is_finite() {
            seg.push(format!("{:.0} img/s", self.images_per_sec));
        }
        if !self.replay && matches!(self.state, RunState::Running) {
            if let Some(eta) = self.eta() {
                seg.push(format!("ETA {}", duration(eta)));
            }
        }
        if !self.device.is_empty() {
            let mut d = self.device.clone();
            if !self.precision.is_empty() {
                d.push_str(&format!(" {}", self.precision));
            }
            if let Some(m) = &self.memory {
                d.push_str(&format!(" {}", m.display()));
            }
            seg.push(d);
        }
        seg.push(format!("{}{}", self.preset.display(), self.reload_text()));
        if !self.model.is_empty() {
            seg.push(self.model.clone());
        }
        if let Some(d) = &self.run_dir {
            seg.push(d.display().to_string());
        }
        seg
    }

    pub fn render(&self, frame: &mut Frame, area: Rect, theme: Theme) {
        if area.width == 0 || area.height == 0 {
            return;
        }
        let width = area.width as usize;
        let title = if self.replay {
            " nfbench replay "
        } else {
            " nfbench "
        };
        let state = format!(" {} ", self.state_label());
        let mut spans = vec![
            Span::styled(title, theme.header()),
            Span::styled(state.clone(), self.state_style(&theme)),
        ];
        let mut used = title.chars().count() + state.chars().count();
        let sep = " · ";
        let fixed = 4 + usize::from(self.data_text().is_some());
        for (i, (s, warn)) in self.segments().into_iter().enumerate() {
            let room = width.saturating_sub(used + sep.len() - 1);
            if room < 6 {
                break;
            }
            // The preset path and run directory keep their ends; other segments are dropped whole when too long.
            let text = if s.chars().count() <= room {
                s
            } else if i >= fixed {
                fit_tail(&s, room)
            } else {
                break;
            };
            used += text.chars().count() + 3;
            spans.push(Span::styled(" · ", theme.dim()));
            spans.push(if warn {
                Span::styled(text, theme.warn())
            } else {
                Span::raw(text)
            });
        }
        let line = Line::from(spans);
        frame.render_widget(Paragraph::new(line), area);
    }
}
