//! What a trainer is made of: a model behind [`TrainModel`], a [`BatchSource`], and the device; built from a preset.

use super::source::{BatchSource, EvalBatches, HostBatch, SourceInfo};
use super::state::TrainState;
use super::{Result, TrainError};
use crate::data::augment::EvalTransform;
use crate::data::{
    eval_resolution, open_dataset, DataError, DatasetInfo, EncodedEvalConfig, EncodedSplit,
    EncodedTrainConfig, Loader, LoaderConfig, LoaderPosition, OpenedData, Split,
};
use crate::model::{ForwardOptions, ModelError, Network, Param};
use crate::preset::schema::DeviceSpec;
use crate::preset::Preset;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The model as the trainer sees it. Implemented for the model zoo's `Network`, and by tiny models in tests.
pub trait TrainModel {
    /// Architecture name.
    fn name(&self) -> String;
    /// Every trainable parameter, in a fixed order.
    fn params(&self) -> &[Param];
    /// Logits `[B, classes]` and, when `spp` is asked, the signal-propagation tensor `[blocks, 3]`.
    /// `seed` drives per-step randomness (stochastic depth, dropout).
    fn forward(
        &mut self,
        x: &Tensor,
        train: bool,
        spp: bool,
        seed: u64,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)>;
    /// Change alpha, recomputing every downstream beta.
    fn set_alpha(&mut self, alpha: f64) -> std::result::Result<(), ModelError>;
    /// Residual blocks as (name, predicted variance at the block's input), in the order of the spp rows.
    fn spp_blocks(&self) -> Vec<(String, f64)>;
    /// Non-trainable state (BatchNorm running statistics), by name.
    fn buffers(&self) -> Vec<(String, Tensor)>;
    /// Restore non-trainable state written by [`TrainModel::buffers`].
    fn load_buffers(
        &mut self,
        buffers: &HashMap<String, Tensor>,
    ) -> std::result::Result<(), ModelError>;
}

/// A built model and its data.
pub struct Parts {
    pub model: Box<dyn TrainModel>,
    pub source: Box<dyn BatchSource>,
}

/// Open the device `spec` names; `auto` is the first CUDA GPU when built with CUDA and one is present, else the CPU.
pub fn select_device(spec: DeviceSpec) -> Result<Device> {
    match spec {
        // candle's `cuda_if_available` only asks whether the binary was built with CUDA; a CUDA build on a machine
        // without a GPU (or without a driver) must still train, on the CPU.
        DeviceSpec::Auto => Ok(Device::new_cuda(0).unwrap_or(Device::Cpu)),
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(n) => {
            Device::new_cuda(n).map_err(|source| TrainError::Device { spec, source })
        }
    }
}

fn bad(field: &str, reason: impl Into<String>) -> TrainError {
    TrainError::Config {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The checks the trainer relies on (the preset module validates files more thoroughly; this guards programmatic
/// presets too).
pub fn validate_preset(p: &Preset) -> Result<()> {
    if p.data.batch_size == 0 {
        return Err(bad("data.batch_size", "must be >= 1"));
    }
    if p.run.steps == 0 {
        return Err(bad("run.steps", "must be >= 1"));
    }
    if p.run.max_bad_steps == 0 {
        return Err(bad("run.max_bad_steps", "must be >= 1"));
    }
    let w = p.optim.warmup_epochs;
    if !(w.is_finite() && w >= 0.0) {
        return Err(bad(
            "optim.warmup_epochs",
            format!("{w} is not a finite value >= 0"),
        ));
    }
    if !(0.0..1.0).contains(&p.optim.ema_decay) {
        return Err(bad(
            "optim.ema_decay",
            format!("{} is outside [0, 1)", p.optim.ema_decay),
        ));
    }
    let k = p.optim.accumulate;
    if k == 0 || !p.data.batch_size.is_multiple_of(k) {
        return Err(bad(
            "optim.accumulate",
            format!(
                "{k} must be >= 1 and divide data.batch_size ({})",
                p.data.batch_size
            ),
        ));
    }
    if !(p.agc.eps.is_finite() && p.agc.eps > 0.0) {
        return Err(bad("agc.eps", format!("{} is not > 0", p.agc.eps)));
    }
    // Every live parameter by the rule the live table holds for it (the same the trainer checks live changes by).
    for live in crate::preset::LiveValues::from_preset(p).params() {
        if let Some(reason) = live.violation() {
            return Err(bad(live.key(), reason));
        }
    }
    Ok(())
}

/// The model zoo's [`Network`] as the trainer sees it.
pub struct NetworkModel(pub Network);

impl TrainModel for NetworkModel {
    fn name(&self) -> String {
        self.0.name().to_string()
    }
    fn params(&self) -> &[Param] {
        self.0.params()
    }
    fn forward(
        &mut self,
        x: &Tensor,
        train: bool,
        spp: bool,
        seed: u64,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let out = self.0.forward(x, &ForwardOptions { train, spp, seed })?;
        Ok((out.logits, out.spp))
    }
    fn set_alpha(&mut self, alpha: f64) -> std::result::Result<(), ModelError> {
        self.0.try_set_alpha(alpha)
    }
    fn spp_blocks(&self) -> Vec<(String, f64)> {
        self.0
            .blocks()
            .into_iter()
            .map(|b| (b.name, b.predicted_var))
            .collect()
    }
    fn buffers(&self) -> Vec<(String, Tensor)> {
        self.0.buffers()
    }
    fn load_buffers(
        &mut self,
        buffers: &HashMap<String, Tensor>,
    ) -> std::result::Result<(), ModelError> {
        let list: Vec<(String, Tensor)> = buffers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.0.load_buffers(&list)
    }
}

/// The data set through the prefetching [`Loader`]: an HDF5 file, or a folder of JPEG files.
pub struct LoaderSource {
    path: PathBuf,
    train: Loader,
    info: SourceInfo,
    eval: EvalPlan,
    position: LoaderPosition,
}

/// How an evaluation pass is read.
enum EvalPlan {
    /// The HDF5 file's validation split at this resolution, in batches of `batch`.
    Pixels { batch: usize, resolution: u32 },
    /// A JPEG split, cropped for evaluation.
    Jpeg {
        info: Box<DatasetInfo>,
        split: Arc<dyn EncodedSplit>,
        cfg: EncodedEvalConfig,
    },
}

/// The architecture's training and test resolutions (the zoo's pair), when the preset names a known one.
fn zoo_resolutions(preset: &Preset) -> Option<(u32, u32)> {
    crate::model::zoo::find(&preset.model.name).map(|a| {
        (
            a.topology.train_resolution as u32,
            a.topology.test_resolution as u32,
        )
    })
}

impl LoaderSource {
    /// Open `preset.data.path` for training from `start`.
    pub fn open(preset: &Preset, start: LoaderPosition) -> Result<Self> {
        let data = &preset.data;
        let path = data.path.clone();
        let ds = match open_dataset(&path)? {
            OpenedData::Pixels(ds) => ds,
            OpenedData::Encoded { info, train, val } => {
                return Self::open_encoded(preset, start, info, train, val)
            }
        };
        let cfg = LoaderConfig::from_preset(data, preset.run.seed);
        let train = Loader::train_with(&path, &cfg, preset.augment, start)?;
        let info = SourceInfo {
            num_classes: ds.num_classes,
            in_channels: ds.channels,
            resolution: train.resolution(),
            train_images: ds.train_count,
            val_images: ds.val_count,
        };
        Ok(Self {
            path,
            train,
            info,
            // Evaluation holds no gradients: larger batches are cheaper per image.
            eval: EvalPlan::Pixels {
                batch: (data.batch_size * 2).max(1),
                resolution: eval_resolution(data),
            },
            position: start,
        })
    }

    /// JPEG images -- a format-2 data set or a folder of files (`train/<class>/*.jpg`, `val/<class>/*.jpg`) --
    /// decoded on the loader's threads: the Inception crop at `data.resolution` (0: the architecture's training
    /// resolution) and the evaluation crop at `data.eval_resolution` (0: the architecture's test resolution).
    fn open_encoded(
        preset: &Preset,
        start: LoaderPosition,
        ds: DatasetInfo,
        train_split: Arc<dyn EncodedSplit>,
        val_split: Arc<dyn EncodedSplit>,
    ) -> Result<Self> {
        let data = &preset.data;
        let (zoo_train, zoo_test) = zoo_resolutions(preset).unwrap_or((224, 224));
        let pick = |set: u32, zoo: u32| if set == 0 { zoo } else { set };
        let resolution = pick(data.resolution, zoo_train);
        let eval_res = pick(data.eval_resolution, zoo_test);
        let cfg = EncodedTrainConfig::from_preset(data, preset.run.seed, resolution)
            .with_recipe(preset.augment);
        let train = Loader::train_encoded(ds.clone(), train_split, &cfg, start)?;
        let info = SourceInfo {
            num_classes: ds.num_classes,
            in_channels: 3,
            resolution: resolution as usize,
            train_images: ds.train_count,
            val_images: ds.val_count,
        };
        let eval = EvalPlan::Jpeg {
            info: Box::new(ds),
            split: val_split,
            cfg: EncodedEvalConfig {
                batch_size: (data.batch_size * 2).max(1),
                max_images: 0,
                decoder: data.decoder.kind(),
                transform: EvalTransform {
                    resolution: eval_res,
                    crop: data.eval_crop,
                    crop_pct: data.crop_pct,
                },
            },
        };
        Ok(Self {
            path: data.path.clone(),
            train,
            info,
            eval,
            position: start,
        })
    }
}

impl BatchSource for LoaderSource {
    fn info(&self) -> SourceInfo {
        self.info
    }

    fn next_train(&mut self) -> Result<HostBatch> {
        let batch = self.train.next().ok_or_else(|| {
            DataError::LoaderStopped(format!(
                "{}: the training loader ended",
                self.path.display()
            ))
        })??;
        self.position = batch.position;
        Ok(HostBatch {
            images: batch.images,
            labels: batch.labels,
            mix: batch.mix,
        })
    }

    fn position(&self) -> serde_json::Value {
        serde_json::to_value(self.position).unwrap_or(serde_json::Value::Null)
    }

    fn eval_batches(&mut self, max_images: usize) -> Result<EvalBatches<'_>> {
        let loader = match &self.eval {
            EvalPlan::Pixels { batch, resolution } => {
                Loader::eval(&self.path, Split::Val, *batch, *resolution, max_images)?
            }
            EvalPlan::Jpeg { info, split, cfg } => {
                let cfg = EncodedEvalConfig { max_images, ..*cfg };
                Loader::eval_encoded((**info).clone(), Arc::clone(split), &cfg)?
            }
        };
        Ok(Box::new(loader.map(|b| {
            b.map(|b| HostBatch::new(b.images, b.labels))
                .map_err(TrainError::from)
        })))
    }
}

/// The loader position stored in a checkpoint (the start of the data for a fresh run).
fn resume_position(resume: Option<&TrainState>) -> Result<LoaderPosition> {
    match resume {
        None => Ok(LoaderPosition::default()),
        Some(s) => serde_json::from_value(s.meta.loader_position.clone()).map_err(|e| {
            TrainError::checkpoint_from(format!("loader position {}", s.meta.loader_position), e)
        }),
    }
}

/// Build the preset's model and its data (HDF5 file or JPEG folder) on `device`, resuming the loader at the state's position.
pub fn build_parts(device: &Device, preset: &Preset, resume: Option<&TrainState>) -> Result<Parts> {
    let source = LoaderSource::open(preset, resume_position(resume)?)?;
    let info = source.info();
    let net = Network::build(
        &preset.model,
        info.num_classes,
        info.in_channels,
        info.resolution,
        device,
        preset.run.seed,
    )?;
    let mut net = net;
    // A fresh run starts from `model.init_from` (a resumed one from its checkpoint); another class count replaces
    // the classifier, as fine-tuning wants.
    if let (Some(path), None) = (&preset.model.init_from, resume) {
        let opts = crate::weights::LoadOptions {
            head: crate::weights::HeadPolicy::ReplaceOnClassMismatch,
            ema: false,
        };
        crate::weights::load_into(&mut net, path, opts)?;
    }
    net.set_precision(preset.run.dtype);
    if let Some(state) = resume {
        if state.meta.model != net.name() {
            return Err(TrainError::checkpoint(format!(
                "the checkpoint is of `{}`, the preset builds `{}`",
                state.meta.model,
                net.name()
            )));
        }
    }
    Ok(Parts {
        model: Box::new(NetworkModel(net)),
        source: Box::new(source),
    })
}
