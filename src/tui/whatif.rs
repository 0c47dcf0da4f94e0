//! The AGC what-if in the layers pane: the selected layer's histogram of unit ratios `||G_u|| / max(||W_u||, eps)`
//! at the last statistics snapshot (one bar per bin of [`RATIO_EDGES`], log axis), the lambda in force as a line,
//! and, while `agc.lambda` is being edited, a marker at the new value and the share of units it would clip.
//!
//! Everything comes from the `LayerStats` event's cumulative counts: the UI never touches a tensor.

use super::pane::Ctx;
use crate::optim::agc::{ClipShare, RATIO_EDGES};
use crate::train::messages::{AgcLayerStats, LayerStats};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// Rows the histogram takes in the pane: bars, the marker row and the axis labels.
pub const HEIGHT: u16 = 8;

/// Bins of the histogram: under, one per pair of edges, over.
pub const BINS: usize = RATIO_EDGES.len() + 1;

/// What lambda `lambda` would clip, in the selected layer and in the whole net.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WhatIf {
    pub lambda: f64,
    pub layer: Option<ClipShare>,
    pub net: Option<ClipShare>,
}

impl WhatIf {
    pub fn at(lambda: f64, layer: Option<&AgcLayerStats>, snapshot: Option<&LayerStats>) -> Self {
        Self {
            lambda,
            layer: layer
                .filter(|l| l.clipped_by_agc)
                .and_then(|l| l.clipped_share_at(lambda)),
            net: snapshot.and_then(|s| s.net_clipped_share_at(lambda)),
        }
    }

    /// `would clip: layer 12.5% · net 3.0-4.1%` (a range when lambda is between two edges).
    pub fn text(&self) -> String {
        let share = |s: Option<ClipShare>| s.map_or("-".to_string(), |s| s.percent());
        format!(
            "would clip: layer {} · net {}",
            share(self.layer),
            share(self.net)
        )
    }
}

/// The column (from the left, in bins) where `lambda` falls: edge `k` is the boundary after bin `k`; between edges
/// the position is interpolated on the log scale.
fn position(lambda: f64) -> f64 {
    let n = RATIO_EDGES.len();
    if lambda.is_nan() || lambda <= RATIO_EDGES[0] {
        return 1.0;
    }
    if lambda >= RATIO_EDGES[n - 1] {
        return n as f64;
    }
    let k = RATIO_EDGES.iter().rposition(|&e| e <= lambda).unwrap_or(0);
    let (lo, hi) = (RATIO_EDGES[k], RATIO_EDGES[k + 1]);
    k as f64 + 1.0 + (lambda / lo).ln() / (hi / lo).ln()
}

/// Draw `layer`'s histogram in `area` with the lambda in force and the one being edited (if any).
pub fn render(
    frame: &mut Frame,
    area: Rect,
    ctx: Ctx,
    layer: &AgcLayerStats,
    lambda: f64,
    preview: Option<f64>,
) {
    let theme = ctx.theme;
    let bins = layer.ratio_bins();
    let width = area.width as usize;
    if bins.len() != BINS || area.height < 4 {
        let why = if layer.frozen {
            "frozen: no ratio histogram"
        } else {
            "no ratio histogram in this snapshot"
        };
        frame.render_widget(Paragraph::new(why).style(theme.dim()), area);
        return;
    }
    let label = 5usize;
    if width < BINS + label {
        let need = format!("ratio histogram needs {} columns (z zooms)", BINS + label);
        frame.render_widget(Paragraph::new(need).style(theme.dim()), area);
        return;
    }
    let cw = ((width - label) / BINS).max(1);
    let bar_rows = area.height as usize - 2;
    let max = bins.iter().cloned().fold(0.0, f64::max).max(1.0);
    let col_of = |v: f64| label + (position(v) * cw as f64).round() as usize;
    let line_col = col_of(lambda);
    let preview_col = preview.map(col_of);
    let mut lines = Vec::with_capacity(area.height as usize);
    for r in 0..bar_rows {
        // Eighths of a row filled from the bottom: row r (from the top) shows what is above `level`.
        let level = (bar_rows - 1 - r) as f64;
        let mut spans = vec![Span::styled(
            if r == 0 {
                format!("{:>4} ", max as u64)
            } else {
                " ".repeat(label)
            },
            theme.dim(),
        )];
        let mut row = String::new();
        for &count in &bins {
            let h = count / max * bar_rows as f64 - level;
            let glyph = bar_glyph(h, count > 0.0 && r + 1 == bar_rows);
            row.extend(std::iter::repeat_n(glyph, cw));
        }
        let mut cells: Vec<char> = row.chars().collect();
        for (col, mark) in [(Some(line_col), '│'), (preview_col, '┊')] {
            if let Some(c) = col.and_then(|c| c.checked_sub(label)) {
                if c < cells.len() && cells[c] == ' ' {
                    cells[c] = mark;
                }
            }
        }
        spans.push(Span::styled(
            cells.into_iter().collect::<String>(),
            theme.accent(),
        ));
        lines.push(Line::from(spans));
    }
    lines.push(marker_line(width, line_col, preview_col, ctx));
    lines.push(axis_line(width, label, cw, ctx));
    frame.render_widget(Paragraph::new(lines), area);
}

/// A block glyph for a bar whose top is `h` rows above this row's bottom; `sliver`: a non-empty bin on the bottom
/// row shows at least one eighth, so that no unit is invisible.
fn bar_glyph(h: f64, sliver: bool) -> char {
    const EIGHTHS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let e = (h.clamp(0.0, 1.0) * 8.0).round() as usize;
    if e == 0 && sliver {
        '▁'
    } else {
        EIGHTHS[e]
    }
}

/// `λ` under the line in force, `?` under the value being edited.
fn marker_line(width: usize, line: usize, preview: Option<usize>, ctx: Ctx) -> Line<'static> {
    let mut cells = vec![' '; width];
    if let Some(c) = cells.get_mut(line) {
        *c = 'λ';
    }
    if let Some(c) = preview.and_then(|p| cells.get_mut(p)) {
        *c = '?';
    }
    Line::from(Span::styled(
        cells.into_iter().collect::<String>(),
        ctx.theme.warn(),
    ))
}

/// Decade labels (`1e-5`, `1e-4`, ..., `1e1`) under their edges, as many as fit without overlapping.
fn axis_line(width: usize, label: usize, cw: usize, ctx: Ctx) -> Line<'static> {
    let mut cells = vec![' '; width];
    let mut free_from = 0;
    for (k, &e) in RATIO_EDGES.iter().enumerate() {
        let exp = e.log10();
        if (exp - exp.round()).abs() > 1e-9 {
            continue;
        }
        let text = format!("1e{}", exp.round() as i64);
        let at = label + (k + 1) * cw;
        let start = at.saturating_sub(text.len() / 2);
        if start < free_from || start + text.len() > width {
            continue;
        }
        for (i, ch) in text.chars().enumerate() {
            cells[start + i] = ch;
        }
        free_from = start + text.len() + 1;
    }
    Line::from(Span::styled(
        cells.into_iter().collect::<String>(),
        ctx.theme.dim(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_sit_on_bin_boundaries() {
        assert_eq!(position(RATIO_EDGES[0]), 1.0);
        assert_eq!(position(RATIO_EDGES[24]), 25.0);
        let mid = position((RATIO_EDGES[24] * RATIO_EDGES[25]).sqrt());
        assert!((mid - 25.5).abs() < 1e-9, "{mid}");
        assert_eq!(position(1e9), RATIO_EDGES.len() as f64);
    }
}
