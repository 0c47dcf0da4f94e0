//! The layers pane marks frozen parameters (`model.freeze`): a ❄ before the name and `frozen` where the AGC
//! threshold would be.

mod tui_common;

use nfbench::train::messages::Event;
use nfbench::tui::Theme;
use tui_common::*;

#[test]
fn frozen_layers_are_marked_in_the_layers_pane() {
    let mut app = busy_app(Theme::colored());
    let mut stats = layers(350, 12, &[0.0]);
    stats.agc[0].frozen = true;
    stats.agc[0].clipped_by_agc = false;
    app.on_event(Event::Layers(Box::new(stats)));
    let ls = lines(&render(&mut app, 140, 42));
    let row = |name: &str| {
        ls.iter()
            .find(|l| l.contains(name))
            .cloned()
            .unwrap_or_default()
    };
    let frozen = row("stem.conv.w");
    assert!(
        frozen.contains("❄ stem.conv.w") && frozen.contains("frozen"),
        "{frozen}"
    );
    let other = row("s1.b0.conv2.w");
    assert!(!other.contains('❄') && !other.contains("frozen"), "{other}");
}
