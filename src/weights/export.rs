//! Export: our weights in timm's layout (the folds undone) or DeepMind's naming, with the metadata to load them back.

use super::import::{
    candle_err, find, function_config, host, key_for, meta_map, replace, rescale_conv_gains,
    to_theirs, Source, WeightsMeta,
};
use super::timm::{TimmFlavour, TimmModel, TIMM_DEFAULT, TIMM_DM, TIMM_MODELS};
use super::{fold, write_safetensors, Result, WeightsError};
use crate::model::config::PaddingMode;
use crate::model::zoo::BlockKind;
use crate::model::{zoo, Activation, ModelConfig, Network, ParamKind};
use candle_core::{Device, Tensor};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

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
pub(super) fn export_flavour(net: &Network) -> Result<TimmModel> {
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

pub(super) fn function_warnings(
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

pub(super) enum UnfoldError {
    Candle(candle_core::Error),
    Skip(String),
}

impl From<candle_core::Error> for UnfoldError {
    fn from(e: candle_core::Error) -> Self {
        UnfoldError::Candle(e)
    }
}

/// The inverse of [`apply_timm_folds`], and the skip gains folded into the last branch conv where timm has none.
pub(super) fn unfold_timm(
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
pub(super) fn map_out(
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
