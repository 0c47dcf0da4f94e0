//! Load weights into a network (`model.init_from`): strict by default, the classifier replaced on another class
//! count, and the file's recorded function checked against the network's.

use super::import::{candle_err, WeightsMeta};
use super::{
    read_tensors, Result, WeightsError, CHECKPOINT_BUFFER_PREFIX, CHECKPOINT_EMA_PREFIX,
    CHECKPOINT_PARAM_PREFIX, WEIGHTS_META_KEY,
};
use crate::model::{ModelConfig, Network};
use candle_core::{DType, Tensor};
use std::collections::HashMap;
use std::path::Path;

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
pub(super) fn check_function(net: &Network, recorded: &ModelConfig, path: &Path) -> Result<()> {
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
