//! End to end: the real `nfbench tui` binary in a tmux pseudo-terminal on a tiny preset. It waits for the step
//! counter to advance, raises lambda with `+`, sees the AGC pane and the events log show it, quits with `q` `y`, and
//! checks a zero exit, a final checkpoint and the metrics log.
//!
//! Needs tmux (scripts/setup.sh installs it); without it the test says so and passes. Waiting is by polling the
//! screen until a condition holds, with a generous deadline; nothing is timed.

use std::path::PathBuf;

mod tmux_support;

use tmux_support::{step_of, Tmux};

#[test]
fn the_workbench_trains_takes_a_lambda_change_and_quits_cleanly() {
    let Some(tmux) = Tmux::new("tui_e2e") else {
        return;
    };
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = repo.join("data/cifar10-subset.h5");
    if !data.exists() {
        eprintln!("skipped: tui_e2e: {} is missing", data.display());
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
    let shell = format!(
        "cd {repo:?} && {bin:?} tui --preset {preset:?} --run-dir {run_dir:?}; echo $? > {done:?}; sleep 30",
    );
    tmux.start("e2e", &shell);

    // The step counter advances.
    let first = tmux.wait_for(
        "e2e",
        "the first steps",
        |s| step_of(s).is_some_and(|n| n >= 1),
        &done,
    );
    let s0 = step_of(&first).unwrap();
    tmux.wait_for(
        "e2e",
        "the step counter to advance",
        |s| step_of(s).is_some_and(|n| n > s0),
        &done,
    );
    // The test preset's lambda is 0.04; `+` on the (first) agc.lambda row takes it to 0.05.
    assert!(first.contains("AGC  λ=0.0400"), "{first}");
    tmux.keys("e2e", "+");
    let after = tmux.wait_for(
        "e2e",
        "lambda applied",
        |s| s.contains("AGC  λ=0.0500") && s.contains("agc.lambda 0.04 → 0.05 applied at step"),
        &done,
    );
    assert!(after.contains("applied at step"), "{after}");
    tmux.keys("e2e", "q");
    tmux.wait_for(
        "e2e",
        "the quit question",
        |s| s.contains("Stop training?"),
        &done,
    );
    tmux.keys("e2e", "y");
    tmux.wait_for("e2e", "exit", |_| done.exists(), &done);
    let code = std::fs::read_to_string(&done).unwrap();
    assert_eq!(
        code.trim(),
        "0",
        "exit code; screen:\n{}",
        tmux.screen("e2e")
    );
    assert!(run_dir.join("metrics.h5").exists());
    let checkpoints: Vec<_> = std::fs::read_dir(run_dir.join("checkpoints"))
        .unwrap()
        .collect();
    assert!(!checkpoints.is_empty(), "a final checkpoint was written");
}
