//! The event loop against a scripted stand-in trainer on a TestBackend: keys in, commands out, acknowledgements
//! shown, a clean stop after a final checkpoint, and the preset written back.

mod tui_common;

use crossbeam::channel::{self, Receiver, Sender};
use crossterm::event::{Event as Input, KeyCode, KeyEvent};
use nfbench::preset::Preset;
use nfbench::train::messages::{Command, Event, LiveParam, RunState};
use nfbench::tui::{run_loop, App, End, InputSource, Link, PresetNotice, Theme};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tui_common::*;

/// Input the test feeds through a channel (waiting on it is the loop's frame timer; no sleeps).
struct ChannelInput(Receiver<Input>);

impl InputSource for ChannelInput {
    fn next(&mut self, timeout: Duration) -> std::io::Result<Option<Input>> {
        Ok(self.0.recv_timeout(timeout).ok())
    }
}

/// A trainer that steps whenever asked for anything, acknowledges `Set`, and stops on `Stop`.
fn fake_trainer(
    commands: Receiver<Command>,
    control: Sender<Event>,
    telemetry: Sender<Event>,
) -> Vec<Command> {
    let mut seen = Vec::new();
    let mut step = 0u64;
    let mut lambda = 0.01;
    let _ = control.send(started(1000));
    let _ = control.send(Event::State {
        state: RunState::Running,
        step,
    });
    while let Ok(c) = commands.recv() {
        step += 1;
        if let Command::Set { params, .. } = &c {
            for p in params {
                if let LiveParam::AgcLambda(v) = p {
                    lambda = *v;
                }
            }
        }
        let _ = telemetry.send(Event::Step(step_metrics(step, lambda)));
        match &c {
            Command::Set { params, origin } => {
                let _ = control.send(Event::Applied {
                    params: params.clone(),
                    origin: origin.clone(),
                    step,
                });
            }
            Command::Stop { checkpoint } => {
                if *checkpoint {
                    let _ = control.send(Event::Checkpoint {
                        path: PathBuf::from("ckpt/final.safetensors"),
                        step,
                    });
                }
                let _ = control.send(Event::State {
                    state: RunState::Stopped,
                    step,
                });
                let _ = control.send(Event::Finished { step });
                seen.push(c);
                break;
            }
            _ => {}
        }
        seen.push(c);
    }
    seen
}

fn step_metrics(s: u64, lambda: f64) -> nfbench::train::messages::StepMetrics {
    step(s, 2.0 / s as f64, lambda)
}

#[test]
fn keys_drive_the_trainer_and_quit_waits_for_its_final_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let preset_path = dir.path().join("p.toml");
    std::fs::write(&preset_path, "[agc]\nlambda = 0.01 # threshold\n").unwrap();

    let (cmd_tx, cmd_rx) = channel::unbounded();
    let (ctl_tx, ctl_rx) = channel::unbounded();
    let (tel_tx, tel_rx) = channel::bounded(16);
    let (key_tx, key_rx) = channel::unbounded();
    let (reload_tx, reload_rx) = channel::unbounded();
    let trainer = std::thread::spawn(move || fake_trainer(cmd_rx, ctl_tx, tel_tx));

    // Raise lambda, write it back, ask for a checkpoint, then quit and confirm.
    for key in ['+', 'c', 'q', 'y'] {
        key_tx
            .send(Input::Key(KeyEvent::from(KeyCode::Char(key))))
            .unwrap();
    }
    // A reload of the file with the same lambda must send nothing.
    reload_tx
        .send(PresetNotice::Changed {
            live: vec![LiveParam::AgcLambda(0.01)],
            restart_only: vec![],
        })
        .unwrap();

    let mut app = App::new(&Preset::default(), preset_path.clone(), Theme::plain());
    let mut terminal = Terminal::new(TestBackend::new(130, 40)).unwrap();
    let mut tapped = 0usize;
    let quit = AtomicBool::new(false);
    let mut link = Link {
        commands: cmd_tx,
        events: ctl_rx,
        telemetry: Some(tel_rx),
        reloads: Some(Box::new(move || reload_rx.try_iter().collect())),
        preset_path: preset_path.clone(),
        tap: Some(Box::new(|_: &Event| {
            tapped += 1;
            None
        })),
        quit_flag: Some(&quit),
        hangup_flag: None,
    };
    let outcome = run_loop(
        &mut terminal,
        &mut app,
        &mut link,
        &mut ChannelInput(key_rx),
    )
    .unwrap();
    drop(link);
    let seen = trainer.join().unwrap();

    assert_eq!(outcome.state, RunState::Stopped);
    assert_eq!(outcome.end, End::Quit);
    assert_eq!(
        seen,
        vec![
            Command::Set {
                params: vec![LiveParam::AgcLambda(0.02)],
                origin: "keys".into()
            },
            Command::CheckpointNow,
            Command::Stop { checkpoint: true },
        ]
    );
    assert!(tapped >= 5, "the recorder tap saw {tapped} events");
    let screen = text(terminal.backend().buffer());
    assert!(screen.contains("STOPPED"), "{screen}");
    assert!(screen.contains("applied at step 1"), "{screen}");
    assert!(
        screen.contains("checkpoint at step 3: ckpt/final.safetensors"),
        "{screen}"
    );
    assert_eq!(app.agc().lambda, 0.02);
}

#[test]
fn w_writes_the_live_values_back_and_a_signal_quits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let preset_path = dir.path().join("p.toml");
    std::fs::write(&preset_path, "# mine\n[agc]\nlambda = 0.01\n").unwrap();
    let mut preset = Preset::default();
    preset.agc.lambda = 0.03;
    let (cmd_tx, cmd_rx) = channel::unbounded();
    let (ctl_tx, ctl_rx) = channel::unbounded();
    let (tel_tx, tel_rx) = channel::bounded(16);
    let (key_tx, key_rx) = channel::unbounded();
    let trainer = std::thread::spawn(move || fake_trainer(cmd_rx, ctl_tx, tel_tx));
    key_tx
        .send(Input::Key(KeyEvent::from(KeyCode::Char('w'))))
        .unwrap();
    // SIGTERM arrives (the flag the signal handler raises).
    let quit = AtomicBool::new(true);
    let mut app = App::new(&preset, preset_path.clone(), Theme::plain());
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
    let mut link = Link {
        commands: cmd_tx,
        events: ctl_rx,
        telemetry: Some(tel_rx),
        reloads: None,
        preset_path: preset_path.clone(),
        tap: None,
        quit_flag: Some(&quit),
        hangup_flag: None,
    };
    let outcome = run_loop(
        &mut terminal,
        &mut app,
        &mut link,
        &mut ChannelInput(key_rx),
    )
    .unwrap();
    drop(link);
    let seen = trainer.join().unwrap();
    assert_eq!(seen, vec![Command::Stop { checkpoint: true }]);
    assert_eq!(outcome.state, RunState::Stopped);
    let text = std::fs::read_to_string(&preset_path).unwrap();
    // The signal is handled before the key; the file gets the value in force and keeps its comment.
    assert!(
        text.contains("# mine") && text.contains("lambda = 0.03"),
        "{text}"
    );
}

/// A terminal whose input has hung up: every read fails, as crossterm's does on a dead pseudo-terminal.
struct HungUp;

impl InputSource for HungUp {
    fn next(&mut self, _timeout: Duration) -> std::io::Result<Option<Input>> {
        Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the terminal hung up",
        ))
    }
}

/// The loop over a fake trainer with `input` and the given hangup flag; the outcome and the commands the trainer saw.
fn loop_until_end(
    input: &mut dyn InputSource,
    hangup: &AtomicBool,
) -> (nfbench::tui::Outcome, Vec<Command>) {
    let (cmd_tx, cmd_rx) = channel::unbounded();
    let (ctl_tx, ctl_rx) = channel::unbounded();
    let (tel_tx, tel_rx) = channel::bounded(16);
    let trainer = std::thread::spawn(move || fake_trainer(cmd_rx, ctl_tx, tel_tx));
    let mut app = App::new(&Preset::default(), PathBuf::from("p.toml"), Theme::plain());
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
    let quit = AtomicBool::new(false);
    let mut link = Link {
        commands: cmd_tx.clone(),
        events: ctl_rx,
        telemetry: Some(tel_rx),
        reloads: None,
        preset_path: PathBuf::from("p.toml"),
        tap: None,
        quit_flag: Some(&quit),
        hangup_flag: Some(hangup),
    };
    let outcome = run_loop(&mut terminal, &mut app, &mut link, input).unwrap();
    // The loop left the trainer running; stop the fake one to collect what it saw.
    drop(link);
    cmd_tx.send(Command::Stop { checkpoint: false }).unwrap();
    let mut seen = trainer.join().unwrap();
    assert_eq!(seen.pop(), Some(Command::Stop { checkpoint: false }));
    (outcome, seen)
}

#[test]
fn a_terminal_that_fails_ends_the_loop_as_lost_and_leaves_the_trainer_running() {
    let (outcome, seen) = loop_until_end(&mut HungUp, &AtomicBool::new(false));
    assert!(
        matches!(&outcome.end, End::TerminalLost(why) if why.contains("hung up")),
        "{outcome:?}"
    );
    assert!(seen.is_empty(), "nothing was sent to the trainer: {seen:?}");
}

#[test]
fn sighup_ends_the_loop_as_lost_without_stopping_the_trainer() {
    let (_keys, key_rx) = channel::unbounded();
    let (outcome, seen) = loop_until_end(&mut ChannelInput(key_rx), &AtomicBool::new(true));
    assert_eq!(outcome.end, End::TerminalLost("SIGHUP".into()));
    assert!(seen.is_empty(), "nothing was sent to the trainer: {seen:?}");
}
