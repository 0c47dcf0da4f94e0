//! A private tmux server for end-to-end tests of the workbench in a real pseudo-terminal: start a command in a
//! session, read the screen, send keys, kill the session (which hangs the terminal up, as a dropped SSH connection
//! does). Each `Tmux` has its own server socket, killed on drop.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// How long any wait may take before the test fails (generous: the CI machine has 2 cores).
pub const DEADLINE: Duration = Duration::from_secs(300);

pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// A private server; `None` (after saying `skipped: ...`) when tmux is not installed.
    pub fn new(test: &str) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            eprintln!("skipped: {test}: tmux is not installed (scripts/setup.sh installs it)");
            return None;
        }
        Some(Tmux {
            socket: format!("nfbench-{test}-{}", std::process::id()),
        })
    }

    pub fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("running tmux")
    }

    /// Start `shell` in a detached session `name` of 120 x 40.
    pub fn start(&self, name: &str, shell: &str) {
        let out = self.cmd(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "120",
            "-y",
            "40",
            shell,
        ]);
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn screen(&self, name: &str) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", name]).stdout).into_owned()
    }

    pub fn keys(&self, name: &str, keys: &str) {
        self.cmd(&["send-keys", "-t", name, "-l", keys]);
    }

    /// Close the session's terminal: tmux hangs the pseudo-terminal up, the way a dropped SSH connection does.
    pub fn kill_session(&self, name: &str) {
        self.cmd(&["kill-session", "-t", name]);
    }

    /// Poll the screen of `name` until `pred` holds; panics with the last screen at the deadline, or as soon as
    /// `done` exists (the command exited) without `pred` holding.
    pub fn wait_for(
        &self,
        name: &str,
        what: &str,
        mut pred: impl FnMut(&str) -> bool,
        done: &Path,
    ) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen(name);
            if pred(&s) {
                return s;
            }
            if start.elapsed() > DEADLINE || (done.exists() && what != "exit") {
                panic!(
                    "waiting for {what}; last screen:\n{s}\nexit file: {:?}",
                    std::fs::read_to_string(done).ok()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Only our own private server (its own socket) is killed.
        self.cmd(&["kill-server"]);
    }
}

/// The step counter of the workbench's status line.
pub fn step_of(screen: &str) -> Option<u64> {
    let line = screen.lines().next()?;
    let at = line.find("step ")? + 5;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Wait until `pred` holds (polling), or panic naming `what` at the deadline.
pub fn wait_until(what: &str, mut pred: impl FnMut() -> bool) {
    let start = Instant::now();
    while !pred() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
