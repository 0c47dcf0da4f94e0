//! The terminal: raw mode and the alternate screen on entry, restored on drop, on error and on panic; SIGINT,
//! SIGTERM and SIGHUP turned into flags the loop polls ([`Signals`]), so that they stop cleanly instead of killing
//! the process with the terminal still raw; a hung-up terminal detected before crossterm reads from it.

use crossbeam::channel::{self, Receiver, RecvTimeoutError};
use crossterm::event::Event as Input;
use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use std::io::{self, IsTerminal, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Whether both stdin and stdout are terminals (the workbench needs keys in and a screen out).
pub fn is_interactive() -> bool {
    io::stdout().is_terminal() && io::stdin().is_terminal()
}

/// Leave raw mode and the alternate screen; safe to call more than once and when never entered.
pub fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// Restore the terminal before the default panic message prints, so that it is readable and the shell usable.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// The terminal in workbench mode; dropping it restores the terminal.
pub struct TerminalGuard {
    pub terminal: Term,
}

impl TerminalGuard {
    pub fn enter() -> io::Result<Self> {
        install_panic_hook();
        enable_raw_mode()?;
        let mut stdout = io::stdout();
        if let Err(e) = execute!(stdout, EnterAlternateScreen, EnableMouseCapture) {
            restore();
            return Err(e);
        }
        match Terminal::new(CrosstermBackend::new(stdout)) {
            Ok(mut terminal) => {
                let _ = terminal.hide_cursor();
                let _ = terminal.clear();
                Ok(Self { terminal })
            }
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl TerminalGuard {
    /// The terminal is gone: leave it without restoring (every write would fail, and ratatui's own drop prints
    /// its failure with `eprintln!`, which panics on a dead stderr). The terminal object is leaked on purpose.
    pub fn abandon(self) {
        std::mem::forget(self);
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// The signals the workbench answers, as flags its loop polls: an interrupt (SIGINT, SIGTERM) asks for a clean stop,
/// a hangup (SIGHUP: the terminal or the SSH connection is gone) for what `run.on_hangup` says.
pub struct Signals {
    interrupt: Arc<AtomicBool>,
    hangup: Arc<AtomicBool>,
}

impl Signals {
    pub fn install() -> io::Result<Self> {
        let interrupt = Arc::new(AtomicBool::new(false));
        let hangup = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&interrupt))?;
        }
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hangup))?;
        Ok(Self { interrupt, hangup })
    }

    /// Raised by SIGINT / SIGTERM (lowered by [`take`]).
    pub fn interrupt(&self) -> &AtomicBool {
        &self.interrupt
    }

    /// Raised by SIGHUP; stays raised.
    pub fn hangup(&self) -> &AtomicBool {
        &self.hangup
    }
}

/// Whether the terminal on stdin is gone: a hung-up terminal polls as readable with `POLLHUP` / `POLLERR` (reads
/// then return EOF at once). crossterm's `read` loops on such a descriptor forever (the 100% CPU spin of a workbench
/// whose SSH connection dropped), so the input source asks this first.
pub fn stdin_hung_up() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, a zero timeout.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n > 0 && fd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

/// Take the flag's value and lower it.
pub fn take(flag: &AtomicBool) -> bool {
    flag.swap(false, Ordering::SeqCst)
}

/// The real terminal's input, read by a thread of its own and handed over through a channel.
///
/// Why a thread: crossterm's reader loops inside `poll` without end once the terminal has hung up (its read loop
/// leaves only on `WouldBlock`, and a hung-up terminal returns EOF or EIO at once, forever): called on the loop's
/// thread, that was the 100% CPU spin of a workbench whose SSH connection dropped, deaf to SIGTERM. On its own
/// thread it can only stall itself: the loop still sees the hangup (SIGHUP, or [`stdin_hung_up`]) and ends, and once
/// the process has moved its standard descriptors off the dead terminal (`cli/live.rs`) the reader's next poll
/// times out and it sees its stop flag.
pub struct CrosstermInput {
    events: Receiver<io::Result<Input>>,
    stop: Arc<AtomicBool>,
}

/// How long the reader thread waits for input before it looks at its stop flag.
const READER_POLL: Duration = Duration::from_millis(100);

impl CrosstermInput {
    pub fn start() -> io::Result<Self> {
        let (tx, events) = channel::bounded(256);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("nfbench-input".into())
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    let next = match crossterm::event::poll(READER_POLL) {
                        Ok(true) => crossterm::event::read(),
                        Ok(false) => continue,
                        Err(e) => Err(e),
                    };
                    let failed = next.is_err();
                    if tx.send(next).is_err() || failed {
                        return;
                    }
                }
            })?;
        Ok(Self { events, stop })
    }
}

impl Drop for CrosstermInput {
    fn drop(&mut self) {
        // Not joined: on a dead terminal the reader may be stuck until the descriptors move (see above).
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl super::InputSource for CrosstermInput {
    fn next(&mut self, timeout: Duration) -> io::Result<Option<Input>> {
        if stdin_hung_up() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the terminal hung up",
            ));
        }
        match self.events.recv_timeout(timeout) {
            Ok(Ok(ev)) => Ok(Some(ev)),
            Ok(Err(e)) => Err(e),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the terminal input ended",
            )),
        }
    }
}
