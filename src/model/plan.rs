//! The plan of a network: every layer's name and shape, every block's alpha, beta and predicted variance, computed
//! from a variant-table row on the host without allocating a tensor. Parameter counts and FLOPs come from here (so
//! `nfbench model info nfnet_f7` is instant), and [`super::Network::build`] materialises exactly this plan.

use super::activation::Activation;
use super::config::{ModelConfig, PaddingMode};
use super::zoo::{self, Architecture, BlockKind, Norm, ShortcutKind, StemKind};
use super::ModelError;

/// A convolution's shape. Kernel layout OIHW: `[out, in / groups, k, k]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvPlan {
    /// Dotted module path, e.g. `s1.b0.conv0`; parameters are `<name>.w`, `<name>.gain`, `<name>.b`.
    pub name: String,
    pub in_ch: usize,
    pub out_ch: usize,
    pub kernel: usize,
    pub stride: usize,
    pub groups: usize,
    /// Scaled Weight Standardisation with a learnable per-channel gain (normaliser-free nets).
    pub ws: bool,
    /// A bias (always with WS, as the reference; plain convs too; never before a BatchNorm).
    pub bias: bool,
    /// Initial weights are N(0, init_gain / fan_in): 1 under WS (the reference) and for a conv on the raw input;
    /// for the baselines' convs that follow an activation, see `Ctx::act_gain`.
    pub init_gain: f64,
    /// How the input is padded (the output size is `ceil(n / stride)` in every mode).
    pub padding: PaddingMode,
}

impl ConvPlan {
    /// Fan-in per group: the N of WS and of the init's variance scaling.
    pub fn fan_in(&self) -> usize {
        self.in_ch / self.groups * self.kernel * self.kernel
    }

    pub fn weight_shape(&self) -> [usize; 4] {
        [
            self.out_ch,
            self.in_ch / self.groups,
            self.kernel,
            self.kernel,
        ]
    }

    pub fn params(&self) -> usize {
        self.out_ch * self.fan_in()
            + if self.ws { self.out_ch } else { 0 }
            + if self.bias { self.out_ch } else { 0 }
    }

    /// Multiply-accumulates on an `h x w` input with 'SAME' padding.
    pub fn macs(&self, h: usize, w: usize) -> u64 {
        let (oh, ow) = (h.div_ceil(self.stride), w.div_ceil(self.stride));
        (oh * ow * self.out_ch * self.fan_in()) as u64
    }
}

/// A BatchNorm over `ch` channels: parameters `<name>.scale`, `<name>.offset`; buffers `<name>.mean`, `<name>.var`.
#[derive(Debug, Clone, PartialEq)]
pub struct BnPlan {
    pub name: String,
    pub ch: usize,
}

/// A dense layer `[out, in]`: parameters `<name>.w`, `<name>.b`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearPlan {
    pub name: String,
    pub in_f: usize,
    pub out_f: usize,
    /// Standard deviation of the weights' initial normal distribution (truncated at two deviations when
    /// `truncated`).
    pub init_std: f64,
    pub truncated: bool,
}

impl LinearPlan {
    pub fn params(&self) -> usize {
        self.in_f * self.out_f + self.out_f
    }
}

/// One stem step.
#[derive(Debug, Clone, PartialEq)]
pub enum StemOp {
    Conv(ConvPlan),
    Bn(BnPlan),
    /// The network's activation (gamma-scaled in normaliser-free nets).
    Act,
    /// 3x3 stride-2 'SAME' max pool.
    MaxPool,
}

/// One residual block.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockPlan {
    /// `s<stage>.b<index>`.
    pub name: String,
    /// Stage, from 1.
    pub stage: usize,
    /// Index within the stage, from 0 (0 is the stage's transition block).
    pub index: usize,
    /// Index over the whole network, from 0.
    pub global_index: usize,
    pub in_ch: usize,
    pub out_ch: usize,
    pub stride: usize,
    /// Branch convs in order; the strided one carries the stride.
    pub convs: Vec<ConvPlan>,
    /// BatchNorm before each branch conv (BatchNorm family only; the first is the block's pre-activation BN).
    pub bns: Vec<BnPlan>,
    /// Projection shortcut when the channels or the resolution change.
    pub shortcut: Option<ConvPlan>,
    /// Average-pool the shortcut (NFNet transition blocks with stride > 1).
    pub shortcut_pool: bool,
    /// Squeeze-Excite `(fc0, fc1)`.
    pub se: Option<(LinearPlan, LinearPlan)>,
    /// A learnable SkipInit scalar (normaliser-free nets).
    pub skip_gain: bool,
    /// Stochastic-depth drop rate of this block: r * global_index / num_blocks.
    pub drop_rate: f64,
}

impl BlockPlan {
    pub fn params(&self) -> usize {
        self.convs.iter().map(ConvPlan::params).sum::<usize>()
            + self.bns.iter().map(|b| 2 * b.ch).sum::<usize>()
            + self.shortcut.as_ref().map_or(0, ConvPlan::params)
            + self.se.as_ref().map_or(0, |(a, b)| a.params() + b.params())
            + usize::from(self.skip_gain)
    }

    /// Multiply-accumulates on an `h x w` input, as the reference counts them (SE on pooled activations).
    pub fn macs(&self, h: usize, w: usize) -> u64 {
        let mut total = 0;
        let (mut ch, mut cw) = (h, w);
        for conv in &self.convs {
            total += conv.macs(ch, cw);
            ch = ch.div_ceil(conv.stride);
            cw = cw.div_ceil(conv.stride);
        }
        if let Some(sc) = &self.shortcut {
            // The shortcut conv runs at the output resolution (strided, or after the pool).
            let (oh, ow) = (h.div_ceil(self.stride), w.div_ceil(self.stride));
            total += (oh * ow * sc.out_ch * sc.fan_in()) as u64;
        }
        if let Some((fc0, fc1)) = &self.se {
            total += (fc0.in_f * fc0.out_f + fc1.in_f * fc1.out_f) as u64;
        }
        total
    }

    /// Is this a transition block (the first of its stage)?
    pub fn is_transition(&self) -> bool {
        self.index == 0
    }
}

/// The head: optional 1x1 conv (+ BN), activation, global mean pool, dropout, linear.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadPlan {
    pub final_conv: Option<ConvPlan>,
    pub final_bn: Option<BnPlan>,
    pub linear: LinearPlan,
}

/// The alpha / beta / predicted-variance bookkeeping of one block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaling {
    pub alpha: f64,
    pub beta: f64,
    /// Predicted variance of the residual stream after the block (the reference's `expected_std^2`).
    pub predicted_var: f64,
}

/// A whole network's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct NetPlan {
    pub name: String,
    pub arch: Architecture,
    pub activation: Activation,
    pub num_classes: usize,
    pub in_channels: usize,
    /// The resolution FLOPs are counted at (the forward accepts any).
    pub resolution: usize,
    pub stem: Vec<StemOp>,
    pub blocks: Vec<BlockPlan>,
    pub head: HeadPlan,
    pub dropout: f64,
    pub stochastic_depth: f64,
    pub skip_gain_init: f64,
    /// Padding of the convs (each [`ConvPlan`] carries it too) and of the stem's max pool.
    pub padding: PaddingMode,
}

impl NetPlan {
    /// Validate a model config and plan its network. `resolution` 0 means the architecture's training resolution.
    pub fn new(
        cfg: &ModelConfig,
        num_classes: usize,
        in_channels: usize,
        resolution: usize,
    ) -> Result<NetPlan, ModelError> {
        let arch = zoo::find(&cfg.name).ok_or_else(|| ModelError::UnknownArchitecture {
            name: cfg.name.clone(),
            known: zoo::names().join(", "),
        })?;
        Self::for_architecture(arch, cfg, num_classes, in_channels, resolution)
    }

    /// [`NetPlan::new`] for an architecture given directly (e.g. a topology built in code rather than taken from
    /// the table); `cfg.name` is ignored.
    pub fn for_architecture(
        arch: Architecture,
        cfg: &ModelConfig,
        num_classes: usize,
        in_channels: usize,
        resolution: usize,
    ) -> Result<NetPlan, ModelError> {
        validate(cfg, num_classes, in_channels)?;
        let topo = arch.topology;
        let activation = match &cfg.activation {
            None => topo.activation,
            Some(name) => Activation::from_name(name)
                .ok_or_else(|| ModelError::invalid("model.activation", name, activation_hint()))?,
        };
        let resolution = if resolution == 0 {
            topo.train_resolution
        } else {
            resolution
        };
        let dropout = cfg.dropout.unwrap_or(topo.dropout);
        let gamma = activation.gamma();
        let act_gain = match arch.norm {
            Norm::BatchNorm => gamma * gamma,
            Norm::NormFree | Norm::Plain => 2.0,
        };
        let ctx = Ctx {
            arch,
            act_gain,
            padding: cfg.padding,
            shortcut: cfg.shortcut.unwrap_or(topo.shortcut),
        };
        let stem = plan_stem(ctx, in_channels);
        let stem_out = stem_channels(&stem);
        let blocks = plan_blocks(ctx, stem_out, cfg.stochastic_depth);
        let last = blocks.last().map_or(stem_out, |b| b.out_ch);
        let head = plan_head(ctx, last, num_classes);
        Ok(NetPlan {
            name: arch.name(),
            arch,
            activation,
            num_classes,
            in_channels,
            resolution,
            stem,
            blocks,
            head,
            dropout,
            stochastic_depth: cfg.stochastic_depth,
            skip_gain_init: cfg.skip_gain_init,
            padding: cfg.padding,
        })
    }

    /// Trainable scalars, counted from shapes.
    pub fn param_count(&self) -> usize {
        let stem: usize = self
            .stem
            .iter()
            .map(|op| match op {
                StemOp::Conv(c) => c.params(),
                StemOp::Bn(b) => 2 * b.ch,
                StemOp::Act | StemOp::MaxPool => 0,
            })
            .sum();
        let blocks: usize = self.blocks.iter().map(BlockPlan::params).sum();
        let head = self.head.final_conv.as_ref().map_or(0, ConvPlan::params)
            + self.head.final_bn.as_ref().map_or(0, |b| 2 * b.ch)
            + self.head.linear.params();
        stem + blocks + head
    }

    /// Forward multiply-accumulates per image at `resolution` (the reference's `count_flops` convention: convs,
    /// SE and the classifier; elementwise ops are not counted).
    pub fn flops(&self) -> u64 {
        let (mut h, mut w) = (self.resolution, self.resolution);
        let mut total = 0;
        for op in &self.stem {
            match op {
                StemOp::Conv(c) => {
                    total += c.macs(h, w);
                    h = h.div_ceil(c.stride);
                    w = w.div_ceil(c.stride);
                }
                StemOp::MaxPool => {
                    h = h.div_ceil(2);
                    w = w.div_ceil(2);
                }
                StemOp::Bn(_) | StemOp::Act => {}
            }
        }
        for block in &self.blocks {
            total += block.macs(h, w);
            h = h.div_ceil(block.stride);
            w = w.div_ceil(block.stride);
        }
        if let Some(c) = &self.head.final_conv {
            total += c.macs(h, w);
        }
        total + (self.head.linear.in_f * self.head.linear.out_f) as u64
    }

    /// The alpha/beta bookkeeping for every block at residual scale `alpha`.
    ///
    /// Normaliser-free: the reference's rule: expected_var starts at 1; block i gets beta = 1/sqrt(expected_var);
    /// after a transition block expected_var is reset to 1; after every block it grows by alpha^2.
    /// BatchNorm (alpha = beta = 1): a BN'd branch adds 1; a projection shortcut restarts the stream at 1.
    /// Plain (alpha = beta = 1): the branch preserves its input's variance, so the stream doubles every block.
    /// Baselines assume a unit-variance stem output.
    pub fn scalings(&self, alpha: f64) -> Vec<Scaling> {
        let mut expected_var: f64 = 1.0;
        self.blocks
            .iter()
            .map(|block| match self.arch.norm {
                Norm::NormFree => {
                    let beta = 1.0 / expected_var.sqrt();
                    if block.is_transition() {
                        expected_var = 1.0;
                    }
                    expected_var += alpha * alpha;
                    Scaling {
                        alpha,
                        beta,
                        predicted_var: expected_var,
                    }
                }
                Norm::BatchNorm => {
                    let shortcut_var = if block.shortcut.is_some() {
                        1.0
                    } else {
                        expected_var
                    };
                    expected_var = shortcut_var + 1.0;
                    Scaling {
                        alpha: 1.0,
                        beta: 1.0,
                        predicted_var: expected_var,
                    }
                }
                Norm::Plain => {
                    expected_var *= 2.0;
                    Scaling {
                        alpha: 1.0,
                        beta: 1.0,
                        predicted_var: expected_var,
                    }
                }
            })
            .collect()
    }
}

fn activation_hint() -> String {
    let names: Vec<_> = super::activation::ACTIVATIONS
        .iter()
        .map(|r| r.name)
        .collect();
    format!(
        "expected one of {} (or leave it out for the architecture's default)",
        names.join(", ")
    )
}

fn validate(cfg: &ModelConfig, num_classes: usize, in_channels: usize) -> Result<(), ModelError> {
    super::alpha::validate(cfg.alpha)?;
    if !(cfg.head_lr_multiplier.is_finite() && cfg.head_lr_multiplier >= 0.0) {
        return Err(ModelError::invalid(
            "model.head_lr_multiplier",
            cfg.head_lr_multiplier,
            "expected a finite number >= 0",
        ));
    }
    if !cfg.skip_gain_init.is_finite() {
        return Err(ModelError::invalid(
            "model.skip_gain_init",
            cfg.skip_gain_init,
            "expected a finite number",
        ));
    }
    if !(cfg.stochastic_depth.is_finite() && (0.0..1.0).contains(&cfg.stochastic_depth)) {
        return Err(ModelError::invalid(
            "model.stochastic_depth",
            cfg.stochastic_depth,
            "expected 0 <= r < 1",
        ));
    }
    if let Some(p) = cfg
        .dropout
        .filter(|p| !(p.is_finite() && (0.0..1.0).contains(p)))
    {
        return Err(ModelError::invalid(
            "model.dropout",
            p,
            "expected 0 <= p < 1 (leave it out for the architecture's default)",
        ));
    }
    if num_classes == 0 {
        return Err(ModelError::invalid(
            "num_classes",
            num_classes,
            "expected at least 1 class",
        ));
    }
    if in_channels == 0 {
        return Err(ModelError::invalid(
            "in_channels",
            in_channels,
            "expected at least 1 input channel",
        ));
    }
    Ok(())
}

/// A conv of this family: WS + gain + bias (NF), plain without bias before a BN (BN), plain with bias (plain).
/// What the layer planners need besides shapes.
#[derive(Debug, Clone, Copy)]
struct Ctx {
    arch: Architecture,
    /// Baselines' init gain (variance * fan-in) for convs that follow an activation. BatchNorm:
    /// gamma^2, so a branch adds exactly unit variance (1, 2, 3, ... within a stage; BN makes the
    /// weights' scale irrelevant elsewhere). Plain: He's 2, the textbook init of an unnormalised
    /// ResNet; it preserves the second moment, so the stream roughly doubles per block (a little
    /// less: the ReLU's mean takes part of the second moment).
    act_gain: f64,
    padding: PaddingMode,
    /// The transition blocks' shortcut (the config's override, else the topology's).
    shortcut: ShortcutKind,
}

fn conv(
    ctx: Ctx,
    name: String,
    in_ch: usize,
    out_ch: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
) -> ConvPlan {
    let arch = ctx.arch;
    let (ws, bias) = match arch.norm {
        Norm::NormFree => (true, true),
        Norm::BatchNorm => (false, false),
        Norm::Plain => (false, true),
    };
    let init_gain = if ws || name.starts_with("stem.conv") {
        1.0
    } else {
        ctx.act_gain
    };
    ConvPlan {
        name,
        in_ch,
        out_ch,
        kernel,
        stride,
        groups,
        ws,
        bias,
        init_gain,
        padding: ctx.padding,
    }
}

fn plan_stem(ctx: Ctx, in_channels: usize) -> Vec<StemOp> {
    let arch = ctx.arch;
    let topo = arch.topology;
    match topo.stem {
        StemKind::Cifar => vec![StemOp::Conv(conv(
            ctx,
            "stem.conv".into(),
            in_channels,
            topo.stem_width,
            3,
            1,
            1,
        ))],
        // The reference's NF-ResNet stem has no activation between the conv and the pool: the first block
        // activates. The BN family normalises inside each block, so its stem is the conv and the pool too.
        StemKind::ResNet => vec![
            StemOp::Conv(conv(
                ctx,
                "stem.conv".into(),
                in_channels,
                topo.stem_width,
                7,
                2,
                1,
            )),
            StemOp::MaxPool,
        ],
        StemKind::NfNet => {
            // c/8, c/4, c/2, c with c = widths[0] / 2: the reference's 16, 32, 64, 128 for the F-series (as timm's
            // 'deep_quad' stem computes them, so smaller NFNets import too).
            let c = topo.widths[0] / 2;
            let widths = [c / 8, c / 4, c / 2, c];
            let strides = [2, 1, 1, 2];
            let mut ops = Vec::new();
            let mut ch = in_channels;
            for (i, (&w, &s)) in widths.iter().zip(&strides).enumerate() {
                if i > 0 {
                    ops.push(StemOp::Act);
                }
                ops.push(StemOp::Conv(conv(
                    ctx,
                    format!("stem.conv{i}"),
                    ch,
                    w,
                    3,
                    s,
                    1,
                )));
                ch = w;
            }
            ops
        }
    }
}

fn stem_channels(stem: &[StemOp]) -> usize {
    stem.iter()
        .rev()
        .find_map(|op| match op {
            StemOp::Conv(c) => Some(c.out_ch),
            _ => None,
        })
        .unwrap_or(0)
}

fn plan_blocks(ctx: Ctx, stem_out: usize, stochastic_depth: f64) -> Vec<BlockPlan> {
    let arch = ctx.arch;
    let topo = arch.topology;
    let num_blocks: usize = topo.depths.iter().sum();
    let mut blocks = Vec::with_capacity(num_blocks);
    let mut in_ch = stem_out;
    for (s, (&out_ch, &depth)) in topo.widths.iter().zip(topo.depths).enumerate() {
        for index in 0..depth {
            let stride = if index == 0 { topo.strides[s] } else { 1 };
            let global_index = blocks.len();
            blocks.push(plan_block(
                ctx,
                s + 1,
                index,
                global_index,
                in_ch,
                out_ch,
                stride,
                stochastic_depth * global_index as f64 / num_blocks as f64,
            ));
            in_ch = out_ch;
        }
    }
    blocks
}

#[allow(clippy::too_many_arguments)]
fn plan_block(
    ctx: Ctx,
    stage: usize,
    index: usize,
    global_index: usize,
    in_ch: usize,
    out_ch: usize,
    stride: usize,
    drop_rate: f64,
) -> BlockPlan {
    let arch = ctx.arch;
    let topo = arch.topology;
    let name = format!("s{stage}.b{index}");
    let c = |leaf: &str, i: usize, o: usize, k: usize, s: usize, g: usize| {
        conv(ctx, format!("{name}.{leaf}"), i, o, k, s, g)
    };
    let convs = match topo.block {
        BlockKind::Basic => vec![
            c("conv0", in_ch, out_ch, 3, stride, 1),
            c("conv1", out_ch, out_ch, 3, 1, 1),
        ],
        BlockKind::Bottleneck => {
            let width = (out_ch as f64 * topo.bottleneck_ratio) as usize;
            vec![
                c("conv0", in_ch, width, 1, 1, 1),
                c("conv1", width, width, 3, stride, 1),
                c("conv2", width, out_ch, 1, 1, 1),
            ]
        }
        BlockKind::NfNet => {
            // The reference rounds the inner width down to whole groups (at least one group here,
            // where the reference would build a zero-width conv).
            let raw = (out_ch as f64 * topo.bottleneck_ratio) as usize;
            let (groups, width) = match raw.checked_div(topo.group_width) {
                None => (1, raw),
                Some(g) => (g.max(1), g.max(1) * topo.group_width),
            };
            vec![
                c("conv0", in_ch, width, 1, 1, 1),
                c("conv1", width, width, 3, stride, groups),
                c("conv1b", width, width, 3, 1, groups),
                c("conv2", width, out_ch, 1, 1, 1),
            ]
        }
    };
    let bns = if arch.norm == Norm::BatchNorm {
        convs
            .iter()
            .enumerate()
            .map(|(i, cv)| BnPlan {
                name: format!("{name}.bn{i}"),
                ch: cv.in_ch,
            })
            .collect()
    } else {
        Vec::new()
    };
    let needs_projection = stride > 1 || in_ch != out_ch;
    let (shortcut, shortcut_pool) = if needs_projection {
        match ctx.shortcut {
            ShortcutKind::StridedConv => {
                (Some(c("conv_shortcut", in_ch, out_ch, 1, stride, 1)), false)
            }
            ShortcutKind::AvgPoolConv => {
                (Some(c("conv_shortcut", in_ch, out_ch, 1, 1, 1)), stride > 1)
            }
        }
    } else {
        (None, false)
    };
    let se = (topo.se_ratio > 0.0).then(|| {
        let hidden = ((out_ch as f64 * topo.se_ratio) as usize).max(1);
        let lin = |leaf: &str, i: usize, o: usize| LinearPlan {
            name: format!("{name}.se.{leaf}"),
            in_f: i,
            out_f: o,
            init_std: 1.0 / (i as f64).sqrt(),
            truncated: true,
        };
        (lin("fc0", out_ch, hidden), lin("fc1", hidden, out_ch))
    });
    BlockPlan {
        name,
        stage,
        index,
        global_index,
        in_ch,
        out_ch,
        stride,
        convs,
        bns,
        shortcut,
        shortcut_pool,
        se,
        skip_gain: arch.norm == Norm::NormFree,
        drop_rate,
    }
}

fn plan_head(ctx: Ctx, in_ch: usize, num_classes: usize) -> HeadPlan {
    let arch = ctx.arch;
    let topo = arch.topology;
    let final_conv = (topo.final_conv_mult > 0).then(|| {
        conv(
            ctx,
            "final_conv".into(),
            in_ch,
            in_ch * topo.final_conv_mult,
            1,
            1,
            1,
        )
    });
    let features = final_conv.as_ref().map_or(in_ch, |c| c.out_ch);
    // Pre-activation BN nets normalise the stream once more before the head's activation.
    let final_bn = (arch.norm == Norm::BatchNorm).then(|| BnPlan {
        name: "final_bn".into(),
        ch: features,
    });
    let linear = LinearPlan {
        name: "linear".into(),
        in_f: features,
        out_f: num_classes,
        init_std: 0.01,
        truncated: false,
    };
    HeadPlan {
        final_conv,
        final_bn,
        linear,
    }
}
