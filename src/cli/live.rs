//! A run in progress, however it is watched: the trainer, the relay that records every event, the attach socket
//! and `live.json`, and the headless wait that `nfbench train --headless`, `nfbench resume` and a detached
//! workbench share.
//!
//! The record never depends on a UI: the relay writes `metrics.h5` whether a workbench is attached, stalled or
//! gone. A hangup (SIGHUP, or the terminal reading EOF) never kills the run: with `run.on_hangup = "detach"` it
//! goes on headless, its output redirected to `nfbench.log` in the run directory (the terminal is gone: a write
//! to it would fail), and `nfbench attach` reopens the workbench on it; with `"stop"` it writes a final checkpoint
//! and exits 0. SIGINT / SIGTERM always stop cleanly: a final checkpoint after the current step.

use crate::attach::{absolute, Server, ServerOptions};
use crate::preset::{OnHangup, Preset};
use crate::record::session::{HeldRun, Session};
use crate::record::{LiveFile, LiveMode, Relay, RelayReport, RunDir};
use crate::train::messages::{Command, Event};
use crate::train::{EventReceiver, TrainSummary, Trainer, TrainerHandle, TrainerOptions};
use crate::tui::terminal::{self, Signals};
use anyhow::Context;
use crossbeam::channel::RecvTimeoutError;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The file a detached run's output goes to, in its run directory.
pub const LOG_FILE: &str = "nfbench.log";

/// A trainer running with its record, socket and live file.
pub struct LiveRun {
    /// The run directory, the preset and the run directory's lock (held until the process is done with the run).
    held: HeldRun,
    handle: TrainerHandle,
    relay: Relay,
    server: Option<Server>,
    mode: LiveMode,
}

/// How the headless wait ended.
#[derive(Debug, Default)]
pub struct Waited {
    /// SIGINT / SIGTERM asked for the stop.
    pub interrupted: bool,
    /// A second signal: the process leaves without waiting for the trainer's final checkpoint.
    pub abandoned: bool,
    /// The latest checkpoint failure not followed by a successful checkpoint: (step, reason, last saved step).
    pub unsaved: Option<(u64, String, Option<u64>)>,
}

impl LiveRun {
    /// Spawn the trainer for a started session, relay its events into the record and serve the attach socket.
    /// Problems that do not stop the run (no socket) come back as warnings for the caller to show.
    pub fn start(
        session: Session,
        opts: TrainerOptions,
        preset_path: &Path,
        mode: LiveMode,
    ) -> anyhow::Result<(LiveRun, Vec<String>)> {
        let (recorder, held) = session.into_recorder();
        let preset = held.preset.clone();
        let handle = Trainer::spawn(preset.clone(), opts).context("starting the trainer")?;
        let relay =
            Relay::spawn(recorder, handle.lanes.clone()).context("starting the recorder")?;
        let mut warnings = Vec::new();
        let server = match Server::start(
            ServerOptions {
                run_dir: absolute(held.run.path()),
                preset_path: absolute(preset_path),
                preset: preset.clone(),
            },
            relay.subscribers(),
            handle.commands.clone(),
            mode == LiveMode::Workbench,
        ) {
            Ok(s) => Some(s),
            Err(e) => {
                warnings.push(format!(
                    "no attach socket ({}): the run cannot be reattached",
                    crate::train::error_chain(&e)
                ));
                None
            }
        };
        let live = LiveRun {
            held,
            handle,
            relay,
            server,
            mode,
        };
        if let Err(e) = live.write_live_file() {
            warnings.push(format!(
                "cannot write live.json: {}",
                crate::train::error_chain(&e)
            ));
        }
        Ok((live, warnings))
    }

    pub fn run(&self) -> &RunDir {
        &self.held.run
    }

    pub fn preset(&self) -> &Preset {
        &self.held.preset
    }

    pub fn handle(&self) -> &TrainerHandle {
        &self.handle
    }

    /// Lanes that see every event from now on (the relay's, not the trainer's: they never hold the record up).
    pub fn subscribe(&self) -> EventReceiver {
        self.relay.subscribe()
    }

    fn write_live_file(&self) -> crate::record::Result<()> {
        LiveFile {
            pid: std::process::id(),
            mode: self.mode,
            socket: self.server.as_ref().map(|s| s.socket().to_path_buf()),
        }
        .write(self.held.run.path())
    }

    /// The workbench's terminal is gone: no more output to it, the controls free for `nfbench attach`, and the
    /// run directory says so (`live.json`, a `detached` row in the events table).
    pub fn detach(&mut self, why: &str) {
        let log = self.held.run.path().join(LOG_FILE);
        let redirected = redirect_stdio(&log);
        self.mode = LiveMode::Detached;
        if let Some(s) = &self.server {
            s.release_local_controls();
        }
        let _ = self.write_live_file();
        let whereto = match redirected {
            Ok(()) => format!("output goes to {}", log.display()),
            Err(e) => format!("its output is lost ({}: {e})", log.display()),
        };
        self.relay.note(
            "detached",
            format!("the terminal is gone ({why}); training goes on headless, {whereto}; `nfbench attach {}` reopens the workbench",
                self.held.run.path().display()),
        );
    }

    /// Wait for the trainer without a UI: `on_event` sees every event (progress lines); SIGINT / SIGTERM stop the
    /// run with a final checkpoint (a second one leaves at once); a hangup detaches or stops, per `on_hangup`.
    pub fn wait(
        &mut self,
        events: &EventReceiver,
        signals: &Signals,
        on_hangup: OnHangup,
        mut on_event: impl FnMut(&Event),
    ) -> Waited {
        let mut waited = Waited::default();
        let mut stop_sent = false;
        let mut hung_up = false;
        loop {
            if signals.hangup().load(Ordering::SeqCst) && !hung_up {
                hung_up = true;
                if self.mode != LiveMode::Detached {
                    self.detach("SIGHUP");
                }
                if on_hangup == OnHangup::Stop && !stop_sent {
                    self.handle.send(Command::Stop { checkpoint: true });
                    stop_sent = true;
                }
            }
            if terminal::take(signals.interrupt()) {
                if stop_sent && waited.interrupted {
                    waited.abandoned = true;
                    return waited;
                }
                waited.interrupted = true;
                if !stop_sent {
                    self.handle.send(Command::Stop { checkpoint: true });
                    stop_sent = true;
                }
            }
            match events.recv_timeout(Duration::from_millis(200)) {
                Ok(ev) => {
                    track_checkpoints(&ev, &mut waited.unsaved);
                    on_event(&ev);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return waited,
            }
        }
    }

    /// Join the trainer and the relay (everything recorded and synced), close the socket, remove `live.json`.
    pub fn finish(self) -> (crate::train::Result<TrainSummary>, RelayReport) {
        let summary = self.handle.join();
        let report = self.relay.finish();
        drop(self.server);
        LiveFile::remove(self.held.run.path());
        (summary, report)
    }

    /// Leave without waiting for the trainer (a second interrupt): the record so far is on disk up to the
    /// relay's last flush; `live.json` goes, the process exits.
    pub fn abandon(self) {
        drop(self.server);
        LiveFile::remove(self.held.run.path());
    }
}

/// Keep the latest unanswered checkpoint failure.
fn track_checkpoints(ev: &Event, unsaved: &mut Option<(u64, String, Option<u64>)>) {
    match ev {
        Event::CheckpointFailed {
            step,
            reason,
            last_saved,
        } => *unsaved = Some((*step, reason.clone(), *last_saved)),
        Event::Checkpoint { .. } => *unsaved = None,
        _ => {}
    }
}

/// The summary line's validation figure: `n/a` without an evaluation, not `NaN%`.
pub fn top1_text(top1: f64) -> String {
    if top1.is_finite() {
        format!("{:.2}%", top1 * 100.0)
    } else {
        "n/a (not evaluated)".into()
    }
}

/// A run must not look successful when its last checkpoint failed: the message for that case.
pub fn unsaved_message(unsaved: &(u64, String, Option<u64>)) -> String {
    let (step, reason, saved) = unsaved;
    let resume = saved.map_or("no checkpoint was written".to_string(), |s| {
        format!("a resume starts from step {s}")
    });
    format!("the checkpoint at step {step} could not be written ({reason}); {resume}")
}

/// Move the standard descriptors off the dead terminal: stdout and stderr to `log` (appending; after a hangup every
/// write to the terminal fails, and `println!` would panic on it), stdin to an empty non-blocking pipe. The pipe,
/// not /dev/null: a read of it says "would block" rather than EOF, which is what ends crossterm's read loop (see
/// `tui::terminal::CrosstermInput`); and once no descriptor refers to the terminal any more, the kernel drops it
/// from the reader's epoll set, so the reader's polls time out and it stops.
fn redirect_stdio(log: &Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut pipe = [0; 2];
    // SAFETY: a two-element array for pipe2's output.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The write end stays open for the life of the process (never written): a closed one would make reads EOF.
    let moved = dup_onto(pipe[0], &[libc::STDIN_FILENO]);
    // SAFETY: pipe[0] was duplicated onto stdin (or failed to be); this closes only the original descriptor.
    unsafe { libc::close(pipe[0]) };
    moved?;
    point_output_at(&file)
}

/// Send stdout and stderr to `file` (a log, or /dev/null once the terminal is gone).
pub(super) fn point_output_at(file: &std::fs::File) -> std::io::Result<()> {
    dup_onto(
        file.as_raw_fd(),
        &[libc::STDOUT_FILENO, libc::STDERR_FILENO],
    )
}

fn dup_onto(from: std::os::fd::RawFd, targets: &[std::os::fd::RawFd]) -> std::io::Result<()> {
    for &to in targets {
        // SAFETY: both descriptors are valid; dup2 replaces `to` atomically.
        if unsafe { libc::dup2(from, to) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
