//! Checkpoints: `checkpoints/step-<N>.safetensors`, written atomically, the last K and the best kept.
//!
//! A checkpoint is a safetensors file holding named tensors (the trainer names them; by convention
//! `param/<name>`, `momentum/<name>`, `ema/<name>`, `buffer/<name>`) and, in the safetensors metadata, the key
//! `nfbench` holding [`CheckpointMeta`] as JSON: step, loader position, RNG state, live hyperparameters, the preset.
//!
//! Writing goes to `.step-<N>.safetensors.tmp`, is fsynced, renamed into place, and the directory fsynced: a crash
//! or a failed write at any point leaves every earlier checkpoint intact, and a `.tmp` leftover is never loaded.

use super::run_dir::{sync_parent, temp_path, CHECKPOINT_DIR};
use super::{RecordError, Result};
use crate::train::messages::LiveParam;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Safetensors metadata key holding [`CheckpointMeta`] as JSON.
pub const META_KEY: &str = "nfbench";
/// Safetensors metadata key holding [`FORMAT`].
pub const FORMAT_KEY: &str = "format";
pub const FORMAT: &str = "nfbench-checkpoint-1";
/// Safetensors metadata key holding a checksum of the tensors (FNV-1a 64 over names and bytes, in name order, as
/// hex): a flipped bit in the tensor data, which the safetensors header cannot see, makes the file unreadable
/// instead of resuming from silently damaged weights. Files written before it existed load without the check.
pub const CHECKSUM_KEY: &str = "tensors_fnv1a64";
/// Tensor-name prefixes the trainer uses (a convention, not enforced here).
pub const PARAM_PREFIX: &str = "param/";
pub const MOMENTUM_PREFIX: &str = "momentum/";
pub const EMA_PREFIX: &str = "ema/";
pub const BUFFER_PREFIX: &str = "buffer/";
/// Environment variable that makes checkpoint writes fail after the temporary file is half written (a test hook
/// for the "failed write leaves the previous checkpoint intact" guarantee, usable on a real training process).
/// `1` fails every write; a number N > 1 fails the write of the checkpoint at step N only.
pub const FAIL_WRITE_ENV: &str = "NFBENCH_TEST_FAIL_CHECKPOINT_WRITE";

/// Everything but the tensors: enough to continue the run exactly where it stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Steps done: the resumed run's next step is `step + 1` in the step numbering of [`StepMetrics`].
    ///
    /// [`StepMetrics`]: crate::train::messages::StepMetrics
    pub step: u64,
    pub epoch: f64,
    pub seed: u64,
    /// Model name (for listing and for a sanity check on resume).
    pub model: String,
    /// Data-loader position (defined by the loader: epoch, offset in its permutation, ...).
    #[serde(default)]
    pub loader: serde_json::Value,
    /// RNG states (defined by the trainer).
    #[serde(default)]
    pub rng: serde_json::Value,
    /// Live hyperparameters in force at this step (they may differ from the preset after live edits).
    #[serde(default)]
    pub live: Vec<LiveParam>,
    /// The preset as used (TOML).
    #[serde(default)]
    pub preset_toml: String,
    /// Validation top-1 at or before this step (the latest evaluation); decides which checkpoint is "best".
    #[serde(default)]
    pub val_top1: Option<f64>,
    /// Anything else the trainer wants back on resume.
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A checkpoint to write.
#[derive(Debug, Clone)]
pub struct CheckpointState {
    pub meta: CheckpointMeta,
    /// Named tensors (any device, any dtype; bit-exact round trip).
    pub tensors: Vec<(String, Tensor)>,
}

/// A checkpoint read back.
#[derive(Debug, Clone)]
pub struct LoadedCheckpoint {
    pub path: PathBuf,
    pub meta: CheckpointMeta,
    pub tensors: HashMap<String, Tensor>,
    /// Newer checkpoint files that could not be read (each with the reason), skipped in favour of this one.
    pub skipped: Vec<String>,
}

impl LoadedCheckpoint {
    /// The tensor `name`, or an error naming the checkpoint file.
    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| RecordError::checkpoint(&self.path, format!("no tensor named `{name}`")))
    }
}

impl LoadedCheckpoint {
    /// The warning to show when newer checkpoints were skipped: each unreadable file with its reason, and the
    /// older one this load fell back to. `None` when this is the newest checkpoint.
    pub fn fallback_warning(&self) -> Option<String> {
        if self.skipped.is_empty() {
            return None;
        }
        Some(format!(
            "skipped the newer checkpoint(s): {}; falling back to the previous valid one, {} (step {})",
            self.skipped.join("; "),
            self.path.display(),
            self.meta.step
        ))
    }
}

/// A checkpoint file found on disk, from its header only.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    pub path: PathBuf,
    pub step: u64,
    pub val_top1: Option<f64>,
}

/// How to fail a write, for tests of the failure path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// Stop after writing half of the temporary file and report an I/O error, as a full disk would.
    FailMidWrite,
}

/// File name of the checkpoint at `step`.
pub fn file_name(step: u64) -> String {
    format!("step-{step}.safetensors")
}

/// The step of a checkpoint file name (`step-<N>.safetensors`), `None` for anything else.
pub fn step_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix("step-")?
        .strip_suffix(".safetensors")?
        .parse()
        .ok()
}

/// Writes `state` into `dir` (a run's `checkpoints/`) atomically, then keeps only the last `keep_last`
/// checkpoints and the best one (highest `val_top1`). Returns the new file's path.
///
/// The write fails as a test asks through [`FAIL_WRITE_ENV`].
pub fn save_checkpoint(dir: &Path, state: &CheckpointState, keep_last: usize) -> Result<PathBuf> {
    save_checkpoint_with(dir, state, keep_last, fault_from_env(state.meta.step))
}

/// [`save_checkpoint`] with an explicit [`Fault`].
pub fn save_checkpoint_with(
    dir: &Path,
    state: &CheckpointState,
    keep_last: usize,
    fault: Fault,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| RecordError::io(dir, e))?;
    let path = dir.join(file_name(state.meta.step));
    let tmp = temp_path(&path);
    // On any failure (a full disk above all) the temporary file goes, so it neither holds the space the next
    // attempt needs nor is mistaken for a checkpoint; the previous checkpoints are untouched.
    if let Err(err) = write_file(&tmp, state, fault) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err);
    }
    if let Err(e) = std::fs::rename(&tmp, &path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(RecordError::io(&path, e));
    }
    sync_parent(&path)?;
    prune(dir, keep_last)?;
    Ok(path)
}

fn fault_from_env(step: u64) -> Fault {
    match std::env::var(FAIL_WRITE_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(1) => Fault::FailMidWrite,
        Some(n) if n == step => Fault::FailMidWrite,
        _ => Fault::None,
    }
}

/// Serialises to `tmp` and fsyncs it.
fn write_file(tmp: &Path, state: &CheckpointState, fault: Fault) -> Result<()> {
    let meta_json = serde_json::to_string(&state.meta)
        .map_err(|e| RecordError::checkpoint(tmp, format!("cannot encode the metadata: {e}")))?;
    let mut names = std::collections::HashSet::new();
    for (name, _) in &state.tensors {
        if !names.insert(name.as_str()) {
            return Err(RecordError::checkpoint(
                tmp,
                format!("tensor `{name}` given twice"),
            ));
        }
    }
    let checksum = tensors_checksum(state.tensors.iter().map(|(n, t)| (n.as_str(), t)));
    let metadata = HashMap::from([
        (FORMAT_KEY.to_string(), FORMAT.to_string()),
        (META_KEY.to_string(), meta_json),
        (CHECKSUM_KEY.to_string(), checksum),
    ]);
    let views = state.tensors.iter().map(|(n, t)| (n.as_str(), t));
    safetensors::serialize_to_file(views, Some(metadata), tmp)
        .map_err(|e| RecordError::checkpoint(tmp, e.to_string()))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(tmp)
        .map_err(|e| RecordError::io(tmp, e))?;
    if fault == Fault::FailMidWrite {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.set_len(len / 2);
        return Err(RecordError::io(
            tmp,
            std::io::Error::other("injected write failure (test hook)"),
        ));
    }
    file.sync_all().map_err(|e| RecordError::io(tmp, e))
}

/// [`CHECKSUM_KEY`]'s value for named tensors (any order: they are hashed in name order).
fn tensors_checksum<'a, V: safetensors::View + 'a>(
    tensors: impl Iterator<Item = (&'a str, V)>,
) -> String {
    let mut sorted: Vec<(&str, V)> = tensors.collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut hash = Fnv1a64::new();
    for (name, view) in &sorted {
        hash.write(&(name.len() as u64).to_le_bytes());
        hash.write(name.as_bytes());
        let data = view.data();
        hash.write(&(data.len() as u64).to_le_bytes());
        hash.write(&data);
    }
    format!("{:016x}", hash.finish())
}

/// FNV-1a, 64 bits: no cryptography needed, only a check that the bytes read are the bytes written.
struct Fnv1a64(u64);

impl Fnv1a64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Fnv1a64(Self::OFFSET)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(Self::PRIME);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Checks the tensor data of a checkpoint read into memory against its [`CHECKSUM_KEY`], when it has one.
fn verify_checksum(path: &Path, bytes: &[u8], expected: Option<&String>) -> Result<()> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
        RecordError::checkpoint(path, format!("not a readable safetensors file: {e}"))
    })?;
    let actual = tensors_checksum(st.iter());
    if &actual != expected {
        return Err(RecordError::checkpoint(
            path,
            format!("tensor data is corrupted (checksum {actual}, written as {expected})"),
        ));
    }
    Ok(())
}

/// Checkpoint files in `dir`, oldest first, with the step and val top-1 from their headers. Files whose header
/// cannot be read are left out.
pub fn list_checkpoints(dir: &Path) -> Result<Vec<CheckpointInfo>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(RecordError::io(dir, e)),
    };
    for entry in entries {
        let path = entry.map_err(|e| RecordError::io(dir, e))?.path();
        let Some(step) = step_of(&path) else { continue };
        if let Ok(meta) = read_meta(&path) {
            out.push(CheckpointInfo {
                path,
                step,
                val_top1: meta.val_top1,
            });
        }
    }
    out.sort_by_key(|c| c.step);
    Ok(out)
}

/// Deletes all but the last `keep_last` checkpoints and the best one, and stale temporary files.
fn prune(dir: &Path, keep_last: usize) -> Result<()> {
    remove_stale_temps(dir);
    let all = list_checkpoints(dir)?;
    let best = best_of(&all).map(|c| c.step);
    let cut = all.len().saturating_sub(keep_last.max(1));
    for c in &all[..cut] {
        if Some(c.step) != best {
            std::fs::remove_file(&c.path).map_err(|e| RecordError::io(&c.path, e))?;
        }
    }
    Ok(())
}

/// Deletes `.step-<N>.safetensors.tmp` files: left by a process killed mid-write (only one process writes a run,
/// it holds the run's lock, and it is not writing one now), they only take space. Best effort.
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let stale = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix('.')?.strip_suffix(".tmp"))
            .is_some_and(|n| step_of(Path::new(n)).is_some());
        if stale {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The checkpoint with the highest validation top-1 (the latest of equals), if any has one.
pub fn best_of(all: &[CheckpointInfo]) -> Option<&CheckpointInfo> {
    all.iter()
        .filter(|c| c.val_top1.is_some_and(f64::is_finite))
        .fold(None, |best: Option<&CheckpointInfo>, c| match best {
            Some(b) if b.val_top1 > c.val_top1 => Some(b),
            _ => Some(c),
        })
}

/// Reads the [`CheckpointMeta`] of a checkpoint from its header alone, checking that the file is as long as the
/// header says (a torn file is refused without reading its tensors).
pub fn read_meta(path: &Path) -> Result<CheckpointMeta> {
    let mut file = std::fs::File::open(path).map_err(|e| RecordError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| RecordError::io(path, e))?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|_| RecordError::checkpoint(path, "shorter than a safetensors header"))?;
    let n = u64::from_le_bytes(len_bytes);
    if n > 100_000_000 || n + 8 > file_len {
        return Err(RecordError::checkpoint(
            path,
            "header length is invalid (torn or not a safetensors file)",
        ));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header)
        .map_err(|e| RecordError::checkpoint(path, format!("reading the header: {e}")))?;
    let header: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| RecordError::checkpoint(path, format!("header is not JSON: {e}")))?;
    let data_end = header
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    if 8 + n + data_end != file_len {
        return Err(RecordError::checkpoint(
            path,
            format!(
                "file is {file_len} bytes but its header describes {} (torn write?)",
                8 + n + data_end
            ),
        ));
    }
    let meta = header.get("__metadata__");
    meta_from_map(
        path,
        meta.and_then(|m| m.as_object()).map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect::<HashMap<_, _>>()
        }),
    )
}

fn meta_from_map(path: &Path, map: Option<HashMap<String, String>>) -> Result<CheckpointMeta> {
    let map =
        map.ok_or_else(|| RecordError::checkpoint(path, "no metadata (not written by nfbench)"))?;
    match map.get(FORMAT_KEY) {
        Some(f) if f == FORMAT => {}
        other => {
            return Err(RecordError::checkpoint(
                path,
                format!("metadata `{FORMAT_KEY}` is {other:?}, expected {FORMAT:?}"),
            ))
        }
    }
    let json = map.get(META_KEY).ok_or_else(|| {
        RecordError::checkpoint(path, format!("metadata has no `{META_KEY}` entry"))
    })?;
    serde_json::from_str(json)
        .map_err(|e| RecordError::checkpoint(path, format!("metadata `{META_KEY}`: {e}")))
}

/// Reads one checkpoint file whole, tensors onto `device`.
pub fn load_checkpoint(path: &Path, device: &Device) -> Result<LoadedCheckpoint> {
    let bytes = std::fs::read(path).map_err(|e| RecordError::io(path, e))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
        RecordError::checkpoint(path, format!("not a readable safetensors file: {e}"))
    })?;
    let map = header.metadata().clone();
    verify_checksum(path, &bytes, map.as_ref().and_then(|m| m.get(CHECKSUM_KEY)))?;
    let meta = meta_from_map(path, map)?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| RecordError::checkpoint(path, e.to_string()))?;
    Ok(LoadedCheckpoint {
        path: path.to_path_buf(),
        meta,
        tensors,
        skipped: Vec::new(),
    })
}

/// Loads the newest readable checkpoint of a run directory (`RUN_DIR/checkpoints/`); unreadable newer files are
/// skipped and listed in [`LoadedCheckpoint::skipped`]. `Ok(None)` when the run has no checkpoint at all.
pub fn load_latest(run_dir: &Path, device: &Device) -> Result<Option<LoadedCheckpoint>> {
    load_latest_up_to(run_dir, device, None)
}

/// [`load_latest`] among the checkpoints at or before step `max_step` (all when `None`); newer ones are skipped
/// and listed in [`LoadedCheckpoint::skipped`] with the reason. `Ok(None)` when none is at or before it.
///
/// A resume uses it to start no later than the last step its metrics log holds: a checkpoint can reach the disk
/// a moment before the metrics rows of its last steps do (the trainer writes it while the recorder is still
/// flushing), and resuming from it after a crash in that moment would leave those rows missing for good.
pub fn load_latest_up_to(
    run_dir: &Path,
    device: &Device,
    max_step: Option<u64>,
) -> Result<Option<LoadedCheckpoint>> {
    let dir = run_dir.join(CHECKPOINT_DIR);
    let mut files: Vec<(u64, PathBuf)> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| Some((step_of(&p)?, p)))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RecordError::io(&dir, e)),
    };
    files.sort();
    let mut skipped = Vec::new();
    if let Some(max) = max_step {
        while files.last().is_some_and(|(step, _)| *step > max) {
            let Some((step, path)) = files.pop() else {
                break;
            };
            skipped.push(format!(
                "{}: the metrics log ends at step {max}, before this checkpoint's step {step} (resuming from it \
                 would leave those steps missing from the log)",
                path.display()
            ));
        }
        if files.is_empty() {
            return Ok(None);
        }
    }
    for (_, path) in files.iter().rev() {
        match load_checkpoint(path, device) {
            Ok(mut ck) => {
                ck.skipped = skipped;
                return Ok(Some(ck));
            }
            Err(e) => skipped.push(crate::train::error_chain(&e)),
        }
    }
    if skipped.is_empty() {
        Ok(None)
    } else {
        Err(RecordError::checkpoint(
            &dir,
            format!("no readable checkpoint: {}", skipped.join("; ")),
        ))
    }
}
