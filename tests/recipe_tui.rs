//! The workbench shows the recipe: which augmentations are on, that training top-1 on mixed batches is counted
//! against the dominant label, and both validation curves (EMA and raw) when both are evaluated.

mod tui_common;

use nfbench::preset::schema::Mixing;
use nfbench::preset::Preset;
use nfbench::train::messages::{EvalMetrics, Event};
use nfbench::tui::{App, Theme};
use tui_common::{render, started, step, text};

fn eval(step: u64, top1: f64, ema: bool) -> Event {
    Event::Eval(EvalMetrics {
        step,
        loss: 1.0,
        top1,
        top5: 0.9,
        images: 500,
        ema,
    })
}

fn app(preset: &Preset) -> App {
    let mut app = App::new(preset, "recipe.toml".into(), Theme::default());
    app.on_event(started(100));
    for s in 1..=100 {
        app.on_event(Event::Step(step(s, 2.0 - s as f64 / 100.0, 0.01)));
    }
    app
}

#[test]
fn the_loss_pane_names_the_recipe_and_the_dominant_label_rule() {
    let mut p = Preset::default();
    p.augment.randaugment_layers = 4;
    p.augment.randaugment_magnitude = 5;
    p.augment.mixing = Mixing::MixupCutmix;
    let mut a = app(&p);
    let t = text(&render(&mut a, 200, 50));
    assert!(t.contains("train top-1 (vs dominant label) 30.0%"), "{t}");
    assert!(
        t.contains("RandAugment 4x5 after MixUp(0.2)/CutMix 50:50"),
        "{t}"
    );
    // Without mixing the rule is not claimed.
    let mut plain = app(&Preset::default());
    let t = text(&render(&mut plain, 200, 50));
    assert!(t.contains("train top-1 30.0%"), "{t}");
    assert!(!t.contains("dominant"), "{t}");
}

#[test]
fn both_validation_curves_are_drawn_when_both_weights_are_evaluated() {
    let mut a = app(&Preset::default());
    for (s, raw, ema) in [
        (25, 0.2, 0.1),
        (50, 0.4, 0.3),
        (75, 0.5, 0.5),
        (100, 0.55, 0.6),
    ] {
        a.on_event(eval(s, raw, false));
        a.on_event(eval(s, ema, true));
    }
    let (ema, raw) = a.loss().last_val();
    assert_eq!((ema, raw), (Some(0.6), Some(0.55)));
    let t = text(&render(&mut a, 200, 50));
    assert!(t.contains("val top-1 EMA 60.0% raw 55.0%"), "{t}");
    assert!(
        t.contains("val top-1 EMA") && t.contains("val top-1 raw"),
        "the legend names both: {t}"
    );
    // Only EMA rows: one curve, marked as the EMA in the title.
    let mut b = app(&Preset::default());
    b.on_event(eval(50, 0.4, true));
    assert_eq!(b.loss().last_val(), (Some(0.4), None));
    let t = text(&render(&mut b, 200, 50));
    assert!(t.contains("val top-1 (EMA) 40.0%"), "{t}");
}
