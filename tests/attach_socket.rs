//! The attach socket against a fake trainer: the greeting, the history then live events (NaN kept bit for bit),
//! one holder of the controls, commands passed on only from it, the controls freed when it leaves, owner-only
//! permissions, and the end of the stream when the trainer has gone.

use crossbeam::channel;
use nfbench::attach::protocol::{read_frame, write_frame};
use nfbench::attach::{ClientMsg, Server, ServerMsg, ServerOptions};
use nfbench::preset::Preset;
use nfbench::record::{Recorder, Relay};
use nfbench::train::events::lanes;
use nfbench::train::messages::{Command, Event, StepMetrics};
use std::io::BufReader;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn step(step: u64) -> Event {
    Event::Step(StepMetrics {
        step,
        epoch: 0.5,
        loss: 1.25,
        train_top1: 0.5,
        lr: 0.1,
        lambda: 0.01,
        alpha: 0.2,
        grad_norm: f64::NAN,
        clipped_fraction: 0.25,
        images_per_sec: 10.0,
        step_ms: 3.0,
    })
}

struct Client {
    input: BufReader<UnixStream>,
    output: UnixStream,
}

impl Client {
    fn connect(path: &std::path::Path) -> Client {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client {
            input: BufReader::new(s.try_clone().unwrap()),
            output: s,
        }
    }

    fn next(&mut self) -> Option<ServerMsg> {
        read_frame(&mut self.input).unwrap()
    }

    fn send(&mut self, msg: &ClientMsg) {
        write_frame(&mut self.output, msg).unwrap();
    }

    /// Skip events (and the end of the history) until a notice arrives.
    fn next_notice(&mut self) -> ServerMsg {
        loop {
            match self.next() {
                Some(ServerMsg::Event(_) | ServerMsg::Live) => continue,
                Some(m) => return m,
                None => panic!("the stream ended"),
            }
        }
    }
}

#[test]
fn clients_get_history_and_live_events_and_only_the_holder_commands() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::create_at(&dir.path().join("metrics.h5"), "").unwrap();
    let (trainer, trainer_lanes) = lanes(1024);
    let relay = Relay::spawn(recorder, trainer_lanes).unwrap();
    let (commands, received) = channel::unbounded();
    let mut preset = Preset::default();
    preset.agc.lambda = 0.03;
    let server = Server::start(
        ServerOptions {
            run_dir: dir.path().to_path_buf(),
            preset_path: dir.path().join("p.toml"),
            preset: preset.clone(),
        },
        relay.subscribers(),
        commands,
        false,
    )
    .unwrap();
    let mode = std::fs::metadata(server.socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the socket is owner-only");

    trainer.send(step(1));
    trainer.send(step(2));
    // Let the relay take both into its history before anyone attaches.
    std::thread::sleep(Duration::from_millis(300));

    let mut first = Client::connect(server.socket());
    let Some(ServerMsg::Hello(hello)) = first.next() else {
        panic!("no greeting")
    };
    assert!(
        hello.controls,
        "the first client of a headless run holds the controls"
    );
    assert_eq!(hello.preset, preset);
    assert_eq!(hello.pid, std::process::id());
    for want in [1, 2] {
        match first.next() {
            Some(ServerMsg::Event(Event::Step(m))) => {
                assert_eq!(m.step, want);
                assert!(m.grad_norm.is_nan(), "NaN survives the wire");
                assert_eq!(m.clipped_fraction, 0.25);
            }
            other => panic!("expected step {want}, got {other:?}"),
        }
    }
    assert_eq!(first.next(), Some(ServerMsg::Live), "the history ends");
    let mut second = Client::connect(server.socket());
    let Some(ServerMsg::Hello(hello)) = second.next() else {
        panic!("no greeting")
    };
    assert!(!hello.controls, "the second client is a viewer");

    // Live events reach both.
    trainer.send(step(3));
    for c in [&mut first, &mut second] {
        let got = loop {
            match c.next() {
                Some(ServerMsg::Event(Event::Step(m))) if m.step == 3 => break m.step,
                Some(_) => continue,
                None => panic!("the stream ended"),
            }
        };
        assert_eq!(got, 3);
    }

    // The viewer's command is refused; the holder's is passed on.
    second.send(&ClientMsg::Command(Command::Pause));
    assert!(matches!(second.next_notice(), ServerMsg::Refused(_)));
    first.send(&ClientMsg::Command(Command::Pause));
    assert_eq!(
        received.recv_timeout(Duration::from_secs(30)).unwrap(),
        Command::Pause
    );
    assert!(
        received.try_recv().is_err(),
        "the viewer's command never arrived"
    );

    // The holder leaves: the viewer can take the controls.
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    second.send(&ClientMsg::TakeControls);
    assert_eq!(second.next_notice(), ServerMsg::Controls(true));
    second.send(&ClientMsg::Command(Command::Resume));
    assert_eq!(
        received.recv_timeout(Duration::from_secs(30)).unwrap(),
        Command::Resume
    );

    // The trainer goes: the stream ends after the last event.
    trainer.send(Event::Finished { step: 3 });
    drop(trainer);
    let mut finished = false;
    while let Some(msg) = second.next() {
        finished |= matches!(msg, ServerMsg::Event(Event::Finished { .. }));
    }
    assert!(finished);
    relay.finish();
    let socket = server.socket().to_path_buf();
    drop(server);
    assert!(!socket.exists(), "the socket is removed with the server");
}

#[test]
fn the_local_workbench_holds_the_controls_until_it_detaches() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::create_at(&dir.path().join("metrics.h5"), "").unwrap();
    let (trainer, trainer_lanes) = lanes(16);
    let relay = Relay::spawn(recorder, trainer_lanes).unwrap();
    let (commands, received) = channel::unbounded();
    let server = Server::start(
        ServerOptions {
            run_dir: dir.path().to_path_buf(),
            preset_path: dir.path().join("p.toml"),
            preset: Preset::default(),
        },
        relay.subscribers(),
        commands,
        true,
    )
    .unwrap();
    let mut c = Client::connect(server.socket());
    let Some(ServerMsg::Hello(hello)) = c.next() else {
        panic!("no greeting")
    };
    assert!(!hello.controls);
    c.send(&ClientMsg::TakeControls);
    assert!(matches!(c.next_notice(), ServerMsg::Refused(_)));
    server.release_local_controls();
    c.send(&ClientMsg::TakeControls);
    assert_eq!(c.next_notice(), ServerMsg::Controls(true));
    c.send(&ClientMsg::Command(Command::StepOnce));
    assert_eq!(
        received.recv_timeout(Duration::from_secs(30)).unwrap(),
        Command::StepOnce
    );
    drop(trainer);
    relay.finish();
}

#[test]
fn a_second_server_on_a_live_socket_is_refused_and_a_stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let options = || ServerOptions {
        run_dir: dir.path().to_path_buf(),
        preset_path: dir.path().join("p.toml"),
        preset: Preset::default(),
    };
    let recorder = Recorder::create_at(&dir.path().join("metrics.h5"), "").unwrap();
    let (_trainer, trainer_lanes) = lanes(16);
    let relay = Relay::spawn(recorder, trainer_lanes).unwrap();
    let (commands, _received) = channel::unbounded();
    let server = Server::start(options(), relay.subscribers(), commands.clone(), false).unwrap();
    let err = Server::start(options(), relay.subscribers(), commands.clone(), false)
        .err()
        .expect("a second server on a live socket");
    assert!(err.to_string().contains("another live process"), "{err}");
    // A socket file nobody answers on (left by a killed process) is replaced.
    let path = server.socket().to_path_buf();
    drop(server);
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "a stale socket file");
    let again = Server::start(options(), relay.subscribers(), commands, false);
    assert!(again.is_ok(), "{:?}", again.err());
}
