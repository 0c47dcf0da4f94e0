//! The key mapping between our parameter names and timm's state-dict keys / DeepMind's Haiku tree, as tables.
//!
//! Our names are `<module>.<leaf>` (`s2.b0.conv1b.gain`, see `crate::model`). A name maps by its module path (the
//! tables below, a block's modules relative to the block) and its leaf; the layout of the tensor changes with the
//! kind of parameter ([`Transform`]). Nothing here knows an architecture: every network's names map by the same rules.

use crate::model::ParamKind;

/// timm's modules for ours outside the blocks (`stem.conv0` is NFNet's deep stem, `stem.conv` the ResNet one).
pub const TIMM_TOP: &[(&str, &str)] = &[
    ("stem.conv", "stem.conv"),
    ("stem.conv0", "stem.conv1"),
    ("stem.conv1", "stem.conv2"),
    ("stem.conv2", "stem.conv3"),
    ("stem.conv3", "stem.conv4"),
    ("final_conv", "final_conv"),
    ("linear", "head.fc"),
];

/// timm's modules inside a block `stages.{stage - 1}.{index}`, for ours inside `s{stage}.b{index}`.
pub const TIMM_BLOCK: &[(&str, &str)] = &[
    ("conv0", "conv1"),
    ("conv1", "conv2"),
    ("conv1b", "conv2b"),
    ("conv2", "conv3"),
    ("conv_shortcut", "downsample.conv"),
    ("se.fc0", "attn_last.fc1"),
    ("se.fc1", "attn_last.fc2"),
];

/// timm's leaves for ours. A block's `skip_gain` is timm's `skipinit_gain` (a leaf of the block itself).
pub const TIMM_LEAVES: &[(&str, &str)] = &[
    ("w", "weight"),
    ("gain", "gain"),
    ("b", "bias"),
    ("skip_gain", "skipinit_gain"),
];

/// Haiku's modules (under the network's `NFNet/~/`) for ours outside the blocks.
pub const HAIKU_TOP: &[(&str, &str)] = &[
    ("stem.conv0", "stem_conv0"),
    ("stem.conv1", "stem_conv1"),
    ("stem.conv2", "stem_conv2"),
    ("stem.conv3", "stem_conv3"),
    ("final_conv", "final_conv"),
    ("linear", "linear"),
];

/// Haiku's modules inside a block (`nf_block`, `nf_block_1`, ... by the global block index) for ours.
pub const HAIKU_BLOCK: &[(&str, &str)] = &[
    ("conv0", "conv0"),
    ("conv1", "conv1"),
    ("conv1b", "conv1b"),
    ("conv2", "conv2"),
    ("conv_shortcut", "conv_shortcut"),
    ("se.fc0", "squeeze_excite/~/linear"),
    ("se.fc1", "squeeze_excite/~/linear_1"),
];

/// Haiku's leaves: a `WSConv2D`'s bias is `bias`, a `Linear`'s `b`; `skip_gain` is a leaf of the block.
pub const HAIKU_CONV_LEAVES: &[(&str, &str)] = &[("w", "w"), ("gain", "gain"), ("b", "bias")];
pub const HAIKU_LINEAR_LEAVES: &[(&str, &str)] = &[("w", "w"), ("b", "b")];

/// The root module of DeepMind's NFNet tree.
pub const HAIKU_ROOT: &str = "NFNet";

/// How a tensor's layout differs between the two sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// The same shape and layout.
    Same,
    /// The same values in another shape (timm's gains `[O, 1, 1, 1]`, its SE 1x1 convs `[O, I, 1, 1]`).
    Reshape,
    /// Haiku's conv kernels, HWIO, vs our OIHW.
    Hwio,
    /// Haiku's linear weights, `[in, out]`, vs our `[out, in]`.
    Transposed,
}

/// Their key and layout for one of our parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyMap {
    pub theirs: String,
    pub transform: Transform,
}

/// `s{stage}.b{index}.<rest>` split into (stage from 1, index, rest).
fn split_block(name: &str) -> Option<(usize, usize, &str)> {
    let rest = name.strip_prefix('s')?;
    let (stage, rest) = rest.split_once(".b")?;
    let (index, rest) = rest.split_once('.')?;
    Some((stage.parse().ok()?, index.parse().ok()?, rest))
}

/// (module, leaf) of one of our names: the leaf is the last dotted part, `skip_gain` a leaf of its block.
fn split_leaf(name: &str) -> Option<(&str, &str)> {
    name.rsplit_once('.')
}

fn lookup<'a>(table: &'a [(&str, &str)], ours: &str) -> Option<&'a str> {
    table.iter().find(|(o, _)| *o == ours).map(|(_, t)| *t)
}

/// timm's key for one of our parameters, or `None` when no rule covers the name.
pub fn timm_key(ours: &str, kind: ParamKind) -> Option<KeyMap> {
    let (module, leaf) = split_leaf(ours)?;
    let t_leaf = lookup(TIMM_LEAVES, leaf)?;
    let t_module = if let Some((stage, index, rest)) = split_block(module) {
        let prefix = format!("stages.{}.{index}", stage.checked_sub(1)?);
        if leaf == "skip_gain" {
            return Some(KeyMap {
                theirs: format!("{prefix}.{t_leaf}"),
                transform: Transform::Same,
            });
        }
        format!("{prefix}.{}", lookup(TIMM_BLOCK, rest)?)
    } else if leaf == "skip_gain" {
        // A block's skip gain: `s1.b0.skip_gain` splits as module `s1.b0`.
        let (stage, index, _) = split_block(&format!("{ours}."))?;
        return Some(KeyMap {
            theirs: format!("stages.{}.{index}.{t_leaf}", stage.checked_sub(1)?),
            transform: Transform::Same,
        });
    } else {
        lookup(TIMM_TOP, module)?.to_string()
    };
    let transform = match kind {
        ParamKind::Gain => Transform::Reshape,
        // The classifier is an nn.Linear; SE's layers are 1x1 convs.
        ParamKind::LinearWeight if module.contains(".se.") => Transform::Reshape,
        _ => Transform::Same,
    };
    Some(KeyMap {
        theirs: format!("{t_module}.{t_leaf}"),
        transform,
    })
}

/// The Haiku module of block `global_index` (`nf_block`, then `nf_block_1`, ...: Haiku numbers repeated names).
pub fn haiku_block(global_index: usize) -> String {
    if global_index == 0 {
        "nf_block".to_string()
    } else {
        format!("nf_block_{global_index}")
    }
}

/// DeepMind's key (`module/leaf`, the Haiku tree flattened) for one of our parameters; `block_index` gives a
/// block's global index from its (stage, index).
pub fn haiku_key(
    ours: &str,
    kind: ParamKind,
    block_index: impl Fn(usize, usize) -> Option<usize>,
) -> Option<KeyMap> {
    let root = HAIKU_ROOT;
    if let Some(block) = ours.strip_suffix(".skip_gain") {
        let (stage, index, _) = split_block(&format!("{block}."))?;
        let k = block_index(stage, index)?;
        return Some(KeyMap {
            theirs: format!("{root}/~/{}/skip_gain", haiku_block(k)),
            transform: Transform::Same,
        });
    }
    let (module, leaf) = split_leaf(ours)?;
    let is_linear = matches!(kind, ParamKind::LinearWeight)
        || module.ends_with("linear")
        || module.contains(".se.");
    let leaves = if is_linear {
        HAIKU_LINEAR_LEAVES
    } else {
        HAIKU_CONV_LEAVES
    };
    let h_leaf = lookup(leaves, leaf)?;
    let h_module = match split_block(module) {
        Some((stage, index, rest)) => {
            let k = block_index(stage, index)?;
            format!("{}/~/{}", haiku_block(k), lookup(HAIKU_BLOCK, rest)?)
        }
        None => lookup(HAIKU_TOP, module)?.to_string(),
    };
    let transform = match kind {
        ParamKind::ConvWeight => Transform::Hwio,
        ParamKind::LinearWeight => Transform::Transposed,
        _ => Transform::Same,
    };
    Some(KeyMap {
        theirs: format!("{root}/~/{h_module}/{h_leaf}"),
        transform,
    })
}

/// Their shape for our `shape` under `transform` (`timm_gain` etc. add trailing unit dims).
pub fn their_shape(ours: &[usize], transform: Transform) -> Vec<usize> {
    match transform {
        Transform::Same => ours.to_vec(),
        // Gains [O] -> [O, 1, 1, 1]; SE weights [O, I] -> [O, I, 1, 1].
        Transform::Reshape => {
            let mut s = ours.to_vec();
            s.resize(4, 1);
            s
        }
        Transform::Hwio => match ours {
            [o, i, h, w] => vec![*h, *w, *i, *o],
            _ => ours.to_vec(),
        },
        Transform::Transposed => match ours {
            [o, i] => vec![*i, *o],
            _ => ours.to_vec(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timm_keys_follow_the_table() {
        let k = |n: &str, kind| timm_key(n, kind).map(|m| (m.theirs, m.transform));
        use ParamKind::*;
        assert_eq!(
            k("s1.b0.conv0.w", ConvWeight),
            Some(("stages.0.0.conv1.weight".into(), Transform::Same))
        );
        assert_eq!(
            k("s3.b4.conv1b.gain", Gain),
            Some(("stages.2.4.conv2b.gain".into(), Transform::Reshape))
        );
        assert_eq!(
            k("s2.b0.conv_shortcut.b", Bias),
            Some(("stages.1.0.downsample.conv.bias".into(), Transform::Same))
        );
        assert_eq!(
            k("s4.b2.se.fc0.w", LinearWeight),
            Some(("stages.3.2.attn_last.fc1.weight".into(), Transform::Reshape))
        );
        assert_eq!(
            k("s1.b1.skip_gain", SkipGain),
            Some(("stages.0.1.skipinit_gain".into(), Transform::Same))
        );
        assert_eq!(
            k("stem.conv0.w", ConvWeight),
            Some(("stem.conv1.weight".into(), Transform::Same))
        );
        assert_eq!(
            k("linear.w", LinearWeight),
            Some(("head.fc.weight".into(), Transform::Same))
        );
        assert_eq!(k("s1.b0.bn0.scale", Gain), None);
    }

    #[test]
    fn haiku_keys_use_the_global_block_index() {
        let idx = |s: usize, b: usize| Some((s - 1) * 10 + b);
        let k = |n: &str, kind| haiku_key(n, kind, idx).map(|m| (m.theirs, m.transform));
        use ParamKind::*;
        assert_eq!(
            k("s1.b0.conv0.b", Bias),
            Some(("NFNet/~/nf_block/~/conv0/bias".into(), Transform::Same))
        );
        assert_eq!(
            k("s2.b3.conv1.w", ConvWeight),
            Some(("NFNet/~/nf_block_13/~/conv1/w".into(), Transform::Hwio))
        );
        assert_eq!(
            k("s2.b3.se.fc1.b", Bias),
            Some((
                "NFNet/~/nf_block_13/~/squeeze_excite/~/linear_1/b".into(),
                Transform::Same
            ))
        );
        assert_eq!(
            k("s2.b3.skip_gain", SkipGain),
            Some(("NFNet/~/nf_block_13/skip_gain".into(), Transform::Same))
        );
        assert_eq!(
            k("linear.w", LinearWeight),
            Some(("NFNet/~/linear/w".into(), Transform::Transposed))
        );
        assert_eq!(
            k("stem.conv3.gain", Gain),
            Some(("NFNet/~/stem_conv3/gain".into(), Transform::Same))
        );
    }

    #[test]
    fn shapes_transform() {
        assert_eq!(their_shape(&[8], Transform::Reshape), vec![8, 1, 1, 1]);
        assert_eq!(their_shape(&[8, 4], Transform::Reshape), vec![8, 4, 1, 1]);
        assert_eq!(
            their_shape(&[8, 4, 3, 3], Transform::Hwio),
            vec![3, 3, 4, 8]
        );
        assert_eq!(their_shape(&[10, 4], Transform::Transposed), vec![4, 10]);
    }
}
