//! Presets: TOML files under `presets/`, validated, inherited with `extends`, watched and applied live.
//!
//! API used by the trainer, the TUI and the CLI:
//! - [`load`]`(path) -> Result<Preset, PresetError>` reads a file and its `extends` chain (paths relative to the
//!   file that names them; cycles detected), merges tables key by key (child over parent; arrays replace),
//!   deserialises with unknown fields rejected and validates every range. [`load_chain`] also returns the files.
//! - [`apply_overrides`]`(&mut preset, &["agc.lambda=0.02"])` applies `--set` arguments (values are TOML values),
//!   each checked.
//! - [`fields`]`()` lists every field as data ([`FieldInfo`]: name, type, default, range, live, doc).
//! - [`diff`]`(old, new) -> PresetDiff { live: Vec<LiveParam>, restart_only: Vec<FieldChange> }`: what hot reload
//!   and TUI edits send to the trainer (live) and report (restart-only). [`set_live`] / [`check_live`] for keys.
//! - [`live`]: every live parameter declared once ([`LiveParam`], [`LiveValues`], [`LIVE`]); diff, write-back, the
//!   metrics record, the TUI and the trainer all read that table.
//! - [`write_back`]`(path, &preset)` writes the live values into the file with toml_edit (comments kept, atomic).
//! - [`watch::PresetWatcher::spawn`]`(path)`: a notify watcher on the file and its `extends` chain, debounced,
//!   sending [`watch::ReloadEvent`]s (`Changed { preset, diff }`, `Invalid { error }`, `Deleted { path }`) on
//!   `watcher.events`; dropping it stops it.
//! - [`PresetError`]'s Display always names the file (or `--set` argument), `line:column` when the file could be
//!   read, and the dotted field when the problem belongs to one.

mod diff;
mod error;
mod fields;
pub mod live;
mod load;
mod overrides;
pub mod rescue;
pub mod schema;
pub mod watch;
mod write_back;

pub use diff::{check_live, diff, live_param, live_params, set_live, FieldChange, PresetDiff};
pub use error::{ErrorKind, Position, PresetError};
pub use fields::{check_value, field, fields, violations, Bound, Check, FieldInfo, ACTIVATIONS};
pub use live::{LiveParam, LiveSpec, LiveValues, Stepping, LIVE};
pub use load::{load, load_chain, LoadedPreset};
pub use overrides::apply_overrides;
pub use schema::{
    AgcConfig, BadDevice, DataConfig, DeviceSpec, ModelConfig, OnHangup, OptimConfig, Precision,
    Preset, Remedy, RescueConfig, RunConfig, DEVICE_SPELLINGS,
};
pub use watch::{PresetWatcher, ReloadEvent};
pub use write_back::{write_back, write_back_fields};
