//! The variant tables: every architecture nfbench can build, as data.
//!
//! A ResNet topology (`resnet_cifar`, `resnet26`, `resnet50`, ...) crossed with a normalisation family (`nf_`,
//! `bn_`, `plain_`) gives one architecture; the NFNet F-series is its own table. The plan ([`super::plan`]) turns a
//! row into layer shapes; nothing else branches on an architecture's name.

use super::activation::Activation;

/// How the residual branches are normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    /// Normaliser-free: Scaled WS convs, alpha/beta bookkeeping, SkipInit gains, gamma-scaled activations.
    NormFree,
    /// Pre-activation BatchNorm ResNet (BN -> act -> conv in every branch), He-initialised plain convs.
    BatchNorm,
    /// No normalisation at all: He-initialised plain convs with bias, no alpha, no beta, no gains.
    Plain,
}

impl Norm {
    /// The name prefix of this family.
    pub fn prefix(self) -> &'static str {
        match self {
            Norm::NormFree => "nf_",
            Norm::BatchNorm => "bn_",
            Norm::Plain => "plain_",
        }
    }
}

/// The families, in listing order.
pub const NORMS: &[Norm] = &[Norm::NormFree, Norm::BatchNorm, Norm::Plain];

/// The shape of a residual branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// 3x3 -> 3x3 at the block's width (the first conv strided).
    Basic,
    /// 1x1 -> 3x3 (strided) -> 1x1, inner width `ratio * out`.
    Bottleneck,
    /// NFNet: 1x1 -> 3x3 grouped (strided) -> 3x3 grouped -> 1x1, inner width `ratio * out` rounded down to whole
    /// groups, then Squeeze-Excite.
    NfNet,
}

/// The stem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StemKind {
    /// One 3x3 stride-1 conv (32 px data).
    Cifar,
    /// 7x7 stride-2 conv then 3x3 stride-2 max pool (ImageNet ResNets).
    ResNet,
    /// NFNet: 3x3 convs with 16, 32, 64 and `widths[0] / 2` channels, strides 2, 1, 1, 2, act between them.
    NfNet,
}

/// How a transition block (channel change or stride) computes its shortcut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShortcutKind {
    /// A strided 1x1 conv (ResNets).
    StridedConv,
    /// 2x2 average pool (stride 2) when strided, then a 1x1 conv (NFNets).
    AvgPoolConv,
}

/// One row of a topology table: everything that makes an architecture except its normalisation family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Topology {
    /// Name without the family prefix (`resnet50`); the full name is prefix + this.
    pub name: &'static str,
    pub description: &'static str,
    pub stem: StemKind,
    /// Stem output channels (ignored by the NFNet stem, which uses `widths[0] / 2`).
    pub stem_width: usize,
    pub block: BlockKind,
    /// Output channels of each stage.
    pub widths: &'static [usize],
    /// Blocks per stage.
    pub depths: &'static [usize],
    /// Stride of each stage's first block.
    pub strides: &'static [usize],
    /// Inner width of bottleneck / NFNet blocks as a fraction of the block's output channels.
    pub bottleneck_ratio: f64,
    /// Channels per group of the grouped 3x3 convs; 0 = ungrouped.
    pub group_width: usize,
    /// Squeeze-Excite hidden width as a fraction of the block's output channels; 0 = no SE.
    pub se_ratio: f64,
    pub shortcut: ShortcutKind,
    /// Channels of the head's 1x1 conv as a multiple of the last stage's width; 0 = no head conv.
    pub final_conv_mult: usize,
    /// Default nonlinearity.
    pub activation: Activation,
    /// Training and evaluation resolution in pixels.
    pub train_resolution: usize,
    pub test_resolution: usize,
    /// Default dropout rate before the classifier.
    pub dropout: f64,
    /// Which normalisation families exist for this topology (NFNets are normaliser-free only).
    pub norms: &'static [Norm],
}

const RESNET_STRIDES: &[usize] = &[1, 2, 2, 2];
const RESNET_WIDTHS: &[usize] = &[256, 512, 1024, 2048];
const NFNET_WIDTHS: &[usize] = &[256, 512, 1536, 1536];

/// ResNet topologies for 32 px data and ImageNet, each built in all three families.
const fn resnet(
    name: &'static str,
    description: &'static str,
    depths: &'static [usize],
) -> Topology {
    Topology {
        name,
        description,
        stem: StemKind::ResNet,
        stem_width: 64,
        block: BlockKind::Bottleneck,
        widths: RESNET_WIDTHS,
        depths,
        strides: RESNET_STRIDES,
        bottleneck_ratio: 0.25,
        group_width: 0,
        se_ratio: 0.0,
        shortcut: ShortcutKind::StridedConv,
        final_conv_mult: 0,
        activation: Activation::Relu,
        train_resolution: 224,
        test_resolution: 224,
        dropout: 0.25,
        norms: NORMS,
    }
}

/// A ResNet with basic blocks for 32 px inputs: stem 3x3 conv, three stages, no max pool.
const fn resnet_cifar(
    name: &'static str,
    description: &'static str,
    widths: &'static [usize],
    depths: &'static [usize],
) -> Topology {
    Topology {
        name,
        description,
        stem: StemKind::Cifar,
        stem_width: widths[0],
        block: BlockKind::Basic,
        widths,
        depths,
        strides: &[1, 2, 2],
        bottleneck_ratio: 1.0,
        group_width: 0,
        se_ratio: 0.0,
        shortcut: ShortcutKind::StridedConv,
        final_conv_mult: 0,
        activation: Activation::Relu,
        train_resolution: 32,
        test_resolution: 32,
        dropout: 0.0,
        norms: NORMS,
    }
}

/// NFNet F-series: depths `[1, 2, 6, 3] * k`, resolutions and dropout per variant (the reference's table).
const fn nfnet(
    name: &'static str,
    description: &'static str,
    depths: &'static [usize],
    train_resolution: usize,
    test_resolution: usize,
    dropout: f64,
) -> Topology {
    Topology {
        name,
        description,
        stem: StemKind::NfNet,
        stem_width: 128,
        block: BlockKind::NfNet,
        widths: NFNET_WIDTHS,
        depths,
        strides: RESNET_STRIDES,
        bottleneck_ratio: 0.5,
        group_width: 128,
        se_ratio: 0.5,
        shortcut: ShortcutKind::AvgPoolConv,
        final_conv_mult: 2,
        activation: Activation::Gelu,
        train_resolution,
        test_resolution,
        dropout,
        norms: &[Norm::NormFree],
    }
}

/// A small NFNet-style net for 32 px data: NFNet blocks (grouped 3x3s, SE, avg-pool shortcuts), GELU.
const NFNET_CIFAR: Topology = Topology {
    name: "nfnet_cifar",
    description:
        "NFNet-style blocks for 32 px data: widths 64/128/256, depths 1/2/2, group width 16",
    stem: StemKind::Cifar,
    stem_width: 32,
    block: BlockKind::NfNet,
    widths: &[64, 128, 256],
    depths: &[1, 2, 2],
    strides: &[1, 2, 2],
    bottleneck_ratio: 0.5,
    group_width: 16,
    se_ratio: 0.5,
    shortcut: ShortcutKind::AvgPoolConv,
    final_conv_mult: 2,
    activation: Activation::Gelu,
    train_resolution: 32,
    test_resolution: 32,
    dropout: 0.2,
    norms: &[Norm::NormFree],
};

/// A tiny NFNet F-series net (deep stem 4/8/16/32, widths 64/128/192/256, one block per stage, group width 16):
/// the F-series' every layer kind at a size a test runs in a second (the weight import checks against timm's).
const NFNET_TINY: Topology = Topology {
    name: "nfnet_tiny",
    description: "NFNet-F-shaped (deep stem, 4 stages, SE, avg-pool shortcuts) with widths 64/128/192/256, depths 1/1/1/1",
    stem: StemKind::NfNet,
    stem_width: 32,
    block: BlockKind::NfNet,
    widths: &[64, 128, 192, 256],
    depths: &[1, 1, 1, 1],
    strides: RESNET_STRIDES,
    bottleneck_ratio: 0.5,
    group_width: 16,
    se_ratio: 0.5,
    shortcut: ShortcutKind::AvgPoolConv,
    final_conv_mult: 2,
    activation: Activation::Gelu,
    train_resolution: 64,
    test_resolution: 64,
    dropout: 0.2,
    norms: &[Norm::NormFree],
};

/// Every topology, in listing order.
pub const TOPOLOGIES: &[Topology] = &[
    // The default preset's net: sized so a batch-64 CPU train step stays well under a second on
    // 2 cores (per step, ResNet-20 costs ~1.5x and ResNet-8 ~0.6x of this; README, Models).
    resnet_cifar(
        "resnet_cifar",
        "ResNet-14-like for 32 px data: basic blocks, widths 16/32/64, 2 blocks per stage",
        &[16, 32, 64],
        &[2, 2, 2],
    ),
    resnet_cifar(
        "resnet8_cifar",
        "ResNet-8 for 32 px data: basic blocks, widths 16/32/64, 1 block per stage",
        &[16, 32, 64],
        &[1, 1, 1],
    ),
    resnet_cifar(
        "resnet20_cifar",
        "ResNet-20 for 32 px data: basic blocks, widths 16/32/64, 3 blocks per stage",
        &[16, 32, 64],
        &[3, 3, 3],
    ),
    resnet(
        "resnet26",
        "ResNet-26: bottleneck blocks, depths 2/2/2/2",
        &[2, 2, 2, 2],
    ),
    resnet(
        "resnet50",
        "ResNet-50: bottleneck blocks, depths 3/4/6/3",
        &[3, 4, 6, 3],
    ),
    resnet(
        "resnet101",
        "ResNet-101: bottleneck blocks, depths 3/4/23/3",
        &[3, 4, 23, 3],
    ),
    resnet(
        "resnet152",
        "ResNet-152: bottleneck blocks, depths 3/8/36/3",
        &[3, 8, 36, 3],
    ),
    NFNET_CIFAR,
    nfnet(
        "nfnet_f0",
        "NFNet-F0: depths 1/2/6/3",
        &[1, 2, 6, 3],
        192,
        256,
        0.2,
    ),
    nfnet(
        "nfnet_f1",
        "NFNet-F1: depths 2/4/12/6",
        &[2, 4, 12, 6],
        224,
        320,
        0.3,
    ),
    nfnet(
        "nfnet_f2",
        "NFNet-F2: depths 3/6/18/9",
        &[3, 6, 18, 9],
        256,
        352,
        0.4,
    ),
    nfnet(
        "nfnet_f3",
        "NFNet-F3: depths 4/8/24/12",
        &[4, 8, 24, 12],
        320,
        416,
        0.4,
    ),
    nfnet(
        "nfnet_f4",
        "NFNet-F4: depths 5/10/30/15",
        &[5, 10, 30, 15],
        384,
        512,
        0.5,
    ),
    nfnet(
        "nfnet_f5",
        "NFNet-F5: depths 6/12/36/18",
        &[6, 12, 36, 18],
        416,
        544,
        0.5,
    ),
    nfnet(
        "nfnet_f6",
        "NFNet-F6: depths 7/14/42/21",
        &[7, 14, 42, 21],
        448,
        576,
        0.5,
    ),
    nfnet(
        "nfnet_f7",
        "NFNet-F7: depths 8/16/48/24",
        &[8, 16, 48, 24],
        480,
        608,
        0.5,
    ),
    NFNET_TINY,
];

/// An architecture: a topology in one normalisation family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Architecture {
    pub norm: Norm,
    pub topology: &'static Topology,
}

impl Architecture {
    /// The full name, as `nfbench model list` shows it and presets use it.
    pub fn name(&self) -> String {
        full_name(self.norm, self.topology)
    }
}

fn full_name(norm: Norm, topology: &Topology) -> String {
    // NFNets carry their family in their own name.
    if topology.block == BlockKind::NfNet {
        topology.name.to_string()
    } else {
        format!("{}{}", norm.prefix(), topology.name)
    }
}

/// Every architecture, in listing order.
pub fn architectures() -> Vec<Architecture> {
    NORMS
        .iter()
        .flat_map(|&norm| {
            TOPOLOGIES
                .iter()
                .filter(move |t| t.norms.contains(&norm))
                .map(move |topology| Architecture { norm, topology })
        })
        .collect()
}

/// Find an architecture by its full name.
pub fn find(name: &str) -> Option<Architecture> {
    architectures().into_iter().find(|a| a.name() == name)
}

/// All names, for error messages and `model list`.
pub fn names() -> Vec<String> {
    architectures().iter().map(Architecture::name).collect()
}
