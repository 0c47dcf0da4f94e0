//! Weights in and out: import timm state dicts and DeepMind Haiku trees so that our network computes their function,
//! load weights into a network (`model.init_from`), and export ours to timm's layout and DeepMind's naming.
//!
//! - `names`: the key-mapping tables (ours <-> timm, ours <-> Haiku) and the tensor layouts, as data.
//! - `fold`: the exact folds of timm's parametrisation into ours (WS epsilon, where gamma sits, SkipInit), with the
//!   algebra.
//! - `read`: safetensors, PyTorch zip pickles (candle's pickle reader) and npz archives in; safetensors out.
//!
//! What an imported network needs beyond its tensors (the activation variant, the padding mode, the shortcut) is a
//! [`ModelConfig`] written into the file's metadata ([`WEIGHTS_META_KEY`]), so loading it builds the same function.
//!
//! Supported exactly: timm's `dm_nfnet_f0..f6` (erf GELU, 'SAME' padding, gamma in the activations, SkipInit), its
//! `nf_resnet26/50/101` (symmetric padding, average-pool shortcuts, gamma folded out of the convs, no SkipInit), its
//! non-`dm_` `nfnet_f0..f7` (the same switches as `nf_resnet50` on NFNet blocks), and DeepMind's NFNet-F0..F7 Haiku
//! trees (flattened to `module/leaf` in an npz or safetensors file). Not supported: timm's `nf_regnet_*` (RegNet
//! blocks, SE in the middle), `nf_seresnet*` (SE ratio 1/16 after the block, a layout we have no table row for),
//! `nf_ecaresnet*` / `eca_nfnet_*` (ECA attention) and `nfnet_l0` (other widths and SE rounding): importing one
//! fails with the first key no rule covers.

pub mod fold;
pub mod names;
pub mod read;

use crate::model::config::PaddingMode;
use crate::model::zoo::{BlockKind, ShortcutKind};
use crate::model::{zoo, Activation, ModelConfig, ModelError, Network, ParamKind};
use candle_core::{DType, Device, Tensor};
use names::{KeyMap, Transform};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

pub use read::{read_tensors, write_safetensors, TensorFile};

/// Safetensors metadata key holding [`WeightsMeta`] as JSON.
pub const WEIGHTS_META_KEY: &str = "nfbench_weights";
/// The prefix of parameters in a run's checkpoint (`crate::record::checkpoint`'s convention).
pub const CHECKPOINT_PARAM_PREFIX: &str = "param/";
/// The prefix of the EMA weights in a run's checkpoint.
pub const CHECKPOINT_EMA_PREFIX: &str = "ema/";
/// The prefix of BatchNorm buffers in a run's checkpoint.
pub const CHECKPOINT_BUFFER_PREFIX: &str = "buffer/";

/// What can go wrong reading, mapping or writing weights. Every error names the file, and the tensor where one is
/// at fault.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a readable {what}: {source}", path.display())]
    Format {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error("{}: tensor `{name}`: {reason}", file.display())]
    Tensor {
        file: PathBuf,
        name: String,
        reason: String,
    },
    #[error("{}: {} tensor(s) do not fit `{model}`:\n  {}", file.display(), problems.len(), problems.join("\n  "))]
    Mismatch {
        file: PathBuf,
        model: String,
        problems: Vec<String>,
    },
    #[error("{}: {source}", file.display())]
    Model {
        file: PathBuf,
        #[source]
        source: ModelError,
    },
    #[error("{}: {source}", file.display())]
    Candle {
        file: PathBuf,
        #[source]
        source: candle_core::Error,
    },
}

impl WeightsError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        WeightsError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn format(
        path: &Path,
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        WeightsError::Format {
            path: path.to_path_buf(),
            what,
            source: Box::new(source),
        }
    }

    fn file(path: &Path, reason: impl Into<String>) -> Self {
        WeightsError::File {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    fn tensor(path: &Path, name: &str, reason: impl Into<String>) -> Self {
        WeightsError::Tensor {
            file: path.to_path_buf(),
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}

type Result<T> = std::result::Result<T, WeightsError>;

/// timm's `NfCfg` switches that change the function (not just the shapes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimmFlavour {
    /// gamma applied in each activation (`dm_` models); otherwise in every conv's scale.
    pub gamma_in_act: bool,
    /// TF 'SAME' padding (`dm_` models); otherwise symmetric.
    pub same_padding: bool,
    /// Blocks have a `skipinit_gain`.
    pub skipinit: bool,
    /// The WS epsilon, added to the variance.
    pub std_conv_eps: f64,
}

/// `_dm_nfnet_cfg`'s switches.
pub const TIMM_DM: TimmFlavour = TimmFlavour {
    gamma_in_act: true,
    same_padding: true,
    skipinit: true,
    std_conv_eps: 1e-5,
};

/// `NfCfg`'s defaults (`_nfres_cfg`, `_nfnet_cfg`).
pub const TIMM_DEFAULT: TimmFlavour = TimmFlavour {
    gamma_in_act: false,
    same_padding: false,
    skipinit: false,
    std_conv_eps: 1e-5,
};

/// A timm model name and the architecture of ours that computes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TimmModel {
    pub timm: Cow<'static, str>,
    pub ours: Cow<'static, str>,
    pub flavour: TimmFlavour,
}

const fn tm(timm: &'static str, ours: &'static str, flavour: TimmFlavour) -> TimmModel {
    TimmModel {
        timm: Cow::Borrowed(timm),
        ours: Cow::Borrowed(ours),
        flavour,
    }
}

/// timm's models that import exactly, by timm's name.
pub const TIMM_MODELS: &[TimmModel] = &[
    tm("dm_nfnet_f0", "nfnet_f0", TIMM_DM),
    tm("dm_nfnet_f1", "nfnet_f1", TIMM_DM),
    tm("dm_nfnet_f2", "nfnet_f2", TIMM_DM),
    tm("dm_nfnet_f3", "nfnet_f3", TIMM_DM),
    tm("dm_nfnet_f4", "nfnet_f4", TIMM_DM),
    tm("dm_nfnet_f5", "nfnet_f5", TIMM_DM),
    tm("dm_nfnet_f6", "nfnet_f6", TIMM_DM),
    tm("nfnet_f0", "nfnet_f0", TIMM_DEFAULT),
    tm("nfnet_f1", "nfnet_f1", TIMM_DEFAULT),
    tm("nfnet_f2", "nfnet_f2", TIMM_DEFAULT),
    tm("nfnet_f3", "nfnet_f3", TIMM_DEFAULT),
    tm("nfnet_f4", "nfnet_f4", TIMM_DEFAULT),
    tm("nfnet_f5", "nfnet_f5", TIMM_DEFAULT),
    tm("nfnet_f6", "nfnet_f6", TIMM_DEFAULT),
    tm("nfnet_f7", "nfnet_f7", TIMM_DEFAULT),
    tm("nf_resnet26", "nf_resnet26", TIMM_DEFAULT),
    tm("nf_resnet50", "nf_resnet50", TIMM_DEFAULT),
    tm("nf_resnet101", "nf_resnet101", TIMM_DEFAULT),
];

/// The timm model `name` names: timm's own name, or one of our normaliser-free architectures with an NFNet (then the
/// `dm_` switches) or NF-ResNet (timm's defaults) topology, e.g. `nfnet_tiny` for a small `dm_nfnet` configuration.
pub fn timm_model(name: &str) -> Option<TimmModel> {
    if let Some(m) = TIMM_MODELS.iter().find(|m| m.timm == name) {
        return Some(m.clone());
    }
    let arch = zoo::find(name).filter(|a| a.norm == zoo::Norm::NormFree)?;
    let flavour = match arch.topology.block {
        BlockKind::NfNet => TIMM_DM,
        _ => TIMM_DEFAULT,
    };
    Some(TimmModel {
        timm: Cow::Owned(name.to_string()),
        ours: Cow::Owned(arch.name()),
        flavour,
    })
}

/// The model config under which our network computes timm's `m`.
pub fn timm_config(m: &TimmModel) -> Result<ModelConfig> {
    let arch = zoo::find(&m.ours).ok_or_else(|| {
        WeightsError::file(
            Path::new(m.timm.as_ref()),
            format!("no architecture `{}`", m.ours),
        )
    })?;
    // timm's GELU is the erf form; its ReLU is ours.
    let activation = (arch.topology.activation == Activation::Gelu).then(|| "gelu_erf".to_string());
    // timm's NF-ResNets always pool then project in their transition blocks; its NFNets do as ours.
    let shortcut = (arch.topology.block != BlockKind::NfNet).then_some(ShortcutKind::AvgPoolConv);
    Ok(ModelConfig {
        name: arch.name(),
        activation,
        padding: if m.flavour.same_padding {
            PaddingMode::Same
        } else {
            PaddingMode::Symmetric
        },
        shortcut,
        ..ModelConfig::default()
    })
}

/// Where a file's tensors come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Timm(TimmModel),
    /// A Haiku tree flattened to `module/leaf` keys (DeepMind's NFNets).
    DeepMind,
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Timm(m) => format!("timm:{}", m.timm),
            Source::DeepMind => "deepmind".into(),
        }
    }
}

/// A fold of timm's parametrisation that an import applies (see [`fold`]); naming one in
/// [`ImportOptions::omit_fold`] leaves it out (to show that it matters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    WsEps,
    Gamma,
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// timm's model name (`dm_nfnet_f0`, `nf_resnet50`) or one of our architectures.
    pub model: String,
    /// Leave this fold out (a check that the fold matters; the result does not compute the source's function).
    pub omit_fold: Option<Fold>,
}

/// What a weights file records besides its tensors: enough to build the network that computes its function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsMeta {
    /// The function-defining part of the model config (name, activation, padding, shortcut).
    pub model: ModelConfig,
    pub num_classes: usize,
    pub in_channels: usize,
    /// Where the weights came from (`timm:dm_nfnet_f0`, `deepmind`, `nfbench`).
    pub source: String,
}

/// Imported weights under our names, with the config that computes their function.
#[derive(Debug)]
pub struct Imported {
    pub meta: WeightsMeta,
    /// Our parameter names, in the network's order.
    pub tensors: Vec<(String, Tensor)>,
}

impl Imported {
    /// Build the network on `device` and load the weights into it.
    pub fn build(&self, device: &Device) -> Result<Network> {
        let file = Path::new(&self.meta.source);
        let net = Network::build(
            &self.meta.model,
            self.meta.num_classes,
            self.meta.in_channels,
            0,
            device,
            0,
        )
        .map_err(|source| WeightsError::Model {
            file: file.to_path_buf(),
            source,
        })?;
        set_params(&net, file, &self.tensors)?;
        Ok(net)
    }

    /// Write the weights as our safetensors file, the config in its metadata.
    pub fn save(&self, out: &Path) -> Result<()> {
        write_safetensors(out, &self.tensors, meta_map(&self.meta))
    }
}

fn meta_map(meta: &WeightsMeta) -> HashMap<String, String> {
    // WeightsMeta is plain data: serialising it cannot fail.
    let json = serde_json::to_string(meta).unwrap_or_default();
    HashMap::from([(WEIGHTS_META_KEY.to_string(), json)])
}

/// The function-defining fields of a model config (what a weights file records).
pub fn function_config(cfg: &ModelConfig) -> ModelConfig {
    ModelConfig {
        name: cfg.name.clone(),
        activation: cfg.activation.clone(),
        padding: cfg.padding,
        shortcut: cfg.shortcut,
        alpha: cfg.alpha,
        ..ModelConfig::default()
    }
}

/// Decide where a file comes from: timm's keys start `stem.` / `stages.`, a Haiku tree's contain `/~/`.
fn detect_source(file: &TensorFile, model: &str) -> Result<Source> {
    let names: Vec<&str> = file.tensors().iter().map(|(n, _)| n.as_str()).collect();
    if names.iter().any(|n| n.contains("/~/")) {
        return Ok(Source::DeepMind);
    }
    if names
        .iter()
        .any(|n| n.starts_with("stages.") || n.starts_with("stem."))
    {
        return timm_model(model).map(Source::Timm).ok_or_else(|| {
            let known: Vec<&str> = TIMM_MODELS.iter().map(|m| m.timm.as_ref()).collect();
            WeightsError::file(
                file.path(),
                format!(
                    "a timm state dict, but `{model}` is no timm model that imports exactly; known: {} \
                     (or one of our normaliser-free architectures)",
                    known.join(", ")
                ),
            )
        });
    }
    Err(WeightsError::file(
        file.path(),
        "neither a timm state dict (keys `stem.*`, `stages.*`) nor a flattened Haiku tree (keys `NFNet/~/...`)",
    ))
}

fn dims_of(file: &TensorFile, key: &str) -> Result<Vec<usize>> {
    file.get(key)
        .map(|t| t.dims().to_vec())
        .ok_or_else(|| WeightsError::tensor(file.path(), key, "missing"))
}

/// (classes, input channels) from the classifier and the stem's first conv.
fn sizes(file: &TensorFile, source: &Source) -> Result<(usize, usize)> {
    let (head, stem) = match source {
        Source::Timm(_) => {
            let stem = if file.get("stem.conv1.weight").is_some() {
                "stem.conv1.weight"
            } else {
                "stem.conv.weight"
            };
            (dims_of(file, "head.fc.weight")?[0], dims_of(file, stem)?[1])
        }
        Source::DeepMind => {
            let head = dims_of(file, "NFNet/~/linear/w")?;
            let stem = dims_of(file, "NFNet/~/stem_conv0/w")?;
            (head[1], stem[2])
        }
    };
    Ok((head, stem))
}

/// Import a timm state dict or a flattened Haiku tree as weights of our network, with the folds that make it
/// compute the source's function. Strict: every missing, unexpected, mis-shaped tensor is named (all of them).
pub fn import(path: &Path, opts: &ImportOptions) -> Result<Imported> {
    let file = read_tensors(path)?;
    let source = detect_source(&file, &opts.model)?;
    let config = match &source {
        Source::Timm(m) => timm_config(m)?,
        Source::DeepMind => {
            let arch = zoo::find(&opts.model)
                .filter(|a| a.topology.block == BlockKind::NfNet)
                .ok_or_else(|| {
                    WeightsError::file(
                        path,
                        format!(
                            "a Haiku NFNet tree, but `{}` is none of our NFNets (nfnet_f0 .. nfnet_f7)",
                            opts.model
                        ),
                    )
                })?;
            ModelConfig {
                name: arch.name(),
                ..ModelConfig::default()
            }
        }
    };
    let (num_classes, in_channels) = sizes(&file, &source)?;
    let net = Network::build(&config, num_classes, in_channels, 0, &Device::Cpu, 0).map_err(
        |source| WeightsError::Model {
            file: path.to_path_buf(),
            source,
        },
    )?;
    let mut tensors = map_in(&net, &file, &source)?;
    if let Source::Timm(m) = &source {
        apply_timm_folds(&net, &mut tensors, &m.flavour, opts.omit_fold)
            .map_err(|e| candle_err(path, e))?;
    }
    Ok(Imported {
        meta: WeightsMeta {
            model: function_config(&config),
            num_classes,
            in_channels,
            source: source.describe(),
        },
        tensors,
    })
}

fn candle_err(path: &Path, source: candle_core::Error) -> WeightsError {
    WeightsError::Candle {
        file: path.to_path_buf(),
        source,
    }
}

/// Their key for one of our parameters.
fn key_for(net: &Network, name: &str, kind: ParamKind, source: &Source) -> Option<KeyMap> {
    match source {
        Source::Timm(_) => names::timm_key(name, kind),
        Source::DeepMind => names::haiku_key(name, kind, |stage, index| {
            net.plan()
                .blocks
                .iter()
                .find(|b| b.stage == stage && b.index == index)
                .map(|b| b.global_index)
        }),
    }
}

/// Their tensor in our layout.
fn to_ours(t: &Tensor, transform: Transform, ours: &[usize]) -> candle_core::Result<Tensor> {
    match transform {
        Transform::Same => Ok(t.clone()),
        Transform::Reshape => t.reshape(ours),
        Transform::Hwio => t.permute((3, 2, 0, 1))?.contiguous(),
        Transform::Transposed => t.t()?.contiguous(),
    }
}

/// Our tensor in their layout.
fn to_theirs(t: &Tensor, transform: Transform) -> candle_core::Result<Tensor> {
    match transform {
        Transform::Same => Ok(t.clone()),
        Transform::Reshape => t.reshape(names::their_shape(t.dims(), transform)),
        Transform::Hwio => t.permute((2, 3, 1, 0))?.contiguous(),
        Transform::Transposed => t.t()?.contiguous(),
    }
}

/// Every parameter of `net` from the file, in our layout; every problem (missing, mis-shaped, unexpected) listed.
fn map_in(net: &Network, file: &TensorFile, source: &Source) -> Result<Vec<(String, Tensor)>> {
    let no_skipinit = matches!(source, Source::Timm(m) if !m.flavour.skipinit);
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    let mut out = Vec::new();
    for p in net.params() {
        let ours = p.var.dims().to_vec();
        if p.kind == ParamKind::SkipGain && no_skipinit {
            // timm's blocks without SkipInit add the branch with gain 1 (see `fold`).
            out.push((
                p.name.clone(),
                Tensor::new(1f32, &Device::Cpu).map_err(|e| candle_err(file.path(), e))?,
            ));
            continue;
        }
        let Some(map) = key_for(net, &p.name, p.kind, source) else {
            problems.push(format!("`{}` (ours): no mapping rule covers it", p.name));
            continue;
        };
        let want = names::their_shape(&ours, map.transform);
        match file.get(&map.theirs) {
            None => problems.push(format!(
                "`{}` missing (for our `{}`, shape {want:?})",
                map.theirs, p.name
            )),
            Some(t) if t.dims() != want.as_slice() => problems.push(format!(
                "`{}` has shape {:?}, `{}` needs {want:?}",
                map.theirs,
                t.dims(),
                p.name
            )),
            Some(t) => {
                used.insert(map.theirs.clone());
                let t = to_ours(t, map.transform, &ours).map_err(|e| candle_err(file.path(), e))?;
                out.push((p.name.clone(), t));
            }
        }
    }
    for (name, _) in file.tensors() {
        if !used.contains(name) {
            problems.push(format!(
                "`{name}` unexpected: no parameter of ours maps to it"
            ));
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(WeightsError::Mismatch {
            file: file.path().to_path_buf(),
            model: net.name().to_string(),
            problems,
        })
    }
}

fn host(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

fn find<'a>(tensors: &'a [(String, Tensor)], name: &str) -> Option<&'a Tensor> {
    tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
}

fn replace(tensors: &mut [(String, Tensor)], name: &str, t: Tensor) {
    if let Some(slot) = tensors.iter_mut().find(|(n, _)| n == name) {
        slot.1 = t;
    }
}

/// Is this conv one timm scales by gamma where we do not (see [`fold`])?
fn extra_gamma_conv(module: &str) -> bool {
    module == "stem.conv" || module == "stem.conv0" || module == "final_conv"
}

/// Per-channel factors taking timm's gains to ours for conv `module` (eps fold, gamma share).
fn timm_gain_factors(
    w: &Tensor,
    module: &str,
    gamma: f64,
    flavour: &TimmFlavour,
    omit: Option<Fold>,
) -> candle_core::Result<Vec<f64>> {
    let (out_ch, fan_in) = (w.dim(0)?, w.elem_count() / w.dim(0)?);
    let mut f = if omit == Some(Fold::WsEps) {
        vec![1.0; out_ch]
    } else {
        fold::ws_eps_factors(&host(w)?, out_ch, fan_in, flavour.std_conv_eps)
    };
    if !flavour.gamma_in_act && omit != Some(Fold::Gamma) && extra_gamma_conv(module) {
        f.iter_mut().for_each(|x| *x *= gamma);
    }
    Ok(f)
}

fn apply_timm_folds(
    net: &Network,
    tensors: &mut [(String, Tensor)],
    flavour: &TimmFlavour,
    omit: Option<Fold>,
) -> candle_core::Result<()> {
    let gamma = net.plan().activation.gamma();
    rescale_conv_gains(net, tensors, flavour, omit, fold::scale_each)?;
    if !flavour.gamma_in_act && omit != Some(Fold::Gamma) {
        if let Some(w) = find(tensors, crate::model::CLASSIFIER_WEIGHT) {
            let w = Tensor::from_vec(
                fold::scale_all(&host(w)?, 1.0 / gamma),
                w.dims(),
                &Device::Cpu,
            )?;
            replace(tensors, crate::model::CLASSIFIER_WEIGHT, w);
        }
    }
    Ok(())
}

/// Set every parameter of `net` from `tensors` (our names, shapes already checked).
fn set_params(net: &Network, file: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    for p in net.params() {
        let t =
            find(tensors, &p.name).ok_or_else(|| WeightsError::tensor(file, &p.name, "missing"))?;
        let t = t
            .to_dtype(DType::F32)
            .and_then(|t| t.to_device(net.device()))
            .map_err(|e| candle_err(file, e))?;
        p.var
            .set(&t)
            .map_err(|e| WeightsError::tensor(file, &p.name, e.to_string()))?;
    }
    Ok(())
}

/// How [`load_into`] treats a classifier of another class count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeadPolicy {
    /// Every tensor must fit.
    #[default]
    Strict,
    /// A classifier (`linear.w`, `linear.b`) for another class count keeps the network's fresh initialisation (as
    /// timm does when `num_classes` differs); everything else must fit.
    ReplaceOnClassMismatch,
}

/// How [`load_into`] reads a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadOptions {
    pub head: HeadPolicy,
    /// From a run's checkpoint, take the EMA weights (`ema/`) instead of the raw ones (`param/`).
    pub ema: bool,
}

/// What [`load_into`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    pub loaded: usize,
    /// `(classes in the file, classes of the network)` when the head was replaced.
    pub replaced_head: Option<(usize, usize)>,
}

/// Load our weights file (an import's output or a run's checkpoint, whose `param/` tensors are taken) into `net`.
/// The file's recorded config must build the same function (activation, padding, shortcut) as `net`'s.
pub fn load_into(net: &mut Network, path: &Path, opts: LoadOptions) -> Result<LoadReport> {
    let head = opts.head;
    let file = read_tensors(path)?;
    if let Some(json) = file.metadata().get(WEIGHTS_META_KEY) {
        let meta: WeightsMeta = serde_json::from_str(json)
            .map_err(|e| WeightsError::format(path, "nfbench weights metadata", e))?;
        check_function(net, &meta.model, path)?;
    }
    let is_checkpoint = file
        .tensors()
        .iter()
        .any(|(n, _)| n.starts_with(CHECKPOINT_PARAM_PREFIX));
    let prefix = if opts.ema {
        CHECKPOINT_EMA_PREFIX
    } else {
        CHECKPOINT_PARAM_PREFIX
    };
    let has_ema = file
        .tensors()
        .iter()
        .any(|(n, _)| n.starts_with(CHECKPOINT_EMA_PREFIX));
    if opts.ema && !has_ema {
        return Err(WeightsError::file(
            path,
            "no EMA weights (`ema/` tensors): the run had no EMA",
        ));
    }
    let mut params: HashMap<String, Tensor> = HashMap::new();
    let mut buffers = Vec::new();
    for (name, t) in file.tensors() {
        if !is_checkpoint {
            params.insert(name.clone(), t.clone());
        } else if let Some(n) = name.strip_prefix(prefix) {
            params.insert(n.to_string(), t.clone());
        } else if let Some(n) = name.strip_prefix(CHECKPOINT_BUFFER_PREFIX) {
            buffers.push((n.to_string(), t.clone()));
        }
    }
    let mut problems = Vec::new();
    let mut replaced_head = None;
    let mut chosen = Vec::new();
    for p in net.params() {
        let want = p.var.dims();
        match params.remove(&p.name) {
            None => problems.push(format!("`{}` missing (shape {want:?})", p.name)),
            Some(t) if t.dims() == want => chosen.push((p.name.clone(), t)),
            Some(t) => {
                let is_head = p.name == crate::model::CLASSIFIER_WEIGHT
                    || p.name == crate::model::CLASSIFIER_BIAS;
                let only_classes = t.rank() == want.len() && t.dims()[1..] == want[1..];
                if head == HeadPolicy::ReplaceOnClassMismatch && is_head && only_classes {
                    replaced_head = Some((t.dims()[0], want[0]));
                } else {
                    problems.push(format!(
                        "`{}` has shape {:?}, the network needs {want:?}",
                        p.name,
                        t.dims()
                    ));
                }
            }
        }
    }
    for name in params.keys() {
        problems.push(format!(
            "`{name}` unexpected: the network has no such parameter"
        ));
    }
    if !problems.is_empty() {
        problems.sort();
        return Err(WeightsError::Mismatch {
            file: path.to_path_buf(),
            model: net.name().to_string(),
            problems,
        });
    }
    for (name, t) in &chosen {
        let p = net.params().iter().find(|p| &p.name == name);
        if let Some(p) = p {
            let t = t
                .to_dtype(DType::F32)
                .and_then(|t| t.to_device(net.device()))
                .map_err(|e| candle_err(path, e))?;
            p.var
                .set(&t)
                .map_err(|e| WeightsError::tensor(path, name, e.to_string()))?;
        }
    }
    if !buffers.is_empty() || !net.buffers().is_empty() {
        net.load_buffers(&buffers)
            .map_err(|source| WeightsError::Model {
                file: path.to_path_buf(),
                source,
            })?;
    }
    Ok(LoadReport {
        loaded: chosen.len(),
        replaced_head,
    })
}

/// The file's recorded function must be `net`'s: a different activation, padding or shortcut is another network.
fn check_function(net: &Network, recorded: &ModelConfig, path: &Path) -> Result<()> {
    let plan = net.plan();
    let theirs = crate::model::NetPlan::new(recorded, plan.num_classes, plan.in_channels, 0)
        .map_err(|source| WeightsError::Model {
            file: path.to_path_buf(),
            source,
        })?;
    let mismatch = |field: &str, file: String, ours: String| {
        WeightsError::file(
            path,
            format!("the weights were made for model.{field} = {file}, the network has {ours}: set model.{field} = {file}"),
        )
    };
    if theirs.name != plan.name {
        return Err(mismatch(
            "name",
            format!("{:?}", theirs.name),
            format!("{:?}", plan.name),
        ));
    }
    if theirs.activation != plan.activation {
        return Err(mismatch(
            "activation",
            format!("{:?}", theirs.activation.name()),
            format!("{:?}", plan.activation.name()),
        ));
    }
    if theirs.padding != plan.padding {
        return Err(mismatch(
            "padding",
            format!("{:?}", theirs.padding),
            format!("{:?}", plan.padding),
        ));
    }
    let pools =
        |p: &crate::model::NetPlan| p.blocks.iter().map(|b| b.shortcut_pool).collect::<Vec<_>>();
    let strides = |p: &crate::model::NetPlan| {
        p.blocks
            .iter()
            .map(|b| b.shortcut.as_ref().map(|c| c.stride))
            .collect::<Vec<_>>()
    };
    if pools(&theirs) != pools(plan) || strides(&theirs) != strides(plan) {
        return Err(mismatch(
            "shortcut",
            format!("{:?}", recorded.shortcut),
            "another shortcut".into(),
        ));
    }
    Ok(())
}

/// Where [`export`] writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportTarget {
    /// timm's state-dict layout (`dm_nfnet_*` for NFNets, `nf_resnet*` for NF-ResNets).
    Timm,
    /// DeepMind's Haiku naming, flattened to `module/leaf`.
    DeepMind,
}

/// Exported tensors and what differs between the network's function and the target's.
#[derive(Debug)]
pub struct Exported {
    pub tensors: Vec<(String, Tensor)>,
    /// timm's model name (or `deepmind`) the tensors are for.
    pub target: String,
    /// Where the target computes another function than this network (the tensors are still written).
    pub warnings: Vec<String>,
}

/// The timm model a network exports to: its `dm_` NFNet or its NF-ResNet, by topology.
fn export_flavour(net: &Network) -> Result<TimmModel> {
    let plan = net.plan();
    if plan.arch.norm != zoo::Norm::NormFree {
        return Err(WeightsError::file(
            Path::new(net.name()),
            "only normaliser-free networks export to timm",
        ));
    }
    let by_ours = TIMM_MODELS.iter().find(|m| {
        m.ours == plan.name
            && (m.flavour == TIMM_DM) == (plan.arch.topology.block == BlockKind::NfNet)
    });
    Ok(by_ours.cloned().unwrap_or_else(|| {
        let flavour = if plan.arch.topology.block == BlockKind::NfNet {
            TIMM_DM
        } else {
            TIMM_DEFAULT
        };
        TimmModel {
            timm: Cow::Owned(format!("(a timm NormFreeNet like {})", plan.name)),
            ours: Cow::Owned(plan.name.clone()),
            flavour,
        }
    }))
}

fn function_warnings(
    net: &Network,
    want_act: Activation,
    want_pad: PaddingMode,
    what: &str,
) -> Vec<String> {
    let plan = net.plan();
    let mut w = Vec::new();
    // A ReLU network is ReLU on both sides; only the GELU forms differ.
    let act = plan.activation;
    if matches!(act, Activation::Gelu | Activation::GeluErf) && act != want_act {
        w.push(format!(
            "{what} computes `{}`, this network `{}` (logits differ by ~1e-3)",
            want_act.name(),
            act.name()
        ));
    }
    if plan.padding != want_pad {
        w.push(format!(
            "{what} pads {want_pad:?}, this network {:?}",
            plan.padding
        ));
    }
    w
}

/// Our network's weights in timm's layout or DeepMind's naming, with the inverse folds.
pub fn export(net: &Network, target: ExportTarget) -> Result<Exported> {
    let file = Path::new(net.name());
    let mut ours: Vec<(String, Tensor)> = net
        .params()
        .iter()
        .map(|p| (p.name.clone(), p.var.as_tensor().to_device(&Device::Cpu)))
        .map(|(n, t)| t.map(|t| (n, t)))
        .collect::<candle_core::Result<_>>()
        .map_err(|e| candle_err(file, e))?;
    match target {
        ExportTarget::Timm => {
            let m = export_flavour(net)?;
            let want_act = if m.flavour == TIMM_DM || net.plan().activation == Activation::GeluErf {
                Activation::GeluErf
            } else {
                net.plan().activation
            };
            let want_pad = if m.flavour.same_padding {
                PaddingMode::Same
            } else {
                PaddingMode::Symmetric
            };
            let what = format!("timm's {}", m.timm);
            let mut warnings = function_warnings(net, want_act, want_pad, &what);
            if !m.flavour.same_padding
                && net
                    .plan()
                    .blocks
                    .iter()
                    .any(|b| b.stride > 1 && !b.shortcut_pool)
            {
                warnings.push(format!(
                    "{what} average-pools its strided shortcuts, this network does not"
                ));
            }
            unfold_timm(net, &mut ours, &m.flavour).map_err(|e| match e {
                UnfoldError::Candle(e) => candle_err(file, e),
                UnfoldError::Skip(name) => WeightsError::tensor(
                    file,
                    &name,
                    format!("{what} has no skip gain and the branch ends in Squeeze-Excite: a gain other than 1 cannot fold"),
                ),
            })?;
            let target = m.timm.to_string();
            let tensors = map_out(net, &ours, &Source::Timm(m))?;
            Ok(Exported {
                tensors,
                target,
                warnings,
            })
        }
        ExportTarget::DeepMind => {
            if net.plan().arch.topology.block != BlockKind::NfNet {
                return Err(WeightsError::file(
                    file,
                    "DeepMind's naming covers its NFNets only",
                ));
            }
            let warnings =
                function_warnings(net, Activation::Gelu, PaddingMode::Same, "DeepMind's NFNet");
            let tensors = map_out(net, &ours, &Source::DeepMind)?;
            Ok(Exported {
                tensors,
                target: "deepmind".into(),
                warnings,
            })
        }
    }
}

enum UnfoldError {
    Candle(candle_core::Error),
    Skip(String),
}

impl From<candle_core::Error> for UnfoldError {
    fn from(e: candle_core::Error) -> Self {
        UnfoldError::Candle(e)
    }
}

/// Every WS conv's gain in `tensors` rescaled by its timm factors (`scale_each` folds them in at import,
/// `unscale_each` takes them out at export): the one loop both directions share.
fn rescale_conv_gains(
    net: &Network,
    tensors: &mut [(String, Tensor)],
    flavour: &TimmFlavour,
    omit: Option<Fold>,
    rescale: fn(&[f32], &[f64]) -> Vec<f32>,
) -> candle_core::Result<()> {
    let gamma = net.plan().activation.gamma();
    let gains: Vec<String> = net
        .params()
        .iter()
        .filter(|p| p.kind == ParamKind::Gain && p.name.ends_with(".gain"))
        .map(|p| p.name.clone())
        .collect();
    for gain_name in gains {
        let module = gain_name.trim_end_matches(".gain");
        let (Some(w), Some(g)) = (
            find(tensors, &format!("{module}.w")),
            find(tensors, &gain_name),
        ) else {
            continue;
        };
        let f = timm_gain_factors(w, module, gamma, flavour, omit)?;
        let g = Tensor::from_vec(rescale(&host(g)?, &f), g.dims(), &Device::Cpu)?;
        replace(tensors, &gain_name, g);
    }
    Ok(())
}

/// The inverse of [`apply_timm_folds`], and the skip gains folded into the last branch conv where timm has none.
fn unfold_timm(
    net: &Network,
    tensors: &mut [(String, Tensor)],
    flavour: &TimmFlavour,
) -> std::result::Result<(), UnfoldError> {
    let gamma = net.plan().activation.gamma();
    rescale_conv_gains(net, tensors, flavour, None, fold::unscale_each)?;
    if !flavour.gamma_in_act {
        if let Some(w) = find(tensors, crate::model::CLASSIFIER_WEIGHT) {
            let w = Tensor::from_vec(fold::scale_all(&host(w)?, gamma), w.dims(), &Device::Cpu)?;
            replace(tensors, crate::model::CLASSIFIER_WEIGHT, w);
        }
    }
    if !flavour.skipinit {
        for block in &net.plan().blocks {
            let skip_name = format!("{}.skip_gain", block.name);
            let Some(s) = find(tensors, &skip_name) else {
                continue;
            };
            let s = f64::from(s.to_scalar::<f32>()?);
            if s == 1.0 {
                continue;
            }
            if block.se.is_some() {
                return Err(UnfoldError::Skip(skip_name));
            }
            let Some(last) = block.convs.last() else {
                continue;
            };
            for leaf in ["gain", "b"] {
                let name = format!("{}.{leaf}", last.name);
                if let Some(t) = find(tensors, &name) {
                    let t =
                        Tensor::from_vec(fold::scale_all(&host(t)?, s), t.dims(), &Device::Cpu)?;
                    replace(tensors, &name, t);
                }
            }
        }
    }
    Ok(())
}

/// Our tensors under their keys and layouts (skip gains dropped where the target has none).
fn map_out(
    net: &Network,
    ours: &[(String, Tensor)],
    source: &Source,
) -> Result<Vec<(String, Tensor)>> {
    let file = Path::new(net.name());
    let no_skipinit = matches!(source, Source::Timm(m) if !m.flavour.skipinit);
    let mut out = Vec::new();
    for p in net.params() {
        if p.kind == ParamKind::SkipGain && no_skipinit {
            continue;
        }
        let map = key_for(net, &p.name, p.kind, source).ok_or_else(|| {
            WeightsError::tensor(
                file,
                &p.name,
                "no mapping rule covers it: this architecture does not export",
            )
        })?;
        let t =
            find(ours, &p.name).ok_or_else(|| WeightsError::tensor(file, &p.name, "missing"))?;
        out.push((
            map.theirs,
            to_theirs(t, map.transform).map_err(|e| candle_err(file, e))?,
        ));
    }
    Ok(out)
}

/// Write exported tensors (safetensors; the target in its metadata).
pub fn save_exported(exported: &Exported, out: &Path) -> Result<()> {
    let meta = HashMap::from([("target".to_string(), exported.target.clone())]);
    write_safetensors(out, &exported.tensors, meta)
}

/// Our own weights file for a network (what `model.init_from` loads), its config recorded.
pub fn save_network(net: &Network, cfg: &ModelConfig, source: &str, out: &Path) -> Result<()> {
    let tensors: Vec<(String, Tensor)> = net
        .params()
        .iter()
        .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
        .collect();
    let meta = WeightsMeta {
        model: function_config(cfg),
        num_classes: net.num_classes(),
        in_channels: net.plan().in_channels,
        source: source.to_string(),
    };
    write_safetensors(out, &tensors, meta_map(&meta))
}
