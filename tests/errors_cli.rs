//! Errors as the user sees them at the edge: every level of the chain printed once, the OS's message not repeated.

use std::path::Path;
use std::process::Command;

/// stderr of a failing `nfbench` run (from the repository root, where the shipped presets' paths resolve).
fn failing(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nfbench"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
    stderr
}

/// The OS's message (`No such file or directory (os error 2)`) appears exactly once, after the path it is about.
fn says_the_os_error_once(stderr: &str, path: &str) {
    assert_eq!(stderr.matches("(os error").count(), 1, "{stderr}");
    let (path_at, os_at) = (stderr.find(path), stderr.find("(os error"));
    assert!(
        path_at.is_some() && path_at < os_at,
        "the path comes first: {stderr}"
    );
}

#[test]
fn a_run_directory_that_cannot_be_made_says_the_os_error_once() {
    let preset = Path::new("presets").join("default.toml");
    let stderr = failing(&[
        "train",
        "--headless",
        "--preset",
        preset.to_str().unwrap(),
        "--steps",
        "1",
        "--run-dir",
        "/proc/nope/run",
    ]);
    says_the_os_error_once(&stderr, "/proc/nope");
}

#[test]
fn a_missing_preset_says_the_os_error_once() {
    let stderr = failing(&["preset", "check", "/proc/nope/p.toml"]);
    says_the_os_error_once(&stderr, "/proc/nope/p.toml");
}

#[test]
fn a_missing_data_set_says_the_os_error_once() {
    let stderr = failing(&["data", "inspect", "/proc/nope/x.h5"]);
    says_the_os_error_once(&stderr, "/proc/nope/x.h5");
}

/// Through the trainer: the data error is the `source` of the trainer's, and the edge prints both levels, once each
/// (the progress output logs the trainer's error event as well, so only the final `error:` line is looked at).
#[test]
fn a_missing_data_set_in_training_says_each_level_once() {
    let runs = tempfile::tempdir().unwrap();
    let preset = Path::new("presets").join("default.toml");
    let stderr = failing(&[
        "train",
        "--headless",
        "--preset",
        preset.to_str().unwrap(),
        "--steps",
        "1",
        "--run-dir",
        runs.path().join("run").to_str().unwrap(),
        "--set",
        "data.path=/proc/nope/x.h5",
    ]);
    let last = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or("");
    says_the_os_error_once(last, "/proc/nope/x.h5");
    assert_eq!(last.matches("data:").count(), 1, "{stderr}");
}
