//! The events pane: reloads, errors, non-finite alerts, checkpoints and acknowledgements, newest first.

use super::pane::Ctx;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph};
use ratatui::Frame;
use std::collections::VecDeque;

/// Lines kept; older ones are dropped (the run record keeps everything).
const KEEP: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Good,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Wall-clock time (`HH:MM:SS`), or a step label in replay.
    pub time: String,
    pub level: Level,
    pub text: String,
}

#[derive(Debug, Clone, Default)]
pub struct EventsPane {
    lines: VecDeque<LogLine>,
    state: ListState,
}

impl EventsPane {
    pub fn push(&mut self, time: String, level: Level, text: impl Into<String>) {
        if self.lines.len() == KEEP {
            self.lines.pop_back();
        }
        self.lines.push_front(LogLine {
            time,
            level,
            text: text.into(),
        });
        // Keep the selection on the same line when the user is reading back.
        if let Some(i) = self.state.selected().filter(|i| *i > 0) {
            self.state.select(Some((i + 1).min(self.lines.len() - 1)));
        }
    }

    /// Newest first.
    pub fn lines(&self) -> impl Iterator<Item = &LogLine> {
        self.lines.iter()
    }

    pub fn select(&mut self, delta: isize) {
        let n = self.lines.len();
        if n == 0 {
            return;
        }
        let cur = self.state.selected().unwrap_or(0) as isize;
        self.state
            .select(Some((cur + delta).clamp(0, n as isize - 1) as usize));
    }

    pub fn render(
        &mut self,
        frame: &mut Frame,
        area: Rect,
        ctx: Ctx,
        footer: Option<Line<'static>>,
    ) {
        let mut block = ctx.block(Line::from(" Events "), None, area.width);
        if let Some(f) = footer {
            block = block.title_bottom(f);
        }
        let inner = block.inner(area);
        frame.render_widget(block, area);
        if inner.width < 2 || inner.height < 1 {
            return;
        }
        if self.lines.is_empty() {
            frame.render_widget(Paragraph::new("nothing yet").style(ctx.theme.dim()), inner);
            return;
        }
        let theme = ctx.theme;
        let items: Vec<ListItem> = self
            .lines
            .iter()
            .map(|l| {
                let style = match l.level {
                    Level::Info => theme.text(),
                    Level::Good => theme.good(),
                    Level::Warn => theme.warn(),
                    Level::Error => theme.bad(),
                };
                let mark = match l.level {
                    Level::Info | Level::Good => " ",
                    Level::Warn => "!",
                    Level::Error => "✗",
                };
                ListItem::new(Line::from(vec![
                    Span::styled(format!("{} ", l.time), theme.dim()),
                    Span::styled(format!("{mark} "), style),
                    Span::styled(l.text.clone(), style),
                ]))
            })
            .collect();
        let mut list = List::new(items);
        if ctx.focused {
            list = list.highlight_style(theme.selected());
        }
        if !ctx.focused && self.state.selected().is_some() {
            self.state.select(None);
            *self.state.offset_mut() = 0;
        }
        frame.render_stateful_widget(list, inner, &mut self.state);
    }
}
