//! `tui --compare`: the reference run's loss and validation curves are drawn with the live ones, a legend names
//! both, and the hyperparameter pane marks the fields whose values differ from the reference preset.

mod tui_common;

use nfbench::preset::Preset;
use nfbench::train::messages::EvalMetrics;
use nfbench::tui::loss::Reference;
use nfbench::tui::Theme;
use ratatui::style::Color;
use tui_common::*;

fn reference() -> (Reference, Preset) {
    // A slower run over more steps (so its curve reaches past the live one).
    let steps: Vec<_> = (1..=600u64)
        .map(|s| step(s, 2.3 * (-(s as f64) / 400.0).exp() + 0.8, 0.04))
        .collect();
    let evals = vec![
        EvalMetrics {
            step: 250,
            loss: 1.6,
            top1: 0.41,
            top5: 0.8,
            images: 2000,
            ema: false,
        },
        EvalMetrics {
            step: 500,
            loss: 1.4,
            top1: 0.47,
            top5: 0.85,
            images: 2000,
            ema: false,
        },
    ];
    let mut preset = Preset::default();
    preset.agc.lambda = 0.04;
    preset.data.batch_size = 256;
    (Reference::new("baseline", &steps, &evals), preset)
}

#[test]
fn the_reference_curves_legend_and_preset_differences_are_on_screen() {
    let mut app = busy_app(Theme::colored());
    let (r, preset) = reference();
    app.set_reference(r, &preset);
    let buf = render(&mut app, 140, 42);
    let t = text(&buf);
    for needle in [
        "ref baseline",
        "ref baseline val",
        "smoothed",
        "val top-1",
        "Hyperparameters (≠ baseline: 2)",
        "≠ ref 0.04",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in\n{t}");
    }
    // The reference curve is drawn (magenta braille) in the loss pane, to the right of the live run's last
    // step (600 reference steps against 300 live ones: the x axis spans both).
    let loss_rows = lines(&buf);
    let loss_top = loss_rows.iter().position(|l| l.contains(" Loss ")).unwrap();
    let magenta = (0..buf.area.width).any(|x| {
        (loss_top as u16 + 1..loss_top as u16 + 15).any(|y| {
            let c = &buf[(x, y)];
            c.fg == Color::Magenta
                && c.symbol()
                    .chars()
                    .all(|ch| ('\u{2800}'..='\u{28FF}').contains(&ch))
        })
    });
    assert!(magenta, "no reference curve in\n{t}");
    assert!(
        t.contains("600"),
        "the x axis does not reach the reference's last step\n{t}"
    );
    let diffs = app.hyper().reference_differences();
    assert_eq!(
        diffs,
        vec![
            ("agc.lambda".to_string(), "0.04".to_string()),
            ("data.batch_size".to_string(), "256".to_string())
        ]
    );
}

#[test]
fn without_a_reference_nothing_changes() {
    let mut app = busy_app(Theme::colored());
    let t = text(&render(&mut app, 140, 42));
    assert!(!t.contains("ref ") && !t.contains('≠'), "{t}");
    assert!(app.hyper().reference_differences().is_empty());
}
