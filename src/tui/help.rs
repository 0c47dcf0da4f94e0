//! The help overlay (`?`) and the quit confirmation.

use super::theme::Theme;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

/// Every key, as the help overlay lists it (the keys module implements exactly these).
pub const KEYS: &[(&str, &str)] = &[
    ("space", "pause / resume training"),
    ("n", "run one step (while paused)"),
    ("tab / shift-tab", "focus the next / previous pane"),
    ("↑ ↓ PgUp PgDn", "select a row in the focused pane"),
    ("+ / -", "step the selected hyperparameter up / down"),
    ("e / enter", "type a value for the selected hyperparameter"),
    ("w", "write the live values back to the preset file"),
    ("l", "loss: linear / log scale"),
    ("a", "loss: whole run / last 500 steps"),
    ("s", "AGC: cycle the sort order"),
    ("z", "zoom the focused pane to the whole screen"),
    (
        "r",
        "pick a finished run to compare with (as `tui --compare`)",
    ),
    ("c", "write a checkpoint now"),
    ("v", "evaluate on the validation split now"),
    (
        "q",
        "quit (asks; y stops after a final checkpoint); a viewer leaves at once",
    ),
    ("d", "attached (`nfbench attach`): leave, the run goes on"),
    ("ctrl-c", "quit now, after a final checkpoint"),
    ("?", "this help (any key closes it)"),
    ("mouse", "click a pane to focus it, wheel to scroll"),
];

/// A rectangle of at most `w` x `h` centred in `area`.
fn centred(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

pub fn render_help(frame: &mut Frame, area: Rect, theme: Theme, replay: bool) {
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>16}  "), theme.header()),
                Span::raw(*what),
            ])
        })
        .collect();
    if replay {
        lines.insert(
            0,
            Line::styled(
                "replay is read-only: ← → move the step cursor",
                theme.warn(),
            ),
        );
    }
    let rect = centred(area, 64, lines.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines)
            .block(
                Block::bordered()
                    .title(" Keys ")
                    .border_style(theme.focus_border()),
            )
            .wrap(Wrap { trim: false }),
        rect,
    );
}

pub fn render_quit(frame: &mut Frame, area: Rect, theme: Theme) {
    let rect = centred(area, 52, 4);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from("Stop training? A final checkpoint is written."),
            Line::from(vec![
                Span::styled("y", theme.header()),
                Span::raw(" stop and quit   "),
                Span::styled("n", theme.header()),
                Span::raw(" keep training"),
            ]),
        ])
        .block(Block::bordered().title(" Quit ").border_style(theme.bad()))
        .wrap(Wrap { trim: true }),
        rect,
    );
}
