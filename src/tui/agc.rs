//! The AGC pane: a sortable per-layer table of norms, ratios, thresholds and clipping, with a heat map of each
//! layer's clip fraction over the recent statistics steps, and the share of all units clipped.

use super::pane::Ctx;
use super::text::{fit, num, pct};
use super::theme::heat_glyph;
use super::whatif::{self, WhatIf};
use crate::train::messages::{AgcLayerStats, LayerStats};
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;
use std::collections::{HashMap, VecDeque};

/// Statistics snapshots kept per layer for the heat map.
const HISTORY: usize = 256;

/// The table's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// As the model lists its parameters.
    Model,
    /// Most clipped first.
    Clipped,
    /// Largest ||G||/||W|| first.
    Ratio,
    /// Largest ||G|| first.
    GradNorm,
    Name,
}

impl SortKey {
    pub fn next(self) -> Self {
        match self {
            SortKey::Model => SortKey::Clipped,
            SortKey::Clipped => SortKey::Ratio,
            SortKey::Ratio => SortKey::GradNorm,
            SortKey::GradNorm => SortKey::Name,
            SortKey::Name => SortKey::Model,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SortKey::Model => "model",
            SortKey::Clipped => "clip%",
            SortKey::Ratio => "‖G‖/‖W‖",
            SortKey::GradNorm => "‖G‖",
            SortKey::Name => "name",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AgcLayer {
    pub stats: AgcLayerStats,
    /// Clip fraction at each recent statistics step, oldest first.
    pub history: VecDeque<f64>,
}

impl AgcLayer {
    /// ||G|| / ||W|| over the whole tensor.
    pub fn ratio(&self) -> f64 {
        self.stats.grad_norm / self.stats.weight_norm.max(f64::MIN_POSITIVE)
    }
}

#[derive(Debug, Clone)]
pub struct AgcPane {
    layers: Vec<AgcLayer>,
    index: HashMap<String, usize>,
    /// The statistics step shown.
    pub step: Option<u64>,
    /// The clipping threshold in force (from the trainer's step metrics and acknowledgements).
    pub lambda: f64,
    pub eps: f64,
    pub enabled: bool,
    pub total_clipped: f64,
    pub sort: SortKey,
    state: TableState,
    /// The last statistics snapshot, for the net's what-if share.
    snapshot: Option<LayerStats>,
    /// The lambda being edited (typed or pending), drawn as a second marker with the share it would clip.
    preview: Option<f64>,
}

impl AgcPane {
    pub fn new(lambda: f64, eps: f64, enabled: bool) -> Self {
        Self {
            layers: Vec::new(),
            index: HashMap::new(),
            step: None,
            lambda,
            eps,
            enabled,
            total_clipped: f64::NAN,
            sort: SortKey::Model,
            state: TableState::default().with_selected(Some(0)),
            snapshot: None,
            preview: None,
        }
    }

    /// The lambda being edited, or None when nothing is.
    pub fn set_preview(&mut self, lambda: Option<f64>) {
        self.preview = lambda;
    }

    /// The layer under the cursor, in display order.
    pub fn selected_layer(&self) -> Option<&AgcLayer> {
        let i = self.state.selected()?;
        self.sorted().get(i).copied()
    }

    /// What the lambda being edited would clip (None when none is being edited).
    pub fn whatif(&self) -> Option<WhatIf> {
        let lambda = self.preview?;
        Some(WhatIf::at(
            lambda,
            self.selected_layer().map(|l| &l.stats),
            self.snapshot.as_ref(),
        ))
    }

    pub fn on_layers(&mut self, s: &LayerStats) {
        for l in &s.agc {
            let i = match self.index.get(&l.name) {
                Some(&i) => i,
                None => {
                    self.layers.push(AgcLayer {
                        stats: l.clone(),
                        history: VecDeque::new(),
                    });
                    self.index.insert(l.name.clone(), self.layers.len() - 1);
                    self.layers.len() - 1
                }
            };
            let layer = &mut self.layers[i];
            layer.stats = l.clone();
            if layer.history.len() == HISTORY {
                layer.history.pop_front();
            }
            layer.history.push_back(l.clipped_fraction);
        }
        self.total_clipped = s.total_clipped_fraction;
        self.step = Some(s.step);
        self.snapshot = Some(s.clone());
    }

    pub fn layers(&self) -> &[AgcLayer] {
        &self.layers
    }

    /// The layers in display order.
    pub fn sorted(&self) -> Vec<&AgcLayer> {
        let mut v: Vec<&AgcLayer> = self.layers.iter().collect();
        let desc = |a: f64, b: f64| b.total_cmp(&a);
        match self.sort {
            SortKey::Model => {}
            SortKey::Clipped => {
                v.sort_by(|a, b| desc(a.stats.clipped_fraction, b.stats.clipped_fraction))
            }
            SortKey::Ratio => v.sort_by(|a, b| desc(a.ratio(), b.ratio())),
            SortKey::GradNorm => v.sort_by(|a, b| desc(a.stats.grad_norm, b.stats.grad_norm)),
            SortKey::Name => v.sort_by(|a, b| a.stats.name.cmp(&b.stats.name)),
        }
        v
    }

    fn longest_name(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.stats.name.chars().count())
            .max()
            .unwrap_or(0)
    }

    pub fn cycle_sort(&mut self) {
        self.sort = self.sort.next();
        self.state.select(Some(0));
    }

    pub fn select(&mut self, delta: isize) {
        let n = self.layers.len();
        if n == 0 {
            return;
        }
        let cur = self.state.selected().unwrap_or(0) as isize;
        let next = (cur + delta).clamp(0, n as isize - 1) as usize;
        self.state.select(Some(next));
    }

    pub fn selected(&self) -> Option<usize> {
        self.state.selected()
    }

    fn title(&self) -> Line<'static> {
        let mut s = format!(" AGC  λ={}", num(self.lambda));
        if !self.enabled {
            s.push_str(" (off)");
        }
        if self.total_clipped.is_finite() {
            s.push_str(&format!("  clipped {} of units", pct(self.total_clipped)));
        }
        if let Some(step) = self.step {
            s.push_str(&format!("  @{step}"));
        }
        if let Some(w) = self.whatif() {
            s.push_str(&format!("  λ→{}: {}", num(w.lambda), w.text()));
        }
        s.push(' ');
        Line::from(s)
    }

    pub fn render(&mut self, frame: &mut Frame, area: Rect, ctx: Ctx) {
        let hints = Line::from(format!(" [s]ort {} ", self.sort.label()));
        let block = ctx.block(self.title(), Some(hints), area.width);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        if inner.width < 2 || inner.height < 1 {
            return;
        }
        if self.layers.is_empty() {
            frame.render_widget(
                Paragraph::new("no statistics yet (every run.stats_every steps)")
                    .style(ctx.theme.dim()),
                inner,
            );
            return;
        }
        let inner = self.render_histogram(frame, inner, ctx);
        let cols = columns(inner.width);
        let (name_w, heat_w) = name_and_heat_widths(inner.width, &cols, self.longest_name());
        let theme = ctx.theme;
        let mut header = vec![Cell::from("layer")];
        header.extend(
            cols.iter()
                .map(|c| Cell::from(Line::from(c.header).right_aligned())),
        );
        if heat_w > 0 {
            header.push(Cell::from(if heat_w >= 12 {
                "heat (→ now)"
            } else {
                "heat"
            }));
        }
        let rows: Vec<Row> = self
            .sorted()
            .into_iter()
            .map(|l| {
                let dim = !l.stats.clipped_by_agc;
                // A frozen layer (model.freeze) is marked in its name, whichever columns fit.
                let name = if l.stats.frozen {
                    format!("❄ {}", l.stats.name)
                } else {
                    l.stats.name.clone()
                };
                let mut cells = vec![Cell::from(fit(&name, name_w as usize))];
                for c in &cols {
                    cells.push(Cell::from(
                        Line::from((c.value)(l, self.lambda, self.eps)).right_aligned(),
                    ));
                }
                if heat_w > 0 {
                    cells.push(Cell::from(heat_line(&l.history, heat_w as usize, theme)));
                }
                let row = Row::new(cells);
                if dim {
                    row.style(theme.dim())
                } else {
                    row
                }
            })
            .collect();
        let mut widths = vec![Constraint::Length(name_w)];
        widths.extend(cols.iter().map(|c| Constraint::Length(c.width)));
        if heat_w > 0 {
            widths.push(Constraint::Length(heat_w));
        }
        let mut table = Table::new(rows, widths)
            .header(Row::new(header).style(theme.header()))
            .column_spacing(1);
        if ctx.focused {
            table = table.row_highlight_style(theme.selected());
        }
        frame.render_stateful_widget(table, inner, &mut self.state);
    }
}

impl AgcPane {
    /// The selected layer's ratio histogram at the bottom of `inner` when the pane is tall enough; returns the rest.
    fn render_histogram(&self, frame: &mut Frame, inner: Rect, ctx: Ctx) -> Rect {
        let Some(layer) = self.selected_layer() else {
            return inner;
        };
        if inner.height < whatif::HEIGHT + 4 || layer.stats.ratio_counts.is_empty() {
            return inner;
        }
        let table_h = inner.height - whatif::HEIGHT;
        let title = Rect {
            y: inner.y + table_h,
            height: 1,
            ..inner
        };
        let hist = Rect {
            y: title.y + 1,
            height: whatif::HEIGHT - 1,
            ..inner
        };
        let caption = format!(
            "{}: units by ‖G_u‖/max(‖W_u‖,ε), log bins; │ λ={}",
            layer.stats.name,
            num(self.lambda)
        );
        let caption = match self.preview {
            Some(p) => format!("{caption}  ┊ λ→{}", num(p)),
            None => caption,
        };
        frame.render_widget(
            Paragraph::new(fit(&caption, inner.width as usize)).style(ctx.theme.header()),
            title,
        );
        whatif::render(frame, hist, ctx, &layer.stats, self.lambda, self.preview);
        Rect {
            height: table_h,
            ..inner
        }
    }
}

const NAME_MIN: u16 = 12;
/// The heat map's least width before columns are dropped for it.
const HEAT_MIN: u16 = 10;

type ValueFn = fn(&AgcLayer, f64, f64) -> String;

struct Column {
    header: &'static str,
    width: u16,
    value: ValueFn,
}

/// All columns in display order, with the order in which they are dropped when the pane is narrow (highest first).
fn all_columns() -> [(u8, Column); 6] {
    [
        (
            3,
            Column {
                header: "‖W‖",
                width: 7,
                value: |l, _, _| num(l.stats.weight_norm),
            },
        ),
        (
            4,
            Column {
                header: "‖G‖",
                width: 7,
                value: |l, _, _| num(l.stats.grad_norm),
            },
        ),
        (
            1,
            Column {
                header: "‖G‖/‖W‖",
                width: 7,
                value: |l, _, _| num(l.ratio()),
            },
        ),
        (
            5,
            Column {
                header: "max unit",
                width: 8,
                value: |l, _, _| num(l.stats.max_ratio),
            },
        ),
        (
            2,
            Column {
                header: "λ·max(‖W‖,ε)",
                width: 12,
                value: |l, lambda, eps| {
                    if l.stats.frozen {
                        "frozen".into()
                    } else if l.stats.clipped_by_agc {
                        num(lambda * l.stats.weight_norm.max(eps))
                    } else {
                        "excluded".into()
                    }
                },
            },
        ),
        (
            0,
            Column {
                header: "clip%",
                width: 6,
                value: |l, _, _| {
                    if l.stats.clipped_by_agc {
                        pct(l.stats.clipped_fraction)
                    } else {
                        "-".into()
                    }
                },
            },
        ),
    ]
}

/// The columns that fit beside the layer name and a minimal heat map.
fn columns(width: u16) -> Vec<Column> {
    let mut cols: Vec<(u8, Column)> = all_columns().into_iter().collect();
    let need = |cols: &[(u8, Column)]| {
        NAME_MIN + HEAT_MIN + 2 + cols.iter().map(|(_, c)| c.width + 1).sum::<u16>()
    };
    while !cols.is_empty() && need(&cols) > width {
        let drop = cols
            .iter()
            .enumerate()
            .max_by_key(|(_, (p, _))| *p)
            .map(|(i, _)| i)
            .unwrap_or(0);
        cols.remove(drop);
    }
    cols.into_iter().map(|(_, c)| c).collect()
}

/// The name column gets the longest name's width if it can (at least [`NAME_MIN`]), the heat map the rest (at least
/// [`HEAT_MIN`] when there is room, none below 4 columns).
fn name_and_heat_widths(width: u16, cols: &[Column], longest: usize) -> (u16, u16) {
    let fixed: u16 = cols.iter().map(|c| c.width + 1).sum();
    let avail = width.saturating_sub(fixed);
    let want = (longest.min(40) as u16).max(NAME_MIN);
    let name = want
        .min(avail.saturating_sub(HEAT_MIN + 1))
        .max(NAME_MIN.min(avail));
    let heat = avail.saturating_sub(name + 1);
    if heat < 4 {
        (avail, 0)
    } else {
        (name, heat.min(HISTORY as u16))
    }
}

/// The last `width` clip fractions, newest on the right.
fn heat_line(history: &VecDeque<f64>, width: usize, theme: super::theme::Theme) -> Line<'static> {
    let skip = history.len().saturating_sub(width);
    let pad = width.saturating_sub(history.len());
    let mut spans = vec![Span::raw(" ".repeat(pad))];
    // One span per run of equally styled cells: a wide map is a few spans, not hundreds.
    let mut run = String::new();
    let mut run_style = None;
    for &f in history.iter().skip(skip) {
        let style = theme.heat(f);
        if run_style.is_some_and(|s| s != style) {
            spans.push(Span::styled(
                std::mem::take(&mut run),
                run_style.unwrap_or_default(),
            ));
        }
        run_style = Some(style);
        run.push(heat_glyph(f));
    }
    if !run.is_empty() {
        spans.push(Span::styled(run, run_style.unwrap_or_default()));
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_drop_by_priority_and_fit() {
        for w in 0..200u16 {
            let cols = columns(w);
            let used: u16 = NAME_MIN + cols.iter().map(|c| c.width + 1).sum::<u16>();
            assert!(cols.is_empty() || used + HEAT_MIN + 2 <= w, "width {w}");
        }
        let narrow: Vec<&str> = columns(50).iter().map(|c| c.header).collect();
        assert!(narrow.contains(&"clip%"));
        assert!(!narrow.contains(&"max unit"));
        assert_eq!(columns(90).len(), 6);
    }
}
