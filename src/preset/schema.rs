//! The preset schema: plain serde data, one struct per TOML section.
//!
//! The manual of every field (what it does, its unit and its range) is its entry in the field table of
//! [`super::fields`] (`nfbench preset fields`), the only copy: a field added here needs an entry there, and a test
//! holds the two in step. Unknown fields are rejected.
//!
//! `[model]` and `[data]` are declared in their own layers ([`crate::model::config`], [`crate::data::config`]) so
//! the model and the loader never import presets; they are re-exported here.

pub use super::rescue::{Remedy, RescueConfig};
pub use crate::data::config::DataConfig;
pub use crate::data::recipe::{AugmentConfig, Mixing};
pub use crate::model::config::ModelConfig;
pub use crate::model::Precision;
pub use crate::optim::{EmaWarmup, LossKind};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A whole preset: what to train, on what, with which recipe, for how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Preset {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// The network.
    pub model: ModelConfig,
    /// The data set and how batches are made from it.
    pub data: DataConfig,
    /// RandAugment, MixUp and CutMix of training batches (off by default).
    pub augment: AugmentConfig,
    /// The optimiser and its schedule.
    pub optim: OptimConfig,
    /// Adaptive Gradient Clipping.
    pub agc: AgcConfig,
    /// Length of the run, evaluation, statistics, checkpoints, device.
    pub run: RunConfig,
    /// What the trainer does when the run diverges (off by default).
    #[serde(default)]
    pub rescue: RescueConfig,
    /// The grid `nfbench sweep` runs over this preset (ignored by a single run).
    #[serde(default)]
    pub sweep: SweepConfig,
}

/// `[sweep]`: the grid `nfbench sweep` runs (its `--grid`, `--jobs` and `--scale-lr` flags override it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepConfig {
    /// One axis per entry; the grid is their cartesian product, the first axis varying slowest.
    pub grid: Vec<GridAxis>,
    /// Runs trained at the same time (the CPU cores are split between them).
    pub jobs: usize,
    /// How the learning rate follows `data.batch_size` across the grid.
    pub scale_lr: ScaleLr,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            grid: Vec::new(),
            jobs: 1,
            scale_lr: ScaleLr::Linear,
        }
    }
}

/// One axis of a sweep grid: a preset key and the values it takes (TOML values, as `--set` takes them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridAxis {
    pub key: String,
    pub values: Vec<toml::Value>,
}

/// `sweep.scale_lr`: the peak learning rate's rule across batch sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleLr {
    /// The preset's own rule: peak = `optim.lr` x batch / 256 (grows linearly with the batch).
    #[default]
    Linear,
    /// The square-root rule: the peak of the preset's batch size, times sqrt(batch / preset batch).
    Sqrt,
    /// The peak of the preset's batch size at every batch size (`optim.lr_scale` compensates).
    None,
}

impl ScaleLr {
    /// Every rule's TOML name, for the field table's check.
    pub const NAMES: &'static [&'static str] = &["linear", "sqrt", "none"];

    /// The factor on `optim.lr_scale` that turns the preset's linear rule into this one, for a run at `batch`
    /// swept from a preset at `base_batch`.
    pub fn lr_scale_factor(self, base_batch: usize, batch: usize) -> f64 {
        let ratio = base_batch.max(1) as f64 / batch.max(1) as f64;
        match self {
            ScaleLr::Linear => 1.0,
            ScaleLr::Sqrt => ratio.sqrt(),
            ScaleLr::None => ratio,
        }
    }
}

/// `[optim]`: SGD with Nesterov momentum, coupled weight decay, warm-up then cosine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    pub lr: f64,
    pub lr_scale: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub warmup_epochs: f64,
    pub label_smoothing: f64,
    pub ema_decay: f64,
    pub ema_warmup: EmaWarmup,
    pub ema_start: u64,
    pub loss: LossKind,
    pub accumulate: usize,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 0.1,
            lr_scale: 1.0,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 2e-5,
            warmup_epochs: 5.0,
            label_smoothing: 0.1,
            ema_decay: 0.0,
            ema_warmup: EmaWarmup::Constant,
            ema_start: 0,
            loss: LossKind::SoftmaxCrossEntropy,
            accumulate: 1,
        }
    }
}

/// `[agc]`: Adaptive Gradient Clipping, unit-wise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgcConfig {
    pub enabled: bool,
    pub lambda: f64,
    pub eps: f64,
    pub exclude: Vec<String>,
}

impl Default for AgcConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            lambda: 0.01,
            eps: 1e-3,
            exclude: vec![crate::model::CLASSIFIER_WEIGHT.into()],
        }
    }
}

/// `[run]`: length, cadence of evaluation, statistics and checkpoints, and where it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    pub steps: u64,
    pub eval_every: u64,
    pub stats_every: u64,
    pub checkpoint_every: u64,
    pub keep_checkpoints: usize,
    pub seed: u64,
    pub device: DeviceSpec,
    pub dtype: Precision,
    pub max_bad_steps: u32,
    pub on_hangup: OnHangup,
    pub eval_weights: EvalWeights,
}

/// `run.eval_weights`: which weights an evaluation measures (with `optim.ema_decay` 0 there is no EMA and the raw
/// weights are measured whatever this says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvalWeights {
    /// The moving average, as the paper reports.
    #[default]
    Ema,
    /// The weights being trained.
    Raw,
    /// Both, one eval row each.
    Both,
}

/// What the workbench does when its terminal goes away (SIGHUP, a dropped SSH connection, a closed window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnHangup {
    /// Training goes on headless; `nfbench attach` reopens the workbench on it.
    #[default]
    Detach,
    /// A final checkpoint, then exit 0.
    Stop,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            steps: 3000,
            eval_every: 500,
            stats_every: 50,
            checkpoint_every: 1000,
            keep_checkpoints: 3,
            seed: 0,
            device: DeviceSpec::Auto,
            dtype: Precision::F32,
            max_bad_steps: 5,
            on_hangup: OnHangup::Detach,
            eval_weights: EvalWeights::Ema,
        }
    }
}

/// `run.device`: where to train, spelled `auto`, `cpu` or `cuda:N` in TOML and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The first CUDA GPU when there is one, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// The CUDA GPU with this ordinal.
    Cuda(usize),
}

/// The spellings `run.device` accepts, as error messages list them.
pub const DEVICE_SPELLINGS: &str = "`auto`, `cpu` or `cuda:N` (N a device number)";

/// A `run.device` spelling that is none of [`DEVICE_SPELLINGS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("run.device `{0}` is not {DEVICE_SPELLINGS}")]
pub struct BadDevice(pub String);

impl FromStr for DeviceSpec {
    type Err = BadDevice;

    /// Exact spellings only (no trimming): the preset file and `--device` accept the same words.
    fn from_str(s: &str) -> Result<Self, BadDevice> {
        match s {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| BadDevice(s.to_string())),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        // `invalid_value` (not `custom`) so the preset loader files it as a range error, like a bad number.
        text.parse().map_err(|_| {
            serde::de::Error::invalid_value(serde::de::Unexpected::Str(&text), &DEVICE_SPELLINGS)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_lr_factors_give_the_rule_s_peak() {
        // Peak = lr * batch / 256 * lr_scale; from batch 64 to 256 the linear peak grows 4x, sqrt 2x, none 1x.
        let peak = |rule: ScaleLr, b: usize| b as f64 / 256.0 * rule.lr_scale_factor(64, b);
        let base = 64.0 / 256.0;
        assert!((peak(ScaleLr::Linear, 256) / base - 4.0).abs() < 1e-12);
        assert!((peak(ScaleLr::Sqrt, 256) / base - 2.0).abs() < 1e-12);
        assert!((peak(ScaleLr::None, 256) / base - 1.0).abs() < 1e-12);
    }

    #[test]
    fn device_spellings_round_trip_and_bad_ones_are_named() {
        for (text, spec) in [
            ("auto", DeviceSpec::Auto),
            ("cpu", DeviceSpec::Cpu),
            ("cuda:3", DeviceSpec::Cuda(3)),
        ] {
            assert_eq!(text.parse::<DeviceSpec>(), Ok(spec));
            assert_eq!(spec.to_string(), text);
        }
        for bad in ["gpu", "cuda", "cuda:x", "", " cpu", "cuda:-1"] {
            let e = bad.parse::<DeviceSpec>().unwrap_err();
            assert_eq!(e, BadDevice(bad.to_string()));
            assert!(e.to_string().contains("`auto`, `cpu` or `cuda:N`"), "{e}");
        }
    }
}
