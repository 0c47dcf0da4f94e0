//! The signal-propagation pane: per block avg_var, avg_sq_mean and res_avg_var against the predicted variance,
//! refreshed every statistics interval, with the variance "staircase" across depth when there is room.

use super::loss::bounds;
use super::pane::Ctx;
use super::text::{fit, num};
use crate::train::messages::{LayerStats, SppBlockStats};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Cell, Chart, Dataset, GraphType, Paragraph, Row, Table, TableState};
use ratatui::Frame;

/// Measured over predicted variance beyond this factor (either way) is highlighted. Stems and pooling legitimately
/// move a stage's level (see the spec), so this only draws the eye; it never rescales anything.
const FAR_OFF: f64 = 4.0;

#[derive(Debug, Clone, Default)]
pub struct SppPane {
    blocks: Vec<SppBlockStats>,
    pub step: Option<u64>,
    /// `run.stats_every`, for the title.
    pub every: u64,
    state: TableState,
}

impl SppPane {
    pub fn new(every: u64) -> Self {
        Self {
            every,
            state: TableState::default().with_selected(Some(0)),
            ..Self::default()
        }
    }

    pub fn on_layers(&mut self, s: &LayerStats) {
        if !s.spp.is_empty() {
            self.blocks = s.spp.clone();
            self.step = Some(s.step);
        }
    }

    pub fn blocks(&self) -> &[SppBlockStats] {
        &self.blocks
    }

    pub fn select(&mut self, delta: isize) {
        let n = self.blocks.len();
        if n == 0 {
            return;
        }
        let cur = self.state.selected().unwrap_or(0) as isize;
        self.state
            .select(Some((cur + delta).clamp(0, n as isize - 1) as usize));
    }

    fn title(&self) -> Line<'static> {
        let mut s = format!(" Signal propagation (every {} steps)", self.every);
        if let Some(step) = self.step {
            s.push_str(&format!(" @{step}"));
        }
        s.push(' ');
        Line::from(s)
    }

    pub fn render(&mut self, frame: &mut Frame, area: Rect, ctx: Ctx) {
        let block = ctx.block(self.title(), None, area.width);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        if inner.width < 2 || inner.height < 1 {
            return;
        }
        if self.blocks.is_empty() {
            frame.render_widget(
                Paragraph::new("no statistics yet (every run.stats_every steps)")
                    .style(ctx.theme.dim()),
                inner,
            );
            return;
        }
        // The staircase chart below the table when both fit.
        let table_h = self.blocks.len() as u16 + 1;
        if inner.height >= table_h.min(8) + 7 && inner.width >= 30 {
            let chart_h = inner.height.saturating_sub(table_h.min(8)).max(7);
            let [top, bottom] =
                Layout::vertical([Constraint::Min(2), Constraint::Length(chart_h)]).areas(inner);
            self.render_table(frame, top, ctx);
            self.render_chart(frame, bottom, ctx);
        } else {
            self.render_table(frame, inner, ctx);
        }
    }

    fn render_table(&mut self, frame: &mut Frame, area: Rect, ctx: Ctx) {
        // (header, width) by priority: the rightmost are dropped first when narrow.
        const COLS: [(&str, u16); 5] = [
            ("avg_var", 8),
            ("pred", 7),
            ("meas/pred", 9),
            ("res_var", 8),
            ("sq_mean", 8),
        ];
        let name_min = 6u16;
        let mut n = COLS.len();
        while n > 0 && name_min + COLS[..n].iter().map(|c| c.1 + 1).sum::<u16>() > area.width {
            n -= 1;
        }
        let cols = &COLS[..n];
        let name_w = area
            .width
            .saturating_sub(cols.iter().map(|c| c.1 + 1).sum::<u16>())
            .clamp(name_min.min(area.width), 16);
        let theme = ctx.theme;
        let mut header = vec![Cell::from("block")];
        header.extend(
            cols.iter()
                .map(|(h, _)| Cell::from(Line::from(*h).right_aligned())),
        );
        let rows: Vec<Row> = self
            .blocks
            .iter()
            .map(|b| {
                let ratio = b.avg_var / b.predicted_var;
                let off = !(ratio.is_finite() && (1.0 / FAR_OFF..=FAR_OFF).contains(&ratio));
                let values = [
                    num(b.avg_var),
                    num(b.predicted_var),
                    num(ratio),
                    num(b.res_avg_var),
                    num(b.avg_sq_mean),
                ];
                let mut cells = vec![Cell::from(fit(&b.name, name_w as usize))];
                for (i, v) in values.iter().take(cols.len()).enumerate() {
                    let mut line = Line::from(v.clone()).right_aligned();
                    if off && i == 2 {
                        line = line.style(theme.warn());
                    }
                    cells.push(Cell::from(line));
                }
                Row::new(cells)
            })
            .collect();
        let mut widths = vec![Constraint::Length(name_w)];
        widths.extend(cols.iter().map(|c| Constraint::Length(c.1)));
        let mut table = Table::new(rows, widths)
            .header(Row::new(header).style(theme.header()))
            .column_spacing(1);
        if ctx.focused {
            table = table.row_highlight_style(theme.selected());
        }
        frame.render_stateful_widget(table, area, &mut self.state);
    }

    fn render_chart(&self, frame: &mut Frame, area: Rect, ctx: Ctx) {
        let measured: Vec<(f64, f64)> = self
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| (i as f64, b.avg_var))
            .filter(|p| p.1.is_finite())
            .collect();
        let predicted: Vec<(f64, f64)> = self
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| (i as f64, b.predicted_var))
            .filter(|p| p.1.is_finite())
            .collect();
        let (y0, y1) = bounds(measured.iter().chain(predicted.iter()).map(|p| p.1));
        let x1 = (self.blocks.len().saturating_sub(1) as f64).max(1.0);
        let first = self
            .blocks
            .first()
            .map_or(String::new(), |b| b.name.clone());
        let last = self.blocks.last().map_or(String::new(), |b| b.name.clone());
        let chart = Chart::new(vec![
            Dataset::default()
                .name("predicted")
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(ctx.theme.series(0))
                .data(&predicted),
            Dataset::default()
                .name("avg_var")
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(ctx.theme.series(1))
                .data(&measured),
        ])
        .x_axis(
            Axis::default()
                .bounds([0.0, x1])
                .labels(vec![Span::raw(first), Span::raw(last)])
                .style(ctx.theme.dim()),
        )
        .y_axis(
            Axis::default()
                .bounds([y0, y1])
                .labels(vec![Span::raw(num(y0)), Span::raw(num(y1))])
                .style(ctx.theme.dim()),
        )
        .hidden_legend_constraints((Constraint::Percentage(50), Constraint::Percentage(60)));
        frame.render_widget(chart, area);
    }
}
