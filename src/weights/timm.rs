//! timm's NFNet and NF-ResNet models as data: the `NfCfg` switches that change the function, and our config for each.

use super::{Result, WeightsError};
use crate::model::config::PaddingMode;
use crate::model::zoo::{BlockKind, ShortcutKind};
use crate::model::{zoo, Activation, ModelConfig};
use std::borrow::Cow;
use std::path::Path;

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

pub(super) const fn tm(timm: &'static str, ours: &'static str, flavour: TimmFlavour) -> TimmModel {
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
