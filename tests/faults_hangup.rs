//! Terminal loss, end to end, with the real binary in tmux: the workbench trains, its tmux session is killed (the
//! pseudo-terminal hangs up, as when an SSH connection drops), and then
//! - with `run.on_hangup = "detach"`: the process lives on without spinning, the metrics on disk keep growing,
//!   `live.json` says `detached`, `nfbench attach` in another terminal shows the live run and its controls work
//!   (pause, resume), SIGTERM stops it cleanly within 10 s, and `metrics.h5` has every step exactly once;
//! - with `"stop"`: it writes a final checkpoint and exits by itself.
//!
//! Needs tmux (scripts/setup.sh installs it); without it the tests say `skipped:` and pass.

mod tmux_support;

use nfbench::record::metrics::read_run;
use nfbench::record::{LiveFile, LiveMode};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tmux_support::{step_of, wait_until, Tmux};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tiny, endless preset on the shipped data; `on_hangup` as given.
fn preset(dir: &Path, on_hangup: &str) -> PathBuf {
    let path = dir.join("tiny.toml");
    std::fs::write(
        &path,
        format!(
            "extends = {:?}\n[data]\npath = {:?}\nbatch_size = 8\nworkers = 1\neval_images = 32\n\
             [run]\nsteps = 100000\neval_every = 0\nstats_every = 2\ncheckpoint_every = 20\ndevice = \"cpu\"\n\
             on_hangup = {on_hangup:?}\n",
            repo().join("presets/default.toml").display().to_string(),
            repo().join("data/cifar10-subset.h5").display().to_string()
        ),
    )
    .unwrap();
    path
}

/// CPU seconds (user + system) one thread of a process has used, from `/proc/PID/task/TID/stat`.
fn thread_cpu_secs(pid: u32, tid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap_or_default();
    // Fields after the parenthesised name: state is field 3; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Kills the training process when the test ends, however it ends: a failed assertion must not leave a detached
/// run training in the background.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            // SAFETY: signalling a process this test started.
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
        }
    }
}

fn start_workbench(tmux: &Tmux, preset: &Path, run_dir: &Path) {
    let bin = env!("CARGO_BIN_EXE_nfbench");
    let repo = repo();
    tmux.start(
        "bench",
        &format!("cd {repo:?} && {bin:?} tui --preset {preset:?} --run-dir {run_dir:?}"),
    );
}

/// Wait for the workbench to train a few steps and for its live file; the training process's pid, killed when the
/// guard drops.
fn wait_training(tmux: &Tmux, run_dir: &Path) -> (u32, KillOnDrop) {
    let never = run_dir.join("never");
    tmux.wait_for(
        "bench",
        "a few steps",
        |s| step_of(s).is_some_and(|n| n >= 3),
        &never,
    );
    let mut pid = 0;
    wait_until("live.json", || {
        LiveFile::read_alive(run_dir).is_some_and(|l| {
            pid = l.pid;
            true
        })
    });
    (pid, KillOnDrop(pid))
}

#[test]
fn a_closed_terminal_detaches_the_run_which_records_on_attaches_and_stops_on_sigterm() {
    let Some(tmux) = Tmux::new("faults_hangup_detach") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    start_workbench(&tmux, &preset(dir.path(), "detach"), &run_dir);
    let (pid, _kill) = wait_training(&tmux, &run_dir);

    tmux.kill_session("bench");
    wait_until("live.json to say detached", || {
        LiveFile::read_alive(&run_dir).is_some_and(|l| l.mode == LiveMode::Detached)
    });
    assert!(alive(pid), "the process must outlive its terminal");

    // No spinning: the thread that ran the UI (the main thread) is nearly idle while training goes on.
    let before = thread_cpu_secs(pid, pid);
    let size0 = std::fs::metadata(run_dir.join("metrics.h5")).unwrap().len();
    std::thread::sleep(Duration::from_secs(3));
    let used = thread_cpu_secs(pid, pid) - before;
    assert!(
        used < 0.3,
        "the main thread used {used:.2} CPU-s in 3 s after the hangup (spinning?)"
    );
    wait_until("metrics.h5 to grow after the hangup", || {
        std::fs::metadata(run_dir.join("metrics.h5")).is_ok_and(|m| m.len() > size0)
    });

    // Another terminal attaches: the live run shows, and its controls work.
    let bin = env!("CARGO_BIN_EXE_nfbench");
    let attached_exit = dir.path().join("attach-exit");
    tmux.start(
        "viewer",
        &format!("{bin:?} attach {run_dir:?}; echo $? > {attached_exit:?}; sleep 30"),
    );
    let screen = tmux.wait_for(
        "viewer",
        "the attached workbench",
        |s| s.contains("you hold the controls") && step_of(s).is_some_and(|n| n >= 3),
        &attached_exit,
    );
    let s0 = step_of(&screen).unwrap();
    tmux.wait_for(
        "viewer",
        "the steps advancing in the attached workbench",
        |s| step_of(s).is_some_and(|n| n > s0),
        &attached_exit,
    );
    tmux.keys("viewer", " ");
    tmux.wait_for(
        "viewer",
        "the pause",
        |s| s.contains("PAUSED"),
        &attached_exit,
    );
    tmux.keys("viewer", " ");
    tmux.wait_for(
        "viewer",
        "running again",
        |s| s.contains("RUNNING"),
        &attached_exit,
    );
    // The viewer's terminal goes too: the run does not care.
    tmux.kill_session("viewer");
    std::thread::sleep(Duration::from_secs(1));
    assert!(alive(pid), "a viewer's hangup must not end the run");

    // SIGTERM: a clean stop (final checkpoint) within 10 s.
    // SAFETY: sending a signal to a process we started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let t = Instant::now();
    while alive(pid) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !run_dir.join("live.json").exists(),
        "live.json is removed at exit"
    );
    let run = read_run(&run_dir.join("metrics.h5")).unwrap();
    let steps: Vec<u64> = run.steps.iter().map(|m| m.step).collect();
    let last = *steps.last().unwrap();
    assert_eq!(
        steps,
        (1..=last).collect::<Vec<_>>(),
        "every step recorded exactly once"
    );
    assert!(
        run.events.iter().any(|e| e.kind == "detached"),
        "the events table says the run detached"
    );
    let final_ck = run
        .events
        .iter()
        .filter(|e| e.kind == "checkpoint")
        .map(|e| e.step)
        .max();
    assert_eq!(final_ck, Some(last), "a final checkpoint at the last step");
    let log = std::fs::read_to_string(run_dir.join("nfbench.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn with_on_hangup_stop_a_closed_terminal_stops_the_run_with_a_final_checkpoint() {
    let Some(tmux) = Tmux::new("faults_hangup_stop") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    start_workbench(&tmux, &preset(dir.path(), "stop"), &run_dir);
    let (pid, _kill) = wait_training(&tmux, &run_dir);
    tmux.kill_session("bench");
    let t = Instant::now();
    while alive(pid) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "still running 30 s after the hangup"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let run = read_run(&run_dir.join("metrics.h5")).unwrap();
    let last = run.steps.last().unwrap().step;
    let states: Vec<&str> = run
        .events
        .iter()
        .filter(|e| e.kind == "state")
        .map(|e| e.key.as_str())
        .collect();
    assert_eq!(states.last(), Some(&"Stopped"), "{states:?}");
    assert!(
        run.events
            .iter()
            .any(|e| e.kind == "checkpoint" && e.step == last),
        "a final checkpoint at step {last}"
    );
}
