//! `nfbench attach [RUN_DIR]`: the workbench over a run that another process is training (detached, headless, or
//! with its own workbench open), through the run's socket (`attach/`).
//!
//! The client side is the same `tui::run_loop` as a local workbench: the events come from the socket instead of
//! the relay, commands go back over it, and the preset file is watched here for hot reload. The server sends the
//! run's history first, so the panes show the whole run, not just what came after the attach.

use crate::attach::protocol::{read_frame, write_frame};
use crate::attach::{ClientMsg, Hello, ServerMsg};
use crate::preset::watch::PresetWatcher;
use crate::record::LiveFile;
use crate::train::events::{lanes, EventSender};
use crate::train::messages::{Command, Event};
use crate::tui::terminal::{self, Signals, TerminalGuard};
use crate::tui::{self as workbench, App, CrosstermInput, End, Link, Theme};
use anyhow::{bail, Context};
use clap::Args;
use crossbeam::channel::{self, Receiver};
use std::io::{BufReader, BufWriter};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The run directory (default: the most recently started live run under `runs/`).
    pub run_dir: Option<PathBuf>,
}

/// Telemetry queued from the socket before the oldest is dropped.
const QUEUE: usize = 4096;

pub fn run(args: AttachArgs) -> anyhow::Result<ExitCode> {
    let dir = match args.run_dir {
        Some(d) => d,
        None => newest_live(Path::new("runs"))?,
    };
    let stream = connect(&dir)?;
    let mut input = BufReader::new(stream.try_clone().context("cloning the socket")?);
    let hello = match read_frame::<ServerMsg>(&mut input)
        .with_context(|| format!("{}: reading the greeting", dir.display()))?
    {
        Some(ServerMsg::Hello(h)) => h,
        Some(other) => bail!("{}: expected a greeting, got {other:?}", dir.display()),
        None => bail!(
            "{}: the training process closed the connection",
            dir.display()
        ),
    };
    if !terminal::is_interactive() {
        bail!("`nfbench attach` needs a terminal (stdin and stdout)");
    }
    let (sender, events) = lanes(QUEUE);
    let arrival = greeting(&hello);
    let reader = std::thread::Builder::new()
        .name("nfbench-attach-in".into())
        .spawn(move || read_server(input, &sender, arrival))
        .context("starting the socket reader")?;
    let (commands, to_send) = channel::unbounded();
    let writer = std::thread::Builder::new()
        .name("nfbench-attach-out".into())
        .spawn(move || write_commands(stream, &to_send))
        .context("starting the socket writer")?;

    let signals = Signals::install().context("installing the signal handlers")?;
    let mut app = App::attached(
        &hello.preset,
        hello.preset_path.clone(),
        Theme::from_env(),
        hello.controls,
    );
    // The run picker (`r`) loads its choice the way `--compare` does, as in a local workbench.
    app.set_reference_loader(Box::new(|dir| {
        super::compare::reference(dir).map_err(|e| format!("{e:#}"))
    }));
    let watcher = PresetWatcher::spawn(&hello.preset_path).ok();
    let mut guard = TerminalGuard::enter().context("opening the terminal")?;
    let mut input = CrosstermInput::start().context("reading the terminal")?;
    let outcome = {
        let mut link = Link {
            commands,
            events: events.events,
            telemetry: Some(events.telemetry),
            reloads: watcher.as_ref().map(|w| -> workbench::Reloads<'_> {
                Box::new(move || w.events.try_iter().map(workbench::notice_from).collect())
            }),
            preset_path: hello.preset_path.clone(),
            tap: None,
            quit_flag: Some(signals.interrupt()),
            hangup_flag: Some(signals.hangup()),
        };
        workbench::run_loop(&mut guard.terminal, &mut app, &mut link, &mut input)
    };
    match &outcome {
        Ok(o) if matches!(o.end, End::TerminalLost(_)) => {
            // This viewer's terminal is gone (the run does not care): nothing to restore or print.
            silence_stdio();
            guard.abandon();
        }
        _ => drop(guard),
    }
    drop(input);
    let outcome = outcome.context("running the workbench")?;
    // The link (and its command sender) is gone: the writer ends, which closes our half of the socket.
    let _ = writer.join();
    let _ = reader.join();
    match outcome.end {
        End::TerminalLost(_) => {}
        _ if app.trainer_done() => println!(
            "nfbench: the run is {} at step {} ({})",
            app.status().state_label().to_lowercase(),
            outcome.step,
            hello.run_dir.display()
        ),
        _ => println!(
            "nfbench: left the workbench; the run goes on (pid {}): `nfbench attach {}`",
            hello.pid,
            hello.run_dir.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Point stdout and stderr at /dev/null: the terminal is gone, and a failed `println!` panics.
fn silence_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = super::live::point_output_at(&null);
    }
}

/// Connect to the run's socket, named in its `live.json`.
fn connect(dir: &Path) -> anyhow::Result<UnixStream> {
    let Some(live) = LiveFile::read_alive(dir) else {
        bail!(
            "{}: no live process trains this run (no live.json, or its process has ended); `nfbench replay {0}` \
             shows its record, `nfbench resume {0}` continues it",
            dir.display()
        );
    };
    let Some(socket) = live.socket else {
        bail!(
            "{}: the process (pid {}) serves no attach socket",
            dir.display(),
            live.pid
        );
    };
    UnixStream::connect(&socket).with_context(|| format!("{}: connecting", socket.display()))
}

/// What the viewer is told on arrival (after the history, so that it is the newest line of the events pane).
fn greeting(hello: &Hello) -> String {
    let who = format!(
        "attached to pid {} ({})",
        hello.pid,
        hello.run_dir.display()
    );
    if hello.controls {
        format!("{who}: you hold the controls")
    } else {
        format!("{who}: read-only, another workbench holds the controls")
    }
}

/// Socket to lanes: events as they come; the greeting when the history is done; control notices as warnings in the
/// events pane. Ends (and so disconnects the lanes, which the loop reads as the trainer's end) when the server
/// closes the stream.
fn read_server(mut input: BufReader<UnixStream>, sender: &EventSender, arrival: String) {
    let mut arrival = Some(arrival);
    while let Ok(Some(msg)) = read_frame::<ServerMsg>(&mut input) {
        let ev = match msg {
            ServerMsg::Event(ev) => ev,
            ServerMsg::Live => match arrival.take() {
                Some(text) => Event::Warning(text),
                None => continue,
            },
            ServerMsg::Controls(true) => Event::Warning("you hold the controls now".into()),
            ServerMsg::Controls(false) => Event::Warning("you gave the controls up".into()),
            ServerMsg::Refused(why) => Event::Warning(why),
            ServerMsg::Hello(_) => continue,
        };
        if !sender.send(ev) {
            return;
        }
    }
}

/// Commands to the socket until the workbench lets go of its sender.
fn write_commands(stream: UnixStream, commands: &Receiver<Command>) {
    let shutdown = stream.try_clone();
    let mut out = BufWriter::new(stream);
    for c in commands.iter() {
        if write_frame(&mut out, &ClientMsg::Command(c)).is_err() {
            break;
        }
    }
    if let Ok(s) = shutdown {
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}

/// The live run under `runs` whose `live.json` is newest.
fn newest_live(runs: &Path) -> anyhow::Result<PathBuf> {
    let entries =
        std::fs::read_dir(runs).with_context(|| format!("{}: listing runs", runs.display()))?;
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for dir in entries.flatten().map(|e| e.path()) {
        if LiveFile::read_alive(&dir).is_none() {
            continue;
        }
        let Ok(modified) =
            std::fs::metadata(dir.join(crate::record::live::LIVE_FILE)).and_then(|m| m.modified())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(t, _)| modified > *t) {
            best = Some((modified, dir));
        }
    }
    best.map(|(_, d)| d).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: no live run to attach to (`nfbench runs` lists the runs; name one)",
            runs.display()
        )
    })
}
