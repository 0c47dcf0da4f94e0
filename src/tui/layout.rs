//! Where each pane goes for a given terminal size.
//!
//! - wide (>= 120 x 30): the sketch's grid: Loss | AGC over Signal propagation | Hyperparameters, events below;
//! - medium (>= 60 x 18): Loss | Hyperparameters over AGC | Signal propagation, events below (80x24 is this);
//! - small, or zoomed (`z`): the focused pane alone between the status bar and a key-hint line.
//!
//! Every size down to 0x0 yields rectangles inside the area; panes too small to draw say nothing rather than panic.

use super::pane::PaneId;
use ratatui::layout::{Constraint, Layout, Rect};

#[derive(Debug, Clone, PartialEq)]
pub struct Screen {
    pub status: Rect,
    /// A separate key-hint line (only when the events pane, whose bottom border carries the hints, is hidden).
    pub footer: Option<Rect>,
    pub panes: Vec<(PaneId, Rect)>,
}

impl Screen {
    pub fn pane_at(&self, x: u16, y: u16) -> Option<PaneId> {
        self.panes
            .iter()
            .find(|(_, r)| r.contains(ratatui::layout::Position { x, y }))
            .map(|(p, _)| *p)
    }

    pub fn shows(&self, pane: PaneId) -> bool {
        self.panes.iter().any(|(p, _)| *p == pane)
    }
}

pub const WIDE: (u16, u16) = (120, 30);
pub const MEDIUM: (u16, u16) = (60, 18);

pub fn screen(area: Rect, focus: PaneId, zoom: bool) -> Screen {
    let status = Rect {
        height: area.height.min(1),
        ..area
    };
    let body = Rect {
        y: area.y + status.height,
        height: area.height - status.height,
        ..area
    };
    let single = zoom || area.width < MEDIUM.0 || area.height < MEDIUM.1;
    if single {
        let footer_h = u16::from(body.height >= 3);
        let [pane, footer] =
            Layout::vertical([Constraint::Min(0), Constraint::Length(footer_h)]).areas(body);
        return Screen {
            status,
            footer: (footer_h > 0).then_some(footer),
            panes: vec![(focus, pane)],
        };
    }
    let events_h = (body.height / 5).clamp(4, 10);
    let [grid, events] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(events_h)]).areas(body);
    let wide = area.width >= WIDE.0 && area.height >= WIDE.1;
    let (top_pct, left_pct) = if wide { (55, 48) } else { (45, 50) };
    let [top, bottom] = Layout::vertical([
        Constraint::Percentage(top_pct),
        Constraint::Percentage(100 - top_pct),
    ])
    .areas(grid);
    let halves = |r: Rect, left: u16| -> [Rect; 2] {
        Layout::horizontal([
            Constraint::Percentage(left),
            Constraint::Percentage(100 - left),
        ])
        .areas(r)
    };
    let panes = if wide {
        let [loss, agc] = halves(top, left_pct);
        let [spp, hyper] = halves(bottom, left_pct);
        vec![
            (PaneId::Loss, loss),
            (PaneId::Agc, agc),
            (PaneId::Spp, spp),
            (PaneId::Hyper, hyper),
            (PaneId::Events, events),
        ]
    } else {
        let [loss, hyper] = halves(top, 50);
        let [agc, spp] = halves(bottom, 58);
        vec![
            (PaneId::Loss, loss),
            (PaneId::Hyper, hyper),
            (PaneId::Agc, agc),
            (PaneId::Spp, spp),
            (PaneId::Events, events),
        ]
    };
    Screen {
        status,
        footer: None,
        panes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rect_lies_inside_the_area() {
        for w in 0..140u16 {
            for h in 0..45u16 {
                let area = Rect::new(0, 0, w, h);
                for zoom in [false, true] {
                    let s = screen(area, PaneId::Agc, zoom);
                    let mut all = vec![s.status];
                    all.extend(s.footer);
                    all.extend(s.panes.iter().map(|p| p.1));
                    for r in all {
                        assert!(r.right() <= w && r.bottom() <= h, "{w}x{h}: {r:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn eighty_by_twenty_four_shows_every_pane() {
        let s = screen(Rect::new(0, 0, 80, 24), PaneId::Loss, false);
        for p in PaneId::ALL {
            assert!(s.shows(p), "{p:?}");
        }
        let small = screen(Rect::new(0, 0, 50, 20), PaneId::Spp, false);
        assert_eq!(small.panes.len(), 1);
        assert_eq!(small.panes[0].0, PaneId::Spp);
    }
}
