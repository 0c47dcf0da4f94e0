//! What every pane shares: its identity (for focus), the frame around it, and the drawing context.

use super::theme::Theme;
use ratatui::text::Line;
use ratatui::widgets::{Block, BorderType};

/// The panes, in focus order (tab goes forward, shift-tab back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaneId {
    Loss,
    Agc,
    Spp,
    Hyper,
    Events,
}

impl PaneId {
    pub const ALL: [PaneId; 5] = [
        PaneId::Loss,
        PaneId::Agc,
        PaneId::Spp,
        PaneId::Hyper,
        PaneId::Events,
    ];

    pub fn next(self) -> Self {
        let i = Self::ALL.iter().position(|p| *p == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    pub fn prev(self) -> Self {
        let i = Self::ALL.iter().position(|p| *p == self).unwrap_or(0);
        Self::ALL[(i + Self::ALL.len() - 1) % Self::ALL.len()]
    }

    pub fn name(self) -> &'static str {
        match self {
            PaneId::Loss => "Loss",
            PaneId::Agc => "AGC",
            PaneId::Spp => "Signal propagation",
            PaneId::Hyper => "Hyperparameters",
            PaneId::Events => "Events",
        }
    }
}

/// How a pane is asked to draw itself.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub theme: Theme,
    pub focused: bool,
}

impl Ctx {
    /// The pane's frame: a rounded box, highlighted when focused, with a left title and optional key hints on the right.
    /// The hints are left out when they would squeeze the title in a pane `width` columns wide.
    pub fn block<'a>(&self, title: Line<'a>, hints: Option<Line<'a>>, width: u16) -> Block<'a> {
        let style = if self.focused {
            self.theme.focus_border()
        } else {
            self.theme.border()
        };
        let mut block = Block::bordered()
            .border_type(if self.focused {
                BorderType::Thick
            } else {
                BorderType::Rounded
            })
            .border_style(style)
            .title_top(title.clone());
        let room = (width as usize).saturating_sub(title.width() + 4);
        if let Some(h) = hints.filter(|h| h.width() <= room) {
            block = block.title_top(h.right_aligned());
        }
        block
    }
}
