//! End to end: the real `nfbench tui` binary in a tmux pseudo-terminal on a tiny preset. It waits for the step
//! counter to advance, raises lambda with `+`, sees the AGC pane and the events log show it, quits with `q` `y`, and
//! checks a zero exit, a final checkpoint and the metrics log.
//!
//! Needs tmux (scripts/setup.sh installs it); without it the test says so and passes. Waiting is by polling the
//! screen until a condition holds, with a generous deadline; nothing is timed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(300);

struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("running tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "e2e"]).stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        self.cmd(&["send-keys", "-t", "e2e", "-l", keys]);
    }

    /// Poll the screen until `pred` holds; panics with the last screen at the deadline.
    fn wait_for(&self, what: &str, mut pred: impl FnMut(&str) -> bool, done: &Path) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if start.elapsed() > DEADLINE || (done.exists() && !pred(&s)) && what != "exit" {
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

fn step_of(screen: &str) -> Option<u64> {
    let line = screen.lines().next()?;
    let at = line.find("step ")? + 5;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn the_workbench_trains_takes_a_lambda_change_and_quits_cleanly() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIPPED tui_e2e: tmux is not installed (scripts/setup.sh installs it)");
        return;
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = repo.join("data/cifar10-subset.h5");
    if !data.exists() {
        eprintln!("SKIPPED tui_e2e: {} is missing", data.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let preset = dir.path().join("tiny.toml");
    std::fs::write(
        &preset,
        format!(
            "extends = {:?}\n[data]\npath = {:?}\nbatch_size = 8\nworkers = 1\neval_images = 32\n\
             [agc]\nlambda = 0.04\n\
             [run]\nsteps = 100000\neval_every = 0\nstats_every = 2\ncheckpoint_every = 0\ndevice = \"cpu\"\n",
            repo.join("presets/default.toml").display().to_string(),
            data.display().to_string()
        ),
    )
    .unwrap();
    let run_dir = dir.path().join("run");
    let done = dir.path().join("exit-code");
    let bin = env!("CARGO_BIN_EXE_nfbench");
    let tmux = Tmux {
        socket: format!("nfbench-e2e-{}", std::process::id()),
    };
    let shell = format!(
        "cd {repo:?} && {bin:?} tui --preset {preset:?} --run-dir {run_dir:?}; echo $? > {done:?}; sleep 30",
    );
    let out = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "e2e",
        "-x",
        "120",
        "-y",
        "40",
        &shell,
    ]);
    assert!(
        out.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The step counter advances.
    let first = tmux.wait_for(
        "the first steps",
        |s| step_of(s).is_some_and(|n| n >= 1),
        &done,
    );
    let s0 = step_of(&first).unwrap();
    tmux.wait_for(
        "the step counter to advance",
        |s| step_of(s).is_some_and(|n| n > s0),
        &done,
    );
    // The test preset's lambda is 0.04; `+` on the (first) agc.lambda row takes it to 0.05.
    assert!(first.contains("AGC  λ=0.0400"), "{first}");
    tmux.keys("+");
    let after = tmux.wait_for(
        "lambda applied",
        |s| s.contains("AGC  λ=0.0500") && s.contains("agc.lambda 0.04 → 0.05 applied at step"),
        &done,
    );
    assert!(after.contains("applied at step"), "{after}");
    tmux.keys("q");
    tmux.wait_for("the quit question", |s| s.contains("Stop training?"), &done);
    tmux.keys("y");
    tmux.wait_for("exit", |_| done.exists(), &done);
    let code = std::fs::read_to_string(&done).unwrap();
    assert_eq!(code.trim(), "0", "exit code; screen:\n{}", tmux.screen());
    assert!(run_dir.join("metrics.h5").exists());
    let checkpoints: Vec<_> = std::fs::read_dir(run_dir.join("checkpoints"))
        .unwrap()
        .collect();
    assert!(!checkpoints.is_empty(), "a final checkpoint was written");
}
