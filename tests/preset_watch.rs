//! Hot reload, event-driven: each test edits files the way an editor does and waits (generously) for the event.
//! No timing is asserted: the timeouts only keep a broken watcher from hanging the suite.

use crossbeam::channel::RecvTimeoutError;
use nfbench::preset::{ErrorKind, PresetWatcher, ReloadEvent};
use nfbench::train::messages::LiveParam;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(20);

const BASE: &str = "# watched\n[agc]\nlambda = 0.01\n[run]\nsteps = 100\n";

/// The next event satisfying `pred`, skipping others (a slow disk can split one save into two reloads).
fn wait_for(w: &PresetWatcher, what: &str, pred: impl Fn(&ReloadEvent) -> bool) -> ReloadEvent {
    let end = Instant::now() + TIMEOUT;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match w.events.recv_timeout(left) {
            Ok(ev) if pred(&ev) => return ev,
            Ok(_) => continue,
            Err(_) => panic!("no {what} event within {TIMEOUT:?}"),
        }
    }
}

fn lambda_is(ev: &ReloadEvent, lambda: f64) -> bool {
    matches!(ev, ReloadEvent::Changed { preset, .. } if preset.agc.lambda == lambda)
}

fn setup(text: &str) -> (tempfile::TempDir, std::path::PathBuf, PresetWatcher) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    fs::write(&path, text).unwrap();
    let w = PresetWatcher::spawn(&path).unwrap();
    (dir, path, w)
}

fn save_by_rename(path: &Path, text: &str) {
    let tmp = path.with_file_name(".p.toml.swp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}

#[test]
fn an_edit_in_place_is_applied_as_a_live_diff() {
    let (_d, path, w) = setup(BASE);
    fs::write(&path, BASE.replace("0.01", "0.02")).unwrap();
    let ev = wait_for(&w, "Changed", |e| lambda_is(e, 0.02));
    let ReloadEvent::Changed { diff, .. } = ev else {
        unreachable!()
    };
    assert_eq!(diff.live, vec![LiveParam::AgcLambda(0.02)]);
    assert!(diff.restart_only.is_empty());
    let ev = ReloadEvent::Changed {
        preset: Default::default(),
        diff,
    };
    assert_eq!(ev.describe(), "preset reloaded: agc.lambda 0.01 → 0.02");
}

#[test]
fn a_restart_only_change_is_reported_not_live() {
    let (_d, path, w) = setup(BASE);
    fs::write(&path, BASE.replace("steps = 100", "steps = 200")).unwrap();
    let ev = wait_for(&w, "Changed", |e| matches!(e, ReloadEvent::Changed { .. }));
    let ReloadEvent::Changed { diff, preset } = ev else {
        unreachable!()
    };
    assert!(diff.live.is_empty());
    assert_eq!(diff.restart_only.len(), 1);
    assert_eq!(diff.restart_only[0].field, "run.steps");
    assert_eq!(preset.run.steps, 200);
}

#[test]
fn save_by_rename_is_seen_and_later_saves_too() {
    let (_d, path, w) = setup(BASE);
    save_by_rename(&path, &BASE.replace("0.01", "0.03"));
    wait_for(&w, "Changed after rename", |e| lambda_is(e, 0.03));
    // The watch survives the rename: a second save is seen as well.
    save_by_rename(&path, &BASE.replace("0.01", "0.04"));
    wait_for(&w, "Changed after second rename", |e| lambda_is(e, 0.04));
}

#[test]
fn delete_and_recreate() {
    let (_d, path, w) = setup(BASE);
    fs::remove_file(&path).unwrap();
    let ev = wait_for(&w, "Deleted", |e| matches!(e, ReloadEvent::Deleted { .. }));
    assert_eq!(ev, ReloadEvent::Deleted { path: path.clone() });
    fs::write(&path, BASE.replace("0.01", "0.05")).unwrap();
    wait_for(&w, "Changed after re-creation", |e| lambda_is(e, 0.05));
}

#[test]
fn a_broken_edit_then_a_fixed_one() {
    let (_d, path, w) = setup(BASE);
    fs::write(&path, "# watched\n[agc]\nlambda = 0.0.2\n").unwrap();
    let ev = wait_for(&w, "Invalid", |e| matches!(e, ReloadEvent::Invalid { .. }));
    let ReloadEvent::Invalid { error } = ev else {
        unreachable!()
    };
    assert_eq!(error.kind, ErrorKind::Syntax);
    assert_eq!(error.position.map(|p| p.line), Some(3));
    assert!(error.to_string().contains("p.toml:3:"), "{error}");
    let line = ReloadEvent::Invalid { error }.describe();
    assert!(
        line.starts_with("preset rejected: ") && line.ends_with("(old values kept)"),
        "{line}"
    );
    // An out-of-range value is rejected the same way.
    fs::write(&path, "[agc]\nlambda = -1.0\n").unwrap();
    let ev = wait_for(
        &w,
        "Invalid range",
        |e| matches!(e, ReloadEvent::Invalid { error } if error.kind == ErrorKind::Range),
    );
    let ReloadEvent::Invalid { error } = ev else {
        unreachable!()
    };
    assert_eq!(error.field.as_deref(), Some("agc.lambda"));
    // The fix is diffed against the last valid content.
    fs::write(&path, BASE.replace("0.01", "0.06")).unwrap();
    let ev = wait_for(&w, "Changed after fix", |e| lambda_is(e, 0.06));
    let ReloadEvent::Changed { diff, .. } = ev else {
        unreachable!()
    };
    assert_eq!(diff.live, vec![LiveParam::AgcLambda(0.06)]);
}

#[test]
fn an_edit_to_an_extended_file_in_another_directory() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("common")).unwrap();
    let parent = dir.path().join("common").join("base.toml");
    fs::write(&parent, "[model]\nalpha = 0.2\n").unwrap();
    let path = dir.path().join("p.toml");
    fs::write(
        &path,
        "extends = \"common/base.toml\"\n[agc]\nlambda = 0.01\n",
    )
    .unwrap();
    let w = PresetWatcher::spawn(&path).unwrap();
    fs::write(&parent, "[model]\nalpha = 0.5\n").unwrap();
    let ev = wait_for(
        &w,
        "Changed from the parent",
        |e| matches!(e, ReloadEvent::Changed { preset, .. } if preset.model.alpha == 0.5),
    );
    let ReloadEvent::Changed { diff, .. } = ev else {
        unreachable!()
    };
    assert_eq!(diff.live, vec![LiveParam::Alpha(0.5)]);
}

#[test]
fn dropping_the_watcher_stops_it() {
    let (_d, path, w) = setup(BASE);
    let events = w.events.clone();
    drop(w);
    fs::write(&path, BASE.replace("0.01", "0.07")).unwrap();
    // The thread is gone, so the channel is closed rather than merely quiet.
    assert_eq!(
        events.recv_timeout(TIMEOUT),
        Err(RecvTimeoutError::Disconnected)
    );
}
