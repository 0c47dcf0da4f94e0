//! Import: detect a file's source (timm or Haiku), map its keys and layouts onto our network, fold timm's
//! parametrisation into ours, and record the function in the metadata.

use super::names::{self, KeyMap, Transform};
use super::timm::{timm_config, timm_model, TimmFlavour, TimmModel, TIMM_MODELS};
use super::{
    fold, read_tensors, write_safetensors, Result, TensorFile, WeightsError, WEIGHTS_META_KEY,
};
use crate::model::zoo::BlockKind;
use crate::model::{zoo, ModelConfig, Network, ParamKind};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

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

pub(super) fn meta_map(meta: &WeightsMeta) -> HashMap<String, String> {
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
pub(super) fn detect_source(file: &TensorFile, model: &str) -> Result<Source> {
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

pub(super) fn dims_of(file: &TensorFile, key: &str) -> Result<Vec<usize>> {
    file.get(key)
        .map(|t| t.dims().to_vec())
        .ok_or_else(|| WeightsError::tensor(file.path(), key, "missing"))
}

/// (classes, input channels) from the classifier and the stem's first conv.
pub(super) fn sizes(file: &TensorFile, source: &Source) -> Result<(usize, usize)> {
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

pub(super) fn candle_err(path: &Path, source: candle_core::Error) -> WeightsError {
    WeightsError::Candle {
        file: path.to_path_buf(),
        source,
    }
}

/// Their key for one of our parameters.
pub(super) fn key_for(
    net: &Network,
    name: &str,
    kind: ParamKind,
    source: &Source,
) -> Option<KeyMap> {
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
pub(super) fn to_ours(
    t: &Tensor,
    transform: Transform,
    ours: &[usize],
) -> candle_core::Result<Tensor> {
    match transform {
        Transform::Same => Ok(t.clone()),
        Transform::Reshape => t.reshape(ours),
        Transform::Hwio => t.permute((3, 2, 0, 1))?.contiguous(),
        Transform::Transposed => t.t()?.contiguous(),
    }
}

/// Our tensor in their layout.
pub(super) fn to_theirs(t: &Tensor, transform: Transform) -> candle_core::Result<Tensor> {
    match transform {
        Transform::Same => Ok(t.clone()),
        Transform::Reshape => t.reshape(names::their_shape(t.dims(), transform)),
        Transform::Hwio => t.permute((2, 3, 1, 0))?.contiguous(),
        Transform::Transposed => t.t()?.contiguous(),
    }
}

/// Every parameter of `net` from the file, in our layout; every problem (missing, mis-shaped, unexpected) listed.
pub(super) fn map_in(
    net: &Network,
    file: &TensorFile,
    source: &Source,
) -> Result<Vec<(String, Tensor)>> {
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

pub(super) fn host(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

pub(super) fn find<'a>(tensors: &'a [(String, Tensor)], name: &str) -> Option<&'a Tensor> {
    tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
}

pub(super) fn replace(tensors: &mut [(String, Tensor)], name: &str, t: Tensor) {
    if let Some(slot) = tensors.iter_mut().find(|(n, _)| n == name) {
        slot.1 = t;
    }
}

/// Is this conv one timm scales by gamma where we do not (see [`fold`])?
pub(super) fn extra_gamma_conv(module: &str) -> bool {
    module == "stem.conv" || module == "stem.conv0" || module == "final_conv"
}

/// Per-channel factors taking timm's gains to ours for conv `module` (eps fold, gamma share).
pub(super) fn timm_gain_factors(
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

pub(super) fn apply_timm_folds(
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
pub(super) fn set_params(net: &Network, file: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
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

/// Every WS conv's gain in `tensors` rescaled by its timm factors (`scale_each` folds them in at import,
/// `unscale_each` takes them out at export): the one loop both directions share.
pub(super) fn rescale_conv_gains(
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
