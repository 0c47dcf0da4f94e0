//! Colours and emphasis that read on dark and light terminals alike, or none at all when `NO_COLOR` is set.
//!
//! Only the 16 ANSI colours are used (the terminal's own palette decides the exact shade, so they fit its
//! background), never yellow or white for text (unreadable on light backgrounds), and every meaning also has a
//! non-colour cue (bold, reverse video, a symbol) so that `NO_COLOR` loses nothing.

use ratatui::style::{Color, Modifier, Style};

/// The styles every pane draws with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Theme {
    /// Whether colours are used at all.
    pub color: bool,
}

impl Default for Theme {
    fn default() -> Self {
        Self::from_env()
    }
}

impl Theme {
    /// Colour unless `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
    pub fn from_env() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self { color: !no_color }
    }

    pub const fn colored() -> Self {
        Self { color: true }
    }

    pub const fn plain() -> Self {
        Self { color: false }
    }

    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    /// Ordinary text.
    pub fn text(&self) -> Style {
        Style::new()
    }

    /// Secondary text: units, hints, excluded layers.
    pub fn dim(&self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }

    /// Column headers and labels.
    pub fn header(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    /// The border of the focused pane.
    pub fn focus_border(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// Other borders.
    pub fn border(&self) -> Style {
        self.fg(Color::DarkGray)
    }

    /// The selected row.
    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    pub fn good(&self) -> Style {
        self.fg(Color::Green)
    }

    pub fn warn(&self) -> Style {
        self.fg(Color::Magenta).add_modifier(Modifier::BOLD)
    }

    pub fn bad(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn accent(&self) -> Style {
        self.fg(Color::Blue)
    }

    /// The first and second series of a chart (train loss / smoothed, measured / predicted).
    pub fn series(&self, i: usize) -> Style {
        match i {
            0 => self.fg(Color::DarkGray),
            1 => self.fg(Color::Blue).add_modifier(Modifier::BOLD),
            2 => self.fg(Color::Green),
            _ => self.fg(Color::Magenta),
        }
    }

    /// A heat-map cell for a fraction in [0, 1]: colour from cool to hot (the glyph height carries it without colour).
    pub fn heat(&self, fraction: f64) -> Style {
        let c = if fraction <= 0.0 {
            Color::DarkGray
        } else if fraction < 0.05 {
            Color::Blue
        } else if fraction < 0.2 {
            Color::Cyan
        } else if fraction < 0.5 {
            Color::Green
        } else if fraction < 0.8 {
            Color::Magenta
        } else {
            Color::Red
        };
        self.fg(c)
    }
}

/// One glyph for a fraction in [0, 1]: `·` for exactly zero, then eight block heights.
pub fn heat_glyph(fraction: f64) -> char {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if !fraction.is_finite() {
        return '?';
    }
    if fraction <= 0.0 {
        return '·';
    }
    let level = (fraction.min(1.0) * 8.0).ceil() as usize;
    LEVELS[level.clamp(1, 8) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_glyphs_cover_the_range() {
        assert_eq!(heat_glyph(0.0), '·');
        assert_eq!(heat_glyph(0.001), '▁');
        assert_eq!(heat_glyph(0.5), '▄');
        assert_eq!(heat_glyph(1.0), '█');
        assert_eq!(heat_glyph(7.0), '█');
        assert_eq!(heat_glyph(f64::NAN), '?');
    }

    #[test]
    fn plain_theme_has_no_colour() {
        let t = Theme::plain();
        assert_eq!(t.bad().fg, None);
        assert_eq!(t.heat(0.9).fg, None);
        assert!(Theme::colored().bad().fg.is_some());
    }
}
