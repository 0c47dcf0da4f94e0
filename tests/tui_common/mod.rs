//! Synthetic telemetry and buffer helpers shared by the TUI tests.
#![allow(dead_code)]

use nfbench::preset::Preset;
use nfbench::train::messages::{
    AgcLayerStats, EvalMetrics, Event, LayerStats, RunState, SppBlockStats, StepMetrics,
};
use nfbench::tui::{App, Theme};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::Terminal;
use std::path::PathBuf;

pub fn step(step: u64, loss: f64, lambda: f64) -> StepMetrics {
    StepMetrics {
        step,
        epoch: step as f64 / 125.0,
        loss,
        train_top1: 0.3,
        lr: 0.1,
        lambda,
        alpha: 0.2,
        grad_norm: 1.0,
        clipped_fraction: 0.073,
        images_per_sec: 212.0,
        step_ms: 300.0,
    }
}

/// AGC stats for `n` layers; layer i clips `fractions[i % len]` of its units.
pub fn layers(step: u64, n: usize, fractions: &[f64]) -> LayerStats {
    let agc = (0..n)
        .map(|i| AgcLayerStats {
            name: if i == 0 {
                "stem.conv.w".into()
            } else {
                format!("s{}.b{}.conv{}.w", i / 4 + 1, (i / 2) % 2, i % 2 + 1)
            },
            weight_norm: 4.1 - i as f64 * 0.1,
            grad_norm: 0.091,
            max_ratio: 0.05,
            mean_ratio: 0.02,
            clipped_fraction: fractions[i % fractions.len()],
            units: 16,
            clipped_by_agc: i + 1 != n,
            frozen: false,
            ratio_counts: Vec::new(),
        })
        .collect();
    let spp = (0..8)
        .map(|i| SppBlockStats {
            name: format!("s{}.b{}", i / 2 + 1, i % 2),
            predicted_var: 1.0 + 0.04 * ((i % 2) + 1) as f64,
            avg_sq_mean: 0.003,
            avg_var: 1.02 + 0.01 * i as f64,
            res_avg_var: 0.98,
        })
        .collect();
    LayerStats {
        step,
        agc,
        spp,
        total_clipped_fraction: 0.073,
    }
}

pub fn started(steps: u64) -> Event {
    Event::Started(nfbench::train::messages::RunStart {
        model: "nf_resnet_cifar".into(),
        device: "cpu".into(),
        precision: "f32".into(),
        params: 270_000,
        steps,
        start_step: 0,
        run_dir: Some(PathBuf::from("runs/default-20261126-115812")),
    })
}

/// A workbench that has seen a run of `steps` steps with statistics every 50 and an evaluation.
pub fn busy_app(theme: Theme) -> App {
    let preset = Preset::default();
    let mut app = App::new(&preset, PathBuf::from("presets/default.toml"), theme);
    app.on_event(started(3000));
    app.on_event(Event::State {
        state: RunState::Running,
        step: 0,
    });
    for s in 1..=300u64 {
        app.on_event(Event::Step(step(
            s,
            2.3 * (-(s as f64) / 200.0).exp() + 0.5,
            0.01,
        )));
        if s % 50 == 0 {
            app.on_event(Event::Layers(Box::new(layers(
                s,
                12,
                &[0.0, 0.5, 1.0, 0.073],
            ))));
        }
    }
    app.on_event(Event::Eval(EvalMetrics {
        step: 250,
        loss: 1.2,
        top1: 0.582,
        top5: 0.9,
        images: 2000,
        ema: false,
    }));
    app.on_event(Event::Checkpoint {
        path: PathBuf::from("runs/x/checkpoints/step-250.safetensors"),
        step: 250,
    });
    app
}

pub fn render(app: &mut App, w: u16, h: u16) -> Buffer {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test backend");
    t.draw(|f| app.render(f)).expect("draw");
    t.backend().buffer().clone()
}

/// The buffer as lines of text.
pub fn lines(buf: &Buffer) -> Vec<String> {
    let a = buf.area;
    (a.y..a.y + a.height)
        .map(|y| {
            (a.x..a.x + a.width)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect()
        })
        .collect()
}

pub fn text(buf: &Buffer) -> String {
    lines(buf).join("\n")
}
