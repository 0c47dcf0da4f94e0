//! The hyperparameter pane: every preset field with its current value, marked live or restart-only; live ones are
//! changed with `+`/`-` or typed (`e`), show as pending, then "applied at step N" once the trainer acknowledges.

use super::pane::Ctx;
use super::text::fit;
use crate::preset::{self, Preset};
use crate::train::messages::LiveParam;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

pub use crate::preset::live::decade_step;

fn is_live(key: &str) -> bool {
    preset::live::is_live(key)
}

/// One field of the preset.
#[derive(Debug, Clone, PartialEq)]
pub struct HyperRow {
    pub key: String,
    /// The value in force, as text.
    pub value: String,
    /// The live value in force (None for restart-only fields).
    pub live: Option<LiveParam>,
    /// Sent, not yet acknowledged.
    pub pending: Option<LiveParam>,
    /// The step before which the last change took effect, and where it came from.
    pub applied: Option<(u64, String)>,
    /// A note: a rejection, or a restart-only value changed in the file.
    pub note: Option<String>,
}

#[derive(Debug, Clone)]
pub struct HyperPane {
    rows: Vec<HyperRow>,
    state: TableState,
    /// The text being typed for the selected row (`e`).
    pub editing: Option<String>,
    /// Why the last edit was refused, shown under the table until the next key.
    pub message: Option<String>,
    /// `tui --compare`: the reference run's label and its preset's values by key.
    reference: Option<(String, Vec<(String, String)>)>,
    /// The AGC what-if of the lambda being edited (`would clip: layer X · net Y`), shown on the `agc.lambda` row.
    pub whatif: Option<String>,
}

impl HyperPane {
    pub fn new(preset: &Preset) -> Self {
        let flat = flatten(preset);
        let text_of = |key: &str| flat.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        // Live fields first, in the live table's order, then every other field in schema order.
        let mut keys: Vec<&str> = preset::LIVE.iter().map(|s| s.key).collect();
        for f in preset::fields() {
            if !keys.contains(&f.name) && (is_live(f.name) || text_of(f.name).is_some()) {
                keys.push(f.name);
            }
        }
        keys.sort_by_key(|k| !is_live(k));
        let rows = keys
            .into_iter()
            .map(|key| HyperRow {
                key: key.to_string(),
                value: text_of(key).unwrap_or_default(),
                live: if is_live(key) {
                    preset::live_param(preset, key)
                } else {
                    None
                },
                pending: None,
                applied: None,
                note: None,
            })
            .collect();
        Self {
            rows,
            state: TableState::default().with_selected(Some(0)),
            editing: None,
            whatif: None,
            message: None,
            reference: None,
        }
    }

    /// `tui --compare`: rows whose value differs from `preset` (the reference run's) show its value.
    pub fn set_reference(&mut self, label: &str, preset: &Preset) {
        self.reference = Some((label.to_string(), flatten(preset)));
    }

    /// The reference preset's value of `key` when it differs from this row's (a key it lacks reads as `-`).
    pub fn reference_differs(&self, key: &str) -> Option<String> {
        let (_, values) = self.reference.as_ref()?;
        let row = self.row(key)?;
        let theirs = values
            .iter()
            .find(|(k, _)| k == key)
            .map_or_else(|| "-".to_string(), |(_, v)| v.clone());
        (theirs != row.value).then_some(theirs)
    }

    /// The keys where the live preset and the reference differ, in row order.
    pub fn reference_differences(&self) -> Vec<(String, String)> {
        self.rows
            .iter()
            .filter_map(|r| Some((r.key.clone(), self.reference_differs(&r.key)?)))
            .collect()
    }

    pub fn rows(&self) -> &[HyperRow] {
        &self.rows
    }

    pub fn row(&self, key: &str) -> Option<&HyperRow> {
        self.rows.iter().find(|r| r.key == key)
    }

    fn row_mut(&mut self, key: &str) -> Option<&mut HyperRow> {
        self.rows.iter_mut().find(|r| r.key == key)
    }

    pub fn selected_row(&self) -> Option<&HyperRow> {
        self.state.selected().and_then(|i| self.rows.get(i))
    }

    pub fn select(&mut self, delta: isize) {
        let n = self.rows.len();
        if n == 0 {
            return;
        }
        let cur = self.state.selected().unwrap_or(0) as isize;
        self.state
            .select(Some((cur + delta).clamp(0, n as isize - 1) as usize));
    }

    pub fn select_key(&mut self, key: &str) {
        if let Some(i) = self.rows.iter().position(|r| r.key == key) {
            self.state.select(Some(i));
        }
    }

    /// The live values in force (for writing back to the preset).
    pub fn live_values(&self) -> Vec<LiveParam> {
        self.rows.iter().filter_map(|r| r.live).collect()
    }

    /// The next value of the selected row one step up or down, or why there is none.
    pub fn stepped(&self, up: bool) -> Result<LiveParam, String> {
        let row = self.selected_row().ok_or("no field selected")?;
        let cur = row
            .pending
            .or(row.live)
            .ok_or_else(|| restart_only(&row.key))?;
        let next = cur.stepped(up);
        preset::check_live(next)?;
        Ok(next)
    }

    /// The typed text stepped one step up or down (the field's own stepping), still unapplied; the text stays as
    /// it was when it does not parse.
    pub fn step_typed(&mut self, up: bool) -> Result<(), String> {
        let text = self.editing.clone().ok_or("not editing")?;
        let next = self.parse_selected(&text)?.stepped(up);
        preset::check_live(next)?;
        self.editing = Some(next.value_string());
        Ok(())
    }

    /// Parse typed text for the selected row.
    pub fn parse_selected(&self, text: &str) -> Result<LiveParam, String> {
        let row = self.selected_row().ok_or("no field selected")?;
        let template = row.live.ok_or_else(|| restart_only(&row.key))?;
        parse_live(template, text)
    }

    /// A change was sent to the trainer.
    pub fn mark_pending(&mut self, p: LiveParam) {
        if let Some(r) = self.row_mut(p.key()) {
            r.pending = Some(p);
            r.note = None;
        }
    }

    /// The trainer applied a change before `step`; returns the previous value, for the log.
    pub fn on_applied(&mut self, p: LiveParam, step: u64, origin: &str) -> Option<String> {
        let r = self.row_mut(p.key())?;
        let old = r.value.clone();
        r.value = p.value_string();
        r.live = Some(p);
        // A later change still in flight stays pending; this one is done.
        if r.pending == Some(p) {
            r.pending = None;
        }
        r.applied = Some((step, origin.to_string()));
        r.note = None;
        Some(old)
    }

    /// The trainer refused a change to `what` (a key, or a description starting with one).
    pub fn on_rejected(&mut self, what: &str, reason: &str) {
        let key = self
            .rows
            .iter()
            .filter(|r| r.live.is_some())
            .map(|r| r.key.clone())
            .find(|k| what.contains(k.as_str()));
        if let Some(r) = key.and_then(|k| self.row_mut(&k)) {
            r.pending = None;
            r.note = Some(format!("rejected: {reason}"));
        }
    }

    /// The preset file now says `value` for a restart-only field.
    pub fn note_restart_only(&mut self, key: &str, value: &str) {
        if let Some(r) = self.row_mut(key) {
            r.note = Some(if r.value == value {
                String::new()
            } else {
                format!("file: {value} (restart)")
            })
            .filter(|s| !s.is_empty());
        }
    }

    /// The value in force for `key`, as text.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.row(key).map(|r| r.value.as_str())
    }

    pub fn render(&mut self, frame: &mut Frame, area: Rect, ctx: Ctx) {
        let hints = Line::from(" [e]dit [+/-] [w]rite back ");
        let title = match &self.reference {
            Some((label, _)) => format!(
                " Hyperparameters (≠ {label}: {}) ",
                self.reference_differences().len()
            ),
            None => " Hyperparameters ".to_string(),
        };
        let block = ctx.block(Line::from(title), Some(hints), area.width);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        if inner.width < 2 || inner.height < 1 {
            return;
        }
        let theme = ctx.theme;
        let msg_h = u16::from(self.message.is_some() && inner.height > 2);
        let table_area = Rect {
            height: inner.height - msg_h,
            ..inner
        };
        let key_w = 18u16.min(inner.width / 2);
        let val_w = 10u16.min(inner.width.saturating_sub(key_w + 1));
        let kind_w = 4u16;
        let status_w = inner.width.saturating_sub(key_w + val_w + kind_w + 3);
        let selected = self.state.selected();
        let rows: Vec<Row> = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let editing = self.editing.as_ref().filter(|_| selected == Some(i));
                let value = match editing {
                    Some(text) => Line::from(vec![
                        Span::raw(text.clone()),
                        Span::styled("▏", theme.accent()),
                    ]),
                    None => Line::from(fit(&r.value, val_w as usize)),
                };
                let kind = if r.live.is_some() {
                    Span::styled("live", theme.good())
                } else {
                    Span::styled("rst", theme.dim())
                };
                let whatif = self.whatif.as_ref().filter(|_| r.key == "agc.lambda");
                let status = if let (Some(w), Some(_)) = (whatif, editing) {
                    Span::styled(w.clone(), theme.accent())
                } else if let (Some(w), Some(p)) = (whatif, r.pending) {
                    Span::styled(
                        format!("pending → {} · {w}", p.value_string()),
                        theme.warn(),
                    )
                } else if let Some(p) = r.pending {
                    Span::styled(format!("pending → {}", p.value_string()), theme.warn())
                } else if let Some(n) = &r.note {
                    Span::styled(n.clone(), theme.bad())
                } else if let Some(theirs) = self.reference_differs(&r.key) {
                    Span::styled(format!("≠ ref {theirs}"), theme.accent())
                } else if let Some((step, origin)) = &r.applied {
                    let from = if origin == "keys" {
                        String::new()
                    } else {
                        format!(" ({origin})")
                    };
                    Span::styled(format!("applied at step {step}{from}"), theme.good())
                } else if r.live.is_none() {
                    Span::styled("restart-only", theme.dim())
                } else {
                    Span::raw("")
                };
                let row = Row::new(vec![
                    Cell::from(fit(&r.key, key_w as usize)),
                    Cell::from(value),
                    Cell::from(kind),
                    Cell::from(status),
                ]);
                if r.live.is_none() {
                    row.style(theme.dim())
                } else {
                    row
                }
            })
            .collect();
        let mut table = Table::new(
            rows,
            [
                Constraint::Length(key_w),
                Constraint::Length(val_w),
                Constraint::Length(kind_w),
                Constraint::Length(status_w),
            ],
        )
        .column_spacing(1);
        if ctx.focused {
            table = table.row_highlight_style(theme.selected());
        }
        frame.render_stateful_widget(table, table_area, &mut self.state);
        if let (Some(m), 1) = (&self.message, msg_h) {
            let at = Rect {
                y: inner.y + inner.height - 1,
                height: 1,
                ..inner
            };
            frame.render_widget(Paragraph::new(m.clone()).style(theme.bad()), at);
        }
    }
}

fn restart_only(key: &str) -> String {
    format!("{key} is restart-only: edit the preset file and start a new run")
}

/// Every leaf field of the preset as (dotted key, value text), sections in schema order.
fn flatten(preset: &Preset) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(toml::Value::Table(root)) = toml::Value::try_from(preset) else {
        return out;
    };
    for section in ["model", "data", "optim", "agc", "run"] {
        if let Some(toml::Value::Table(t)) = root.get(section) {
            for (k, v) in t {
                out.push((format!("{section}.{k}"), value_text(v)));
            }
        }
    }
    if let Some(v) = root.get("extends") {
        out.push(("extends".into(), value_text(v)));
    }
    out
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => format!("{f}"),
        other => other.to_string(),
    }
}

/// Parse typed text as a new value of `template`'s parameter, range-checked by the preset's field table.
pub fn parse_live(template: LiveParam, text: &str) -> Result<LiveParam, String> {
    template.parse_as(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decades_step_along_one_two_five() {
        assert_eq!(decade_step(0.01, true, 1e-3), 0.02);
        assert_eq!(decade_step(0.02, true, 1e-3), 0.05);
        assert_eq!(decade_step(0.05, true, 1e-3), 0.1);
        assert_eq!(decade_step(0.01, false, 1e-3), 0.005);
        assert_eq!(decade_step(0.03, true, 1e-3), 0.05);
        assert_eq!(decade_step(0.03, false, 1e-3), 0.02);
        assert_eq!(decade_step(50.0, true, 1.0), 100.0);
        assert_eq!(decade_step(0.0, true, 1e-5), 1e-5);
        assert_eq!(decade_step(0.0, false, 1e-5), 0.0);
    }

    #[test]
    fn typed_values_are_range_checked() {
        let lambda = LiveParam::AgcLambda(0.01);
        assert_eq!(parse_live(lambda, " 0.02 "), Ok(LiveParam::AgcLambda(0.02)));
        assert!(parse_live(lambda, "0").is_err());
        assert!(parse_live(lambda, "abc")
            .unwrap_err()
            .contains("agc.lambda"));
        assert!(parse_live(LiveParam::Alpha(0.2), "1.5").is_err());
        assert_eq!(
            parse_live(LiveParam::AgcEnabled(true), "off"),
            Ok(LiveParam::AgcEnabled(false))
        );
        assert!(parse_live(LiveParam::StatsEvery(5), "0").is_err());
        let mut p = HyperPane::new(&Preset::default());
        p.select_key("data.batch_size");
        assert!(p.parse_selected("4").unwrap_err().contains("restart-only"));
    }

    #[test]
    fn rows_list_live_fields_first_then_the_rest() {
        let p = HyperPane::new(&Preset::default());
        assert_eq!(p.rows()[0].key, "agc.lambda");
        assert_eq!(p.rows()[0].live, Some(LiveParam::AgcLambda(0.01)));
        let bs = p.row("data.batch_size").unwrap();
        assert_eq!(bs.value, "64");
        assert!(bs.live.is_none());
        assert!(p.rows().len() > 20);
    }
}
