//! Key and mouse handling: which commands each key sends and what it does to the state; no trainer involved.

mod tui_common;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use nfbench::preset::Preset;
use nfbench::train::messages::{Command, Event, LiveParam, RunState};
use nfbench::tui::{Action, App, Overlay, PaneId, PresetNotice, Theme};
use tui_common::*;

fn k(c: char) -> KeyEvent {
    KeyEvent::from(KeyCode::Char(c))
}

fn code(c: KeyCode) -> KeyEvent {
    KeyEvent::from(c)
}

fn ctrl_c() -> KeyEvent {
    KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)
}

fn send(c: Command) -> Vec<Action> {
    vec![Action::Send(c)]
}

fn set(p: LiveParam) -> Vec<Action> {
    send(Command::Set {
        params: vec![p],
        origin: "keys".into(),
    })
}

fn running_app() -> App {
    let mut app = App::new(
        &Preset::default(),
        "presets/default.toml".into(),
        Theme::plain(),
    );
    app.on_event(started(100));
    app.on_event(Event::State {
        state: RunState::Running,
        step: 0,
    });
    app
}

fn logged(app: &App, needle: &str) -> bool {
    app.events().lines().any(|l| l.text.contains(needle))
}

#[test]
fn space_pauses_and_resumes_and_n_steps_only_while_paused() {
    let mut app = running_app();
    assert_eq!(app.on_key(k(' ')), send(Command::Pause));
    assert_eq!(app.on_key(k('n')), vec![]);
    assert!(app
        .hyper()
        .message
        .as_deref()
        .unwrap_or("")
        .contains("while paused"));
    app.on_event(Event::State {
        state: RunState::Paused,
        step: 3,
    });
    assert_eq!(app.on_key(k('n')), send(Command::StepOnce));
    assert_eq!(app.on_key(k(' ')), send(Command::Resume));
    app.on_event(Event::State {
        state: RunState::Diverged,
        step: 9,
    });
    assert_eq!(app.on_key(k(' ')), send(Command::Resume));
    assert!(logged(&app, "diverged"));
}

#[test]
fn tab_and_shift_tab_cycle_the_focus() {
    let mut app = running_app();
    assert_eq!(app.focus(), PaneId::Loss);
    app.on_key(code(KeyCode::Tab));
    assert_eq!(app.focus(), PaneId::Agc);
    app.on_key(code(KeyCode::BackTab));
    app.on_key(code(KeyCode::BackTab));
    assert_eq!(app.focus(), PaneId::Events);
}

#[test]
fn plus_and_minus_step_the_selected_live_value_and_show_it_pending() {
    let mut app = running_app();
    // The default preset's lambda is 0.01; the first row is agc.lambda.
    assert_eq!(app.on_key(k('+')), set(LiveParam::AgcLambda(0.02)));
    assert_eq!(app.focus(), PaneId::Hyper);
    assert_eq!(
        app.hyper().row("agc.lambda").unwrap().pending,
        Some(LiveParam::AgcLambda(0.02))
    );
    // A second press steps from the pending value.
    assert_eq!(app.on_key(k('+')), set(LiveParam::AgcLambda(0.05)));
    app.on_event(Event::Applied {
        params: vec![LiveParam::AgcLambda(0.02)],
        origin: "keys".into(),
        step: 7,
    });
    let row = app.hyper().row("agc.lambda").unwrap();
    assert_eq!(
        row.pending,
        Some(LiveParam::AgcLambda(0.05)),
        "the later change is still in flight"
    );
    app.on_event(Event::Applied {
        params: vec![LiveParam::AgcLambda(0.05)],
        origin: "keys".into(),
        step: 8,
    });
    let row = app.hyper().row("agc.lambda").unwrap();
    assert_eq!(
        (row.pending, row.applied.clone()),
        (None, Some((8, "keys".to_string())))
    );
    assert_eq!(row.value, "0.05");
    assert_eq!(app.agc().lambda, 0.05);
    assert_eq!(
        app.preset().agc.lambda,
        0.05,
        "write-back sees the value in force"
    );
    assert!(logged(
        &app,
        "agc.lambda 0.02 → 0.05 applied at step 8 (keys)"
    ));
    // Down twice: 0.05 → 0.02 → 0.01.
    app.on_key(k('-'));
    assert_eq!(app.on_key(k('-')), set(LiveParam::AgcLambda(0.01)));
    // Alpha steps linearly and stays within (0, 1].
    app.on_key(code(KeyCode::Down));
    app.on_key(code(KeyCode::Down));
    assert_eq!(app.hyper().selected_row().unwrap().key, "model.alpha");
    assert_eq!(app.on_key(k('+')), set(LiveParam::Alpha(0.25)));
    // agc.enabled toggles.
    app.on_key(code(KeyCode::Up));
    assert_eq!(app.on_key(k('+')), set(LiveParam::AgcEnabled(false)));
}

#[test]
fn restart_only_fields_are_not_sent() {
    let mut app = running_app();
    app.set_focus(PaneId::Hyper);
    app.hyper_mut().select_key("data.batch_size");
    assert_eq!(app.on_key(k('+')), vec![]);
    assert!(app
        .hyper()
        .message
        .as_deref()
        .unwrap_or("")
        .contains("restart-only"));
    assert_eq!(app.on_key(k('e')), vec![]);
    assert!(app.hyper().editing.is_none());
}

#[test]
fn typing_a_value_sends_it_and_bad_text_keeps_the_editor_open() {
    let mut app = running_app();
    assert_eq!(app.on_key(k('e')), vec![]);
    assert_eq!(app.hyper().editing.as_deref(), Some("0.01"));
    for _ in 0..4 {
        app.on_key(code(KeyCode::Backspace));
    }
    for c in "abc".chars() {
        app.on_key(k(c));
    }
    assert_eq!(app.on_key(code(KeyCode::Enter)), vec![]);
    assert!(app.hyper().editing.is_some());
    assert!(app
        .hyper()
        .message
        .as_deref()
        .unwrap_or("")
        .contains("agc.lambda"));
    for _ in 0..3 {
        app.on_key(code(KeyCode::Backspace));
    }
    for c in "-1".chars() {
        app.on_key(k(c));
    }
    assert_eq!(app.on_key(code(KeyCode::Enter)), vec![], "out of range");
    for _ in 0..2 {
        app.on_key(code(KeyCode::Backspace));
    }
    // While editing, q and space are text, not commands.
    app.on_key(k('q'));
    app.on_key(code(KeyCode::Backspace));
    for c in "0.003".chars() {
        app.on_key(k(c));
    }
    assert_eq!(
        app.on_key(code(KeyCode::Enter)),
        set(LiveParam::AgcLambda(0.003))
    );
    assert!(app.hyper().editing.is_none());
    app.on_key(k('e'));
    app.on_key(code(KeyCode::Esc));
    assert!(app.hyper().editing.is_none());
}

#[test]
fn q_asks_and_y_stops_with_a_final_checkpoint() {
    let mut app = running_app();
    assert_eq!(app.on_key(k('q')), vec![]);
    assert_eq!(app.overlay(), Overlay::ConfirmQuit);
    assert_eq!(app.on_key(k('n')), vec![]);
    assert_eq!(app.overlay(), Overlay::None);
    assert!(!app.is_quitting());
    app.on_key(k('q'));
    assert_eq!(app.on_key(k('y')), send(Command::Stop { checkpoint: true }));
    assert!(app.is_quitting());
    assert_eq!(app.status().state_label(), "STOPPING");
    // Once quitting, further commands are refused.
    assert_eq!(app.on_key(k('c')), vec![]);
    app.on_event(Event::Finished { step: 12 });
    assert!(app.trainer_done());
}

#[test]
fn ctrl_c_stops_cleanly_and_a_second_leaves_at_once() {
    let mut app = running_app();
    assert_eq!(
        app.on_key(ctrl_c()),
        send(Command::Stop { checkpoint: true })
    );
    assert_eq!(app.on_key(ctrl_c()), vec![Action::Exit]);
}

#[test]
fn single_keys_send_their_commands_and_toggle_views() {
    let mut app = running_app();
    assert_eq!(app.on_key(k('c')), send(Command::CheckpointNow));
    assert_eq!(app.on_key(k('v')), send(Command::EvaluateNow));
    match app.on_key(k('w')).as_slice() {
        [Action::WriteBack(p)] => assert_eq!(p.agc.lambda, 0.01),
        other => panic!("{other:?}"),
    }
    assert!(!app.loss().log_scale);
    app.on_key(k('l'));
    assert!(app.loss().log_scale);
    let sort = app.agc().sort;
    app.on_key(k('s'));
    assert_ne!(app.agc().sort, sort);
    app.on_key(k('z'));
    assert!(app.zoomed());
    app.on_key(code(KeyCode::Esc));
    assert!(!app.zoomed());
    app.on_key(k('?'));
    assert_eq!(app.overlay(), Overlay::Help);
    assert_eq!(
        app.on_key(k('q')),
        vec![],
        "any key closes help, and only closes it"
    );
    assert_eq!(app.overlay(), Overlay::None);
}

#[test]
fn a_replay_is_read_only_and_seeks_with_arrows() {
    let mut app = App::replay(&Preset::default(), "runs/x".into(), Theme::plain());
    assert_eq!(app.on_key(k(' ')), vec![]);
    assert_eq!(app.on_key(k('+')), vec![]);
    assert_eq!(app.on_key(k('w')), vec![]);
    assert!(logged(&app, "read-only"));
    assert_eq!(app.on_key(code(KeyCode::Left)), vec![Action::Seek(-1)]);
    assert_eq!(app.on_key(code(KeyCode::Right)), vec![Action::Seek(1)]);
    assert_eq!(app.on_key(k('q')), vec![Action::Exit]);
}

#[test]
fn preset_reloads_send_changed_live_values_and_report_the_rest() {
    let mut app = running_app();
    let actions = app.on_preset(PresetNotice::Changed {
        live: vec![LiveParam::AgcLambda(0.01), LiveParam::AgcLambda(0.02)],
        restart_only: vec![("data.batch_size".into(), "128".into())],
    });
    assert_eq!(
        actions,
        send(Command::Set {
            params: vec![LiveParam::AgcLambda(0.02)],
            origin: "preset reload".into()
        })
    );
    assert!(logged(
        &app,
        "preset reloaded: agc.lambda 0.01 → 0.02 (pending)"
    ));
    assert!(logged(&app, "data.batch_size 64 → 128"));
    assert_eq!(
        app.hyper().row("data.batch_size").unwrap().note.as_deref(),
        Some("file: 128 (restart)")
    );
    app.on_event(Event::Applied {
        params: vec![LiveParam::AgcLambda(0.02)],
        origin: "preset reload".into(),
        step: 40,
    });
    assert!(logged(&app, "applied at step 40 (preset reload)"));
    // Unchanged values send nothing; an invalid file is reported and keeps the old values.
    assert_eq!(
        app.on_preset(PresetNotice::Changed {
            live: vec![LiveParam::AgcLambda(0.02)],
            restart_only: vec![]
        }),
        vec![]
    );
    assert_eq!(
        app.on_preset(PresetNotice::Invalid(
            "presets/default.toml:14:9 expected a number".into()
        )),
        vec![]
    );
    assert!(logged(&app, "preset rejected: presets/default.toml:14:9"));
    let t = text(&render(&mut app, 140, 40));
    assert!(t.contains("INVALID"), "{t}");
}

#[test]
fn rejected_changes_clear_pending_and_show_why() {
    let mut app = running_app();
    app.on_key(k('+'));
    app.on_event(Event::Rejected {
        what: "agc.lambda".into(),
        reason: "out of range".into(),
        step: 5,
    });
    let row = app.hyper().row("agc.lambda").unwrap();
    assert_eq!(row.pending, None);
    assert!(row.note.as_deref().unwrap_or("").contains("out of range"));
    assert!(logged(&app, "rejected at step 5"));
}

#[test]
fn a_click_focuses_the_pane_under_the_pointer() {
    let mut app = busy_app(Theme::plain());
    render(&mut app, 120, 40);
    let screen = app.last_screen().unwrap().clone();
    let (_, r) = screen
        .panes
        .iter()
        .find(|(p, _)| *p == PaneId::Spp)
        .unwrap();
    let click = MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: r.x + 2,
        row: r.y + 2,
        modifiers: KeyModifiers::NONE,
    };
    app.on_mouse(click);
    assert_eq!(app.focus(), PaneId::Spp);
}

fn attached_app(controls: bool) -> App {
    let mut app = App::attached(
        &Preset::default(),
        "presets/default.toml".into(),
        Theme::plain(),
        controls,
    );
    app.on_event(started(100));
    app.on_event(Event::State {
        state: RunState::Running,
        step: 0,
    });
    app
}

#[test]
fn an_attached_viewer_commands_nothing_and_q_leaves_at_once() {
    let mut app = attached_app(false);
    for key in [k(' '), k('c'), k('+'), k('w'), k('n')] {
        assert_eq!(app.on_key(key), vec![], "{key:?}");
    }
    assert!(logged(
        &app,
        "read-only: another workbench holds the controls"
    ));
    // A preset reload is not sent either: the holder of the controls decides.
    let actions = app.on_preset(PresetNotice::Changed {
        live: vec![LiveParam::AgcLambda(0.5)],
        restart_only: vec![],
    });
    assert_eq!(actions, vec![]);
    assert_eq!(app.on_key(k('q')), vec![Action::Exit]);
    assert_eq!(
        app.interrupt(),
        vec![Action::Exit],
        "ctrl-c leaves, never stops the run"
    );
}

#[test]
fn an_attached_workbench_with_the_controls_commands_and_d_leaves_the_run_going() {
    let mut app = attached_app(true);
    assert_eq!(app.on_key(k(' ')), send(Command::Pause));
    assert_eq!(app.on_key(k('d')), vec![Action::Exit]);
    // `q` still stops the run, as in the workbench that started it.
    assert_eq!(app.on_key(k('q')), vec![]);
    assert_eq!(app.overlay(), Overlay::ConfirmQuit);
    // A local workbench has no `d`: it would leave the run without a terminal.
    let mut local = running_app();
    assert_eq!(local.on_key(k('d')), vec![]);
}
