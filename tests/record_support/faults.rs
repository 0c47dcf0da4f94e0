//! Helpers of the fault-injection tests: a size-limited tmpfs mounted for one test, the real `nfbench` binary run
//! headless on the shipped data, and checks of a run directory after a crash.

use nfbench::record::metrics::read_run;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A tmpfs of a given size mounted on a directory for the life of the guard (unmounted on drop, also when the test
/// fails). Mounting needs root; without it the test says `skipped:` and returns.
pub struct Tmpfs {
    dir: PathBuf,
    // Owns the mount point, removed after the unmount.
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=`: `3m`) on a new directory, or prints why not.
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let parent = tempfile::tempdir().expect("a temporary directory");
        let dir = parent.path().join("fs");
        std::fs::create_dir(&dir).expect("the mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs {
                dir,
                _parent: parent,
            }),
            Ok(o) => {
                println!(
                    "skipped: cannot mount a {size} tmpfs (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                println!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Grow (or shrink) the mounted file system to `size`: space returns to a full disk.
    pub fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "remount {}: {}",
            self.dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a file a killed child left open must not keep the mount around.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Fills the file system holding `dir` with a file `name` until it reports no space; returns the bytes written.
pub fn fill_disk(dir: &Path, name: &str) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join(name)).expect("the filler file");
    let block = vec![0xa5u8; 16 * 1024];
    let mut n = 0u64;
    while f.write_all(&block).is_ok() {
        n += block.len() as u64;
    }
    // The last partial block: byte by byte, so the disk is full to the last page.
    while f.write_all(&block[..1]).is_ok() {
        n += 1;
    }
    let _ = f.flush();
    n
}

/// The project root (the shipped data and presets are relative to it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `nfbench ARGS` run from the project root, output captured.
pub fn nfbench(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nfbench"));
    c.current_dir(root())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// The default preset shrunk for a fast run: `steps` steps, one data worker, no evaluation before the end and a
/// small validation subset, per-layer statistics (hence a metrics flush) every `stats_every` steps, checkpoints every
/// `checkpoint_every` steps.
pub fn small_run_args(steps: u64, checkpoint_every: u64, stats_every: u64) -> Vec<String> {
    let mut v: Vec<String> = [
        "train",
        "--headless",
        "--preset",
        "presets/default.toml",
        "--steps",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(steps.to_string());
    for set in [
        format!("run.checkpoint_every={checkpoint_every}"),
        format!("run.stats_every={stats_every}"),
        "run.eval_every=0".into(),
        "run.keep_checkpoints=2".into(),
        "data.eval_images=256".into(),
        "data.batch_size=16".into(),
        "data.workers=1".into(),
    ] {
        v.push("--set".into());
        v.push(set);
    }
    v
}

/// Starts `nfbench train --headless` with `args` into `run_dir`, environment `env` added.
pub fn spawn_train(args: &[String], run_dir: &Path, env: &[(&str, String)]) -> Child {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = nfbench(&refs);
    c.arg("--run-dir").arg(run_dir);
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().expect("nfbench starts")
}

/// `nfbench resume RUN_DIR --headless` to the end; returns (success, stderr).
pub fn resume_to_end(run_dir: &Path) -> (bool, String) {
    let out = nfbench(&["resume", "--headless"])
        .arg(run_dir)
        .output()
        .expect("nfbench resume runs");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), err)
}

/// Asserts that the run's step table holds every step 1..=steps exactly once, in order.
pub fn assert_every_step_once(run_dir: &Path, steps: u64, context: &str) {
    let run = read_run(&run_dir.join("metrics.h5"))
        .unwrap_or_else(|e| panic!("{context}: metrics.h5 does not open: {e}"));
    let got: Vec<u64> = run.steps.iter().map(|s| s.step).collect();
    let want: Vec<u64> = (1..=steps).collect();
    if got != want {
        let dups: Vec<u64> = got
            .windows(2)
            .filter(|w| w[0] >= w[1])
            .map(|w| w[1])
            .collect();
        let missing: Vec<u64> = want.iter().filter(|s| !got.contains(s)).copied().collect();
        panic!(
            "{context}: steps table is not 1..={steps} once each ({} rows; out of order or repeated: {dups:?}; \
             missing: {missing:?})",
            got.len()
        );
    }
}

/// `(step, loss bits)` of every row of the run's step table.
pub fn loss_bits(run_dir: &Path) -> Vec<(u64, u64)> {
    read_run(&run_dir.join("metrics.h5"))
        .expect("metrics.h5 opens")
        .steps
        .iter()
        .map(|s| (s.step, s.loss.to_bits()))
        .collect()
}

/// Sends SIGKILL to a child and reaps it.
pub fn sigkill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends a signal by name (`TERM`, `INT`) to a child.
pub fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status();
}
