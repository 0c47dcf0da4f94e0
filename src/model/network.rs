//! [`Network`]: a plan materialised on a device, its forward pass with optional signal-propagation statistics, and
//! the live residual scale.

use super::activation::Activation;
use super::config::ModelConfig;
use super::layers::{self, BatchNorm, Conv, Linear, SqueezeExcite};
use super::plan::{BlockPlan, NetPlan, Scaling, StemOp};
use super::precision::{self, Precision};
use super::zoo::Norm;
use super::{spp, ModelError, Param, ParamKind};
use crate::kernels::ConvFusion;
use candle_core::{Device, Result, Tensor, Var, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// How to run a forward pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardOptions {
    /// Training mode: stochastic depth and dropout are active, BatchNorm uses (and updates) batch statistics.
    pub train: bool,
    /// Also compute the per-block signal-propagation statistics.
    pub spp: bool,
    /// Seed of this step's stochastic-depth and dropout masks (drawn on the host, so a step is reproducible).
    pub seed: u64,
}

/// What a forward pass returns.
#[derive(Debug, Clone)]
pub struct ForwardOutput {
    /// `[B, num_classes]`, before any softmax.
    pub logits: Tensor,
    /// `[num_blocks, 3]`: (avg_sq_mean, avg_var, res_avg_var) per block, on the device, detached; only when asked.
    pub spp: Option<Tensor>,
}

/// One residual block, as `nfbench model info` and the TUI show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockInfo {
    /// `s<stage>.b<index>`.
    pub name: String,
    /// Stage, from 1.
    pub stage: usize,
    /// Index within the stage, from 0 (0 = the transition block).
    pub index: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub stride: usize,
    pub alpha: f64,
    pub beta: f64,
    /// Predicted variance of the residual stream after this block.
    pub predicted_var: f64,
}

/// A network's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetInfo {
    pub name: String,
    /// Trainable scalars.
    pub params: usize,
    /// Forward multiply-accumulates per image at `resolution`.
    pub flops: u64,
    pub resolution: usize,
    pub num_classes: usize,
    pub in_channels: usize,
    pub activation: String,
    pub num_blocks: usize,
}

impl NetPlan {
    /// The per-block table at residual scale `alpha`.
    pub fn block_infos(&self, alpha: f64) -> Vec<BlockInfo> {
        self.blocks
            .iter()
            .zip(self.scalings(alpha))
            .map(|(b, s)| BlockInfo {
                name: b.name.clone(),
                stage: b.stage,
                index: b.index,
                in_channels: b.in_ch,
                out_channels: b.out_ch,
                stride: b.stride,
                alpha: s.alpha,
                beta: s.beta,
                predicted_var: s.predicted_var,
            })
            .collect()
    }

    /// Name, parameter count and FLOPs, from shapes only.
    pub fn info(&self) -> NetInfo {
        NetInfo {
            name: self.name.clone(),
            params: self.param_count(),
            flops: self.flops(),
            resolution: self.resolution,
            num_classes: self.num_classes,
            in_channels: self.in_channels,
            activation: self.activation.name().to_string(),
            num_blocks: self.blocks.len(),
        }
    }
}

#[derive(Debug)]
enum StemLayer {
    Conv(Conv),
    Bn(BatchNorm),
    Act,
    MaxPool,
}

#[derive(Debug)]
struct Block {
    plan: BlockPlan,
    convs: Vec<Conv>,
    bns: Vec<BatchNorm>,
    shortcut: Option<Conv>,
    se: Option<SqueezeExcite>,
    skip_gain: Option<Var>,
    scaling: Scaling,
}

/// A built network. See the module documentation of [`crate::model`] for the contract.
#[derive(Debug)]
pub struct Network {
    plan: NetPlan,
    alpha: f64,
    stem: Vec<StemLayer>,
    blocks: Vec<Block>,
    final_conv: Option<Conv>,
    final_bn: Option<BatchNorm>,
    linear: Linear,
    params: Vec<Param>,
    device: Device,
    /// Precision of the activations (weights stay f32).
    precision: Precision,
}

impl Network {
    /// Build `cfg.name` for `num_classes` classes and `in_channels`-channel inputs. `resolution` (0 = the
    /// architecture's training resolution) only sets what FLOPs are counted at: the forward accepts any size.
    /// Weights are drawn on the host from `seed`, so equal seeds give identical networks on any device.
    pub fn build(
        cfg: &ModelConfig,
        num_classes: usize,
        in_channels: usize,
        resolution: usize,
        device: &Device,
        seed: u64,
    ) -> std::result::Result<Network, ModelError> {
        let plan = NetPlan::new(cfg, num_classes, in_channels, resolution)?;
        Ok(Self::from_plan(plan, cfg.alpha, device, seed)?)
    }

    /// Materialise a plan (see [`NetPlan::for_architecture`]) at residual scale `alpha`.
    pub fn from_plan(plan: NetPlan, alpha: f64, device: &Device, seed: u64) -> Result<Network> {
        let mut params = Vec::new();
        let stem = plan
            .stem
            .iter()
            .map(|op| {
                Ok(match op {
                    StemOp::Conv(c) => StemLayer::Conv(Conv::new(c, seed, device, &mut params)?),
                    StemOp::Bn(b) => StemLayer::Bn(BatchNorm::new(b, device, &mut params)?),
                    StemOp::Act => StemLayer::Act,
                    StemOp::MaxPool => StemLayer::MaxPool,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let scalings = plan.scalings(alpha);
        let blocks = plan
            .blocks
            .iter()
            .zip(scalings)
            .map(|(bp, scaling)| {
                build_block(bp, scaling, plan.skip_gain_init, seed, device, &mut params)
            })
            .collect::<Result<Vec<_>>>()?;
        let final_conv = plan
            .head
            .final_conv
            .as_ref()
            .map(|c| Conv::new(c, seed, device, &mut params))
            .transpose()?;
        let final_bn = plan
            .head
            .final_bn
            .as_ref()
            .map(|b| BatchNorm::new(b, device, &mut params))
            .transpose()?;
        let linear = Linear::new(&plan.head.linear, seed, device, &mut params)?;
        Ok(Network {
            plan,
            alpha,
            stem,
            blocks,
            final_conv,
            final_bn,
            linear,
            params,
            device: device.clone(),
            precision: Precision::F32,
        })
    }

    /// Run later forward passes with activations in `precision` (parameters and their gradients stay f32).
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The plan this network was built from (layer shapes, table row).
    pub fn plan(&self) -> &NetPlan {
        &self.plan
    }

    pub fn name(&self) -> &str {
        &self.plan.name
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn num_classes(&self) -> usize {
        self.plan.num_classes
    }

    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Every trainable parameter, in a fixed order (stem, blocks, head), with its dotted name and kind.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Non-trainable state: BatchNorm running statistics `<bn>.mean`, `<bn>.var` (empty for other families).
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        self.batch_norms().flat_map(BatchNorm::buffers).collect()
    }

    /// Restore the state [`Network::buffers`] returned. Every buffer of this network must be present with its
    /// shape; a name this network does not have is an error (a checkpoint of another architecture).
    pub fn load_buffers(
        &mut self,
        buffers: &[(String, Tensor)],
    ) -> std::result::Result<(), ModelError> {
        let expected = self.buffers();
        for (name, _) in buffers {
            if !expected.iter().any(|(n, _)| n == name) {
                return Err(ModelError::Buffer {
                    name: name.clone(),
                    reason: "this network has no such buffer".into(),
                });
            }
        }
        for bn in self.batch_norms() {
            let find =
                |suffix: &str| -> std::result::Result<Tensor, ModelError> {
                    let name = format!("{}.{suffix}", bn.plan.name);
                    let (_, t) = buffers.iter().find(|(n, _)| *n == name).ok_or_else(|| {
                        ModelError::Buffer {
                            name: name.clone(),
                            reason: "missing".into(),
                        }
                    })?;
                    if t.dims() != [bn.plan.ch] {
                        return Err(ModelError::Buffer {
                            name,
                            reason: format!("shape {:?}, expected [{}]", t.dims(), bn.plan.ch),
                        });
                    }
                    Ok(t.to_dtype(candle_core::DType::F32)?
                        .to_device(&self.device)?
                        .detach())
                };
            let (mean, var) = (find("mean")?, find("var")?);
            *bn.running.lock().unwrap_or_else(|e| e.into_inner()) = (mean, var);
        }
        Ok(())
    }

    fn batch_norms(&self) -> impl Iterator<Item = &BatchNorm> {
        let stem = self.stem.iter().filter_map(|l| match l {
            StemLayer::Bn(b) => Some(b),
            _ => None,
        });
        stem.chain(self.blocks.iter().flat_map(|b| b.bns.iter()))
            .chain(self.final_bn.iter())
    }

    /// The residual scale in use (1 for the BatchNorm and plain baselines, which have none).
    pub fn alpha(&self) -> f64 {
        match self.plan.arch.norm {
            Norm::NormFree => self.alpha,
            _ => 1.0,
        }
    }

    /// Set the residual scale and recompute every beta from the predicted-variance bookkeeping. Takes effect at the
    /// next forward. An alpha outside (0, 1] ([`super::alpha::validate`]) is an error and changes nothing; the
    /// baselines have no alpha, so a valid one does nothing there.
    pub fn try_set_alpha(&mut self, alpha: f64) -> std::result::Result<(), ModelError> {
        super::alpha::validate(alpha)?;
        self.alpha = alpha;
        for (block, scaling) in self.blocks.iter_mut().zip(self.plan.scalings(alpha)) {
            block.scaling = scaling;
        }
        Ok(())
    }

    /// Every residual block with its current alpha, beta and predicted variance.
    pub fn blocks(&self) -> Vec<BlockInfo> {
        self.plan.block_infos(self.alpha)
    }

    /// Name, parameter count and FLOPs per image.
    pub fn info(&self) -> NetInfo {
        self.plan.info()
    }

    /// The activation without its gamma, and the factor that completes it: gamma in normaliser-free nets
    /// (folded into the next conv's weights, a tiny tensor, instead of a pass over the activations), 1 in the
    /// baselines.
    fn act_raw(&self, x: &Tensor) -> Result<Tensor> {
        self.plan.activation.apply_raw(x)
    }

    /// `act_raw(bn(x))`, with a relu fused into the normalisation.
    fn bn_act(&self, bn: &BatchNorm, x: &Tensor, train: bool) -> Result<Tensor> {
        if self.plan.activation == Activation::Relu {
            bn.forward_act(x, train, true)
        } else {
            self.act_raw(&bn.forward(x, train)?)
        }
    }

    fn act_gain(&self) -> f64 {
        match self.plan.arch.norm {
            Norm::NormFree => self.plan.activation.gamma(),
            Norm::BatchNorm | Norm::Plain => 1.0,
        }
    }

    /// Logits for an NCHW batch, and the per-block statistics when `opts.spp`.
    pub fn forward(&self, x: &Tensor, opts: &ForwardOptions) -> Result<ForwardOutput> {
        let batch = x.dim(0)?;
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let mut h = precision::cast(x, self.precision.dtype())?;
        // A pending scalar factor on `h`, folded into the next conv.
        let mut scale = 1.0;
        for layer in &self.stem {
            if !matches!(layer, StemLayer::Conv(_)) && scale != 1.0 {
                h = (h * scale)?;
                scale = 1.0;
            }
            h = match layer {
                StemLayer::Conv(c) => c.forward_scaled(&h, std::mem::replace(&mut scale, 1.0))?,
                StemLayer::Bn(b) => b.forward(&h, opts.train)?,
                StemLayer::Act => {
                    scale = self.act_gain();
                    self.act_raw(&h)?
                }
                StemLayer::MaxPool => layers::max_pool_3x3_s2(&h, self.plan.padding)?,
            };
        }
        if scale != 1.0 {
            h = (h * scale)?;
        }
        let mut rows = Vec::new();
        for block in &self.blocks {
            let mask = if opts.train && block.plan.drop_rate > 0.0 {
                Some(precision::cast(
                    &depth_mask(&mut rng, batch, block.plan.drop_rate, &self.device)?,
                    h.dtype(),
                )?)
            } else {
                None
            };
            let (out, res_var) = self.block_forward(block, &h, opts, mask.as_ref())?;
            h = out;
            if let Some(res_var) = res_var {
                rows.push(spp::block_row(&h, &res_var)?);
            }
        }
        let logits = self.head_forward(&h, opts, &mut rng)?;
        let spp = if opts.spp {
            Some(Tensor::stack(&rows, 0)?)
        } else {
            None
        };
        Ok(ForwardOutput { logits, spp })
    }

    fn block_forward(
        &self,
        block: &Block,
        x: &Tensor,
        opts: &ForwardOptions,
        mask: Option<&Tensor>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        // pre = act(x) * beta (NF), act(bn0(x)) (BN), act(x) (plain); carried as act_raw(..) and a factor. A relu
        // read only by convolutions is fused into them (`relu_in`): `pre` is then `x` and never materialised.
        let relu_in = block.bns.is_empty()
            && self.plan.activation == Activation::Relu
            && !block.plan.shortcut_pool;
        let pre = match block.bns.first() {
            Some(bn) => self.bn_act(bn, x, opts.train)?,
            None if relu_in => x.clone(),
            None => self.act_raw(x)?,
        };
        let pre_scale = self.act_gain() * block.scaling.beta;
        let shortcut = match &block.shortcut {
            // Average pooling is linear, so the factor still folds into the conv after it.
            Some(conv) if block.plan.shortcut_pool => {
                conv.forward_scaled(&layers::avg_pool_same(&pre)?, pre_scale)?
            }
            Some(conv) => {
                conv.forward_fused(&pre, pre_scale, ConvFusion::NONE.with_relu_input(relu_in))?
            }
            None => x.clone(),
        };
        // Inside the branch, a relu directly after a conv (no BatchNorm between) is fused into that conv.
        let last = block.convs.len() - 1;
        let fuse = |i: usize| {
            i < last && self.plan.activation == Activation::Relu && block.bns.get(i + 1).is_none()
        };
        let mut out = block.convs[0].forward_fused(
            &pre,
            pre_scale,
            ConvFusion::NONE
                .with_relu_input(relu_in)
                .with_relu_output(fuse(0)),
        )?;
        for (i, conv) in block.convs.iter().enumerate().skip(1) {
            let z = if fuse(i - 1) {
                out
            } else {
                match block.bns.get(i) {
                    Some(bn) => self.bn_act(bn, &out, opts.train)?,
                    None => self.act_raw(&out)?,
                }
            };
            out = conv.forward_scaled_act(&z, self.act_gain(), fuse(i))?;
        }
        if let Some(se) = &block.se {
            out = out.broadcast_mul(&(se.forward(&out)? * 2.0)?)?;
        }
        let res_var = if opts.spp {
            Some(spp::avg_var(&out.detach())?)
        } else {
            None
        };
        // mask * skip_gain * alpha is formed on a tiny tensor, then one pass over the branch output.
        let mut factor: Option<Tensor> = mask.cloned();
        if let Some(gain) = &block.skip_gain {
            let gain = precision::cast(gain.as_tensor(), out.dtype())?;
            factor = Some(match factor {
                Some(m) => m.broadcast_mul(&gain)?,
                None => gain,
            });
        }
        if block.scaling.alpha != 1.0 {
            factor = Some(match factor {
                Some(f) => (f * block.scaling.alpha)?,
                None => {
                    Tensor::new(block.scaling.alpha as f32, out.device())?.to_dtype(out.dtype())?
                }
            });
        }
        let y = match factor {
            Some(f) => crate::kernels::scaled_residual(&shortcut, &out, &f)?,
            None => (shortcut + out)?,
        };
        Ok((y, res_var))
    }

    fn head_forward(
        &self,
        h: &Tensor,
        opts: &ForwardOptions,
        rng: &mut ChaCha8Rng,
    ) -> Result<Tensor> {
        let mut h = h.clone();
        if let Some(conv) = &self.final_conv {
            h = conv.forward(&h)?;
        }
        let act = match &self.final_bn {
            Some(bn) => self.bn_act(bn, &h, opts.train)?,
            None => self.act_raw(&h)?,
        };
        // gamma applied after pooling (on [B, C]), where it is cheap.
        // Rows averaged in the activations' precision, the rest (pooled features, logits) in f32.
        let pooled = precision::f32(&act.mean(D::Minus1)?)?.mean(D::Minus1)?;
        let pooled = if self.act_gain() != 1.0 {
            (pooled * self.act_gain())?
        } else {
            pooled
        };
        let pooled = if opts.train && self.plan.dropout > 0.0 {
            let (b, f) = pooled.dims2()?;
            let keep = 1.0 - self.plan.dropout;
            let mask: Vec<f32> = (0..b * f)
                .map(|_| {
                    if rng.random::<f64>() < keep {
                        (1.0 / keep) as f32
                    } else {
                        0.0
                    }
                })
                .collect();
            pooled.mul(&Tensor::from_vec(mask, (b, f), &self.device)?)?
        } else {
            pooled
        };
        self.linear.forward(&pooled)
    }
}

/// Per-sample stochastic-depth mask `[B, 1, 1, 1]`: floor(keep + u), no rescaling (the reference).
fn depth_mask(
    rng: &mut ChaCha8Rng,
    batch: usize,
    drop_rate: f64,
    device: &Device,
) -> Result<Tensor> {
    let keep = 1.0 - drop_rate;
    let mask: Vec<f32> = (0..batch)
        .map(|_| (keep + rng.random::<f64>()).floor() as f32)
        .collect();
    Tensor::from_vec(mask, (batch, 1, 1, 1), device)
}

fn build_block(
    plan: &BlockPlan,
    scaling: Scaling,
    skip_gain_init: f64,
    seed: u64,
    device: &Device,
    params: &mut Vec<Param>,
) -> Result<Block> {
    let bns = plan
        .bns
        .iter()
        .map(|b| BatchNorm::new(b, device, params))
        .collect::<Result<Vec<_>>>()?;
    let convs = plan
        .convs
        .iter()
        .map(|c| Conv::new(c, seed, device, params))
        .collect::<Result<Vec<_>>>()?;
    let shortcut = plan
        .shortcut
        .as_ref()
        .map(|c| Conv::new(c, seed, device, params))
        .transpose()?;
    let se = match &plan.se {
        Some((fc0, fc1)) => Some(SqueezeExcite {
            fc0: Linear::new(fc0, seed, device, params)?,
            fc1: Linear::new(fc1, seed, device, params)?,
        }),
        None => None,
    };
    let skip_gain = if plan.skip_gain {
        let g = Var::from_tensor(&Tensor::new(skip_gain_init as f32, device)?)?;
        params.push(Param {
            name: format!("{}.skip_gain", plan.name),
            var: g.clone(),
            kind: ParamKind::SkipGain,
        });
        Some(g)
    } else {
        None
    };
    Ok(Block {
        plan: plan.clone(),
        convs,
        bns,
        shortcut,
        se,
        skip_gain,
        scaling,
    })
}
