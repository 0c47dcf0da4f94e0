//! The run picker (`r`): the finished runs next to this one, listed as `nfbench runs` lists them, to choose the
//! `tui --compare` reference from. Arrows move, enter picks, esc closes. The listing and the loading are done by
//! the loop (`Action::ListRuns`, `Action::LoadReference`); this pane only holds and draws what it was given.

use super::text::fit;
use super::theme::Theme;
use crate::record::runs::RunSummary;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct RunPicker {
    /// Where the runs were looked for.
    dir: PathBuf,
    runs: Vec<RunSummary>,
    selected: usize,
    /// Why there is nothing to pick (the directory could not be read).
    error: Option<String>,
}

/// Whether a listed run can be a reference: readable, recorded at least one step, and not training right now.
fn is_finished(r: &RunSummary) -> bool {
    r.error.is_none() && r.step > 0 && !r.state.starts_with("live")
}

impl RunPicker {
    /// The finished runs among `listed` (what `list_runs` found in `dir`), leaving out `current` (this run).
    pub fn new(
        dir: &Path,
        listed: Result<Vec<RunSummary>, String>,
        current: Option<&Path>,
    ) -> Self {
        let (runs, error) = match listed {
            Ok(list) => (
                list.into_iter()
                    .filter(|r| is_finished(r) && Some(r.dir.as_path()) != current)
                    .collect(),
                None,
            ),
            Err(e) => (Vec::new(), Some(e)),
        };
        Self {
            dir: dir.to_path_buf(),
            runs,
            selected: 0,
            error,
        }
    }

    pub fn runs(&self) -> &[RunSummary] {
        &self.runs
    }

    pub fn select(&mut self, delta: isize) {
        let n = self.runs.len() as isize;
        if n > 0 {
            self.selected = (self.selected as isize + delta).clamp(0, n - 1) as usize;
        }
    }

    /// The run under the cursor.
    pub fn chosen(&self) -> Option<&Path> {
        self.runs.get(self.selected).map(|r| r.dir.as_path())
    }

    pub fn render(&self, frame: &mut Frame, area: Rect, theme: Theme) {
        let w = area.width.min(100);
        let h = area
            .height
            .min(self.runs.len() as u16 + 5)
            .max(5.min(area.height));
        let rect = Rect {
            x: area.x + (area.width - w) / 2,
            y: area.y + (area.height - h) / 2,
            width: w,
            height: h,
        };
        frame.render_widget(Clear, rect);
        let title = format!(" Compare with a finished run ({}) ", self.dir.display());
        let block = Block::bordered()
            .title(Line::from(title))
            .title_bottom(Line::from(" ↑↓ choose · enter compare · esc close "))
            .border_style(theme.focus_border());
        let inner = block.inner(rect);
        frame.render_widget(block, rect);
        let lines = self.lines(inner.width as usize, inner.height as usize, theme);
        frame.render_widget(Paragraph::new(lines), inner);
    }

    fn lines(&self, width: usize, height: usize, theme: Theme) -> Vec<Line<'static>> {
        if let Some(e) = &self.error {
            return vec![Line::styled(fit(e, width), theme.bad())];
        }
        if self.runs.is_empty() {
            return vec![Line::styled("no finished runs here", theme.dim())];
        }
        let header = format!(
            "{:<40} {:<16} {:>9} {:>8} {:>7}",
            "run", "model", "step", "loss", "top-1"
        );
        let mut lines = vec![Line::styled(fit(&header, width), theme.header())];
        // Keep the cursor in view when the list is taller than the overlay.
        let rows = height.saturating_sub(1).max(1);
        let skip = self.selected.saturating_sub(rows - 1);
        for (i, r) in self.runs.iter().enumerate().skip(skip).take(rows) {
            let name = r
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let top1 = r
                .last_top1
                .map_or("-".to_string(), |t| format!("{:.1}%", 100.0 * t));
            let text = format!(
                "{:<40} {:<16} {:>9} {:>8.4} {:>7}",
                fit(&name, 40),
                fit(&r.model, 16),
                r.step,
                r.final_loss,
                top1
            );
            let style = if i == self.selected {
                theme.selected()
            } else {
                theme.text()
            };
            lines.push(Line::from(Span::styled(fit(&text, width), style)));
        }
        lines
    }
}
