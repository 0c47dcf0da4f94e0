//! Render tests: the workbench drawn from synthetic telemetry into ratatui's TestBackend.

mod tui_common;

use nfbench::train::messages::{Event, LiveParam};
use nfbench::tui::{App, PaneId, Theme};
use ratatui::style::Color;
use tui_common::*;

#[test]
fn the_wide_screen_shows_every_pane_with_its_values() {
    let mut app = busy_app(Theme::colored());
    let buf = render(&mut app, 140, 42);
    let t = text(&buf);
    for needle in [
        "RUNNING",
        "step 300/3000",
        "epoch 2.4",
        "212 img/s",
        "ETA",
        "presets/default.toml",
        " Loss ",
        "val top-1 58.2%",
        " AGC  λ=0.0100",
        "clipped 7.3% of units",
        "stem.conv.w",
        "‖G‖/‖W‖",
        "λ·max(‖W‖,ε)",
        "clip%",
        "heat (→ now)",
        "Signal propagation (every 50 steps) @300",
        "avg_var",
        "s1.b0",
        "Hyperparameters",
        "agc.lambda",
        "restart-only",
        "model.name",
        " Events ",
        "checkpoint at step 250",
        "eval at step 250",
        "q quit",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in\n{t}");
    }
}

#[test]
fn the_status_bar_shows_device_precision_and_memory_in_use() {
    let mut app = busy_app(Theme::colored());
    app.on_event(Event::Started(nfbench::train::messages::RunStart {
        model: "nf_resnet50".into(),
        device: "cuda:0 NVIDIA H100 80GB HBM3".into(),
        precision: "bf16".into(),
        params: 25_557_048,
        steps: 3000,
        start_step: 0,
        run_dir: None,
    }));
    app.on_event(Event::Memory {
        step: 300,
        memory: nfbench::train::device::MemoryUse {
            used_bytes: 12 << 30,
            total_bytes: 80 << 30,
        },
    });
    let t = text(&render(&mut app, 200, 42));
    assert!(
        t.contains("cuda:0 NVIDIA H100 80GB HBM3 bf16 12.0/80.0 GiB"),
        "{t}"
    );
}

#[test]
fn the_heat_map_shows_each_layers_recent_clip_fractions() {
    let mut app = busy_app(Theme::colored());
    let buf = render(&mut app, 140, 42);
    let ls = lines(&buf);
    // Layer 0 always clips 0 (·), layer 1 half (▄), layer 2 everything (█); six snapshots each, newest right.
    let row = |name: &str| {
        ls.iter()
            .find(|l| l.contains(name))
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        row("stem.conv.w").contains("······"),
        "{}",
        row("stem.conv.w")
    );
    assert!(
        row("s1.b0.conv2.w").contains("▄▄▄▄▄▄"),
        "{}",
        row("s1.b0.conv2.w")
    );
    assert!(
        row("s1.b1.conv1.w").contains("██████"),
        "{}",
        row("s1.b1.conv1.w")
    );
    // Hot cells are red, cold ones are not.
    let (y, line) = ls
        .iter()
        .enumerate()
        .find(|(_, l)| l.contains("s1.b1.conv1.w"))
        .unwrap();
    let x = line.chars().position(|c| c == '█').unwrap() as u16;
    assert_eq!(buf[(x, y as u16)].fg, Color::Red);
    // The excluded classifier shows no threshold.
    assert!(ls.iter().any(|l| l.contains("excluded")));
}

#[test]
fn eighty_by_twenty_four_is_usable() {
    let mut app = busy_app(Theme::colored());
    let t = text(&render(&mut app, 80, 24));
    for needle in [
        "RUNNING",
        "step 300/3000",
        "Loss",
        "AGC",
        "Signal",
        "Hyperparameters",
        "Events",
        "agc.lambda",
        "clip%",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in\n{t}");
    }
}

#[test]
fn no_size_panics_and_nothing_is_drawn_outside() {
    let mut app = busy_app(Theme::colored());
    let sizes = (1..=40u16).flat_map(|w| (1..=20u16).map(move |h| (w, h)));
    let big = [
        (80, 24),
        (100, 30),
        (120, 40),
        (200, 60),
        (300, 100),
        (59, 17),
        (60, 18),
        (119, 29),
        (120, 30),
    ];
    for (w, h) in sizes.chain(big) {
        for zoom in [false, true] {
            app.set_zoom(zoom);
            for focus in PaneId::ALL {
                app.set_focus(focus);
                let buf = render(&mut app, w, h);
                assert_eq!(buf.area.width, w);
            }
        }
    }
    // Overlays and an empty app too.
    app.set_zoom(false);
    app.on_key(key('?'));
    let mut empty = App::new(&Default::default(), "p.toml".into(), Theme::plain());
    for (w, h) in (1..=30u16).flat_map(|w| (1..=12u16).map(move |h| (w, h))) {
        render(&mut app, w, h);
        render(&mut empty, w, h);
    }
}

#[test]
fn narrow_terminals_show_the_focused_pane_alone() {
    let mut app = busy_app(Theme::colored());
    app.set_focus(PaneId::Agc);
    let t = text(&render(&mut app, 50, 16));
    assert!(t.contains("AGC") && t.contains("2/5"), "{t}");
    assert!(!t.contains("Hyperparameters"));
    app.on_key(tab());
    let t = text(&render(&mut app, 50, 16));
    assert!(t.contains("Signal propagation"), "{t}");
}

#[test]
fn no_color_draws_without_colours() {
    let mut app = busy_app(Theme::plain());
    let buf = render(&mut app, 140, 42);
    for cell in buf.content() {
        assert!(
            cell.fg == Color::Reset && cell.bg == Color::Reset,
            "{cell:?}"
        );
    }
    assert!(text(&buf).contains("█"));
}

#[test]
fn an_applied_change_shows_in_the_agc_title_hyper_pane_and_log() {
    let mut app = busy_app(Theme::colored());
    app.set_focus(PaneId::Hyper);
    let actions = app.on_key(key('+'));
    assert_eq!(actions.len(), 1);
    let t = text(&render(&mut app, 140, 42));
    assert!(t.contains("pending → 0.02"), "{t}");
    app.on_event(Event::Applied {
        params: vec![LiveParam::AgcLambda(0.02)],
        origin: "keys".into(),
        step: 301,
    });
    let t = text(&render(&mut app, 140, 42));
    assert!(t.contains("AGC  λ=0.0200"), "{t}");
    assert!(t.contains("applied at step 301"), "{t}");
    assert!(
        t.contains("agc.lambda 0.01 → 0.02 applied at step 301 (keys)"),
        "{t}"
    );
}

#[test]
fn log_scale_and_window_toggle_show_in_the_loss_pane() {
    let mut app = busy_app(Theme::colored());
    let t = text(&render(&mut app, 140, 42));
    assert!(t.contains("[l] lin [a] all"));
    app.on_key(key('l'));
    app.on_key(key('a'));
    let t = text(&render(&mut app, 140, 42));
    assert!(t.contains("[l] log [a] last 500"), "{t}");
}

fn key(c: char) -> crossterm::event::KeyEvent {
    crossterm::event::KeyEvent::from(crossterm::event::KeyCode::Char(c))
}

fn tab() -> crossterm::event::KeyEvent {
    crossterm::event::KeyEvent::from(crossterm::event::KeyCode::Tab)
}
