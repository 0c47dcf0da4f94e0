//! A synthetic trainer event stream for the record tests (no trainer needed): a decaying loss, statistics
//! snapshots, evaluations, live changes of lambda and alpha, a rejected edit, a checkpoint.
#![allow(dead_code)]

use nfbench::train::messages::{
    AgcLayerStats, EvalMetrics, Event, LayerStats, LiveParam, RunState, SppBlockStats, StepMetrics,
    Throughput,
};
use std::path::PathBuf;

pub mod faults;

pub const LAYERS: &[&str] = &[
    "stem.conv.w",
    "s1.b0.conv1.w",
    "s1.b0.conv2.w",
    "s2.b0.conv1.w",
    "s2.b0.conv2.w",
    "linear.w",
];
pub const BLOCKS: &[&str] = &["s1.b0", "s1.b1", "s2.b0", "s2.b1"];

/// Events of a run of `steps` steps: stats every `stats_every`, eval every 4 * stats_every,
/// lambda change at steps / 3, alpha change at 2 * steps / 3.
pub fn synthetic_events(steps: u64, stats_every: u64) -> Vec<Event> {
    let mut out = vec![Event::Started(nfbench::train::messages::RunStart {
        model: "nf_resnet_cifar".into(),
        device: "cpu".into(),
        precision: "f32".into(),
        params: 12345,
        steps,
        start_step: 0,
        run_dir: Some(PathBuf::from("runs/x")),
    })];
    out.push(Event::State {
        state: RunState::Running,
        step: 0,
    });
    let (mut lambda, mut alpha) = (0.01, 0.2);
    for step in 1..=steps {
        if step == steps / 3 {
            lambda = 0.02;
            out.push(Event::Applied {
                params: vec![LiveParam::AgcLambda(lambda)],
                origin: "keys".into(),
                step,
            });
            out.push(Event::Rejected {
                what: "model.alpha".into(),
                reason: "must be in (0, 1]".into(),
                step,
            });
        }
        if step == 2 * steps / 3 {
            alpha = 0.5;
            out.push(Event::Applied {
                params: vec![LiveParam::Alpha(alpha), LiveParam::AgcEnabled(true)],
                origin: "preset reload".into(),
                step,
            });
        }
        out.push(Event::Step(step_metrics(step, lambda, alpha)));
        if step % stats_every == 0 {
            out.push(Event::Layers(Box::new(layer_stats(step, lambda))));
        }
        out.push(Event::Throughput(Throughput {
            step,
            images_per_sec: 100.0 + step as f64,
            step_ms: 10.0,
            data_ms: 1.0,
            ..Default::default()
        }));
        if step % (4 * stats_every) == 0 {
            out.push(Event::Eval(EvalMetrics {
                step,
                loss: 2.0 / (1.0 + step as f64 / 50.0),
                top1: 0.1 + 0.8 * (1.0 - (-(step as f64) / 150.0).exp()),
                top5: 0.5 + 0.4 * (1.0 - (-(step as f64) / 100.0).exp()),
                images: 500,
                ema: step % 2 == 0,
            }));
        }
    }
    out.push(Event::Checkpoint {
        path: PathBuf::from(format!("runs/x/checkpoints/step-{steps}.safetensors")),
        step: steps,
    });
    out.push(Event::Warning(
        "a warning\twith \"quotes\" and ünïcode".into(),
    ));
    out.push(Event::Finished { step: steps });
    out
}

pub fn step_metrics(step: u64, lambda: f64, alpha: f64) -> StepMetrics {
    let s = step as f64;
    StepMetrics {
        step,
        epoch: s / 100.0,
        loss: 2.3 * (-s / 200.0).exp() + 0.3 + 0.05 * (s * 1.7).sin(),
        train_top1: (s / 400.0).min(0.95),
        lr: 0.1 * (s / 50.0).min(1.0),
        lambda,
        alpha,
        grad_norm: if step.is_multiple_of(7) {
            f64::NAN
        } else {
            1.0 / (1.0 + s / 100.0)
        },
        clipped_fraction: 0.3 * (-s / 150.0).exp(),
        images_per_sec: 200.0,
        step_ms: 5.0,
    }
}

pub fn layer_stats(step: u64, lambda: f64) -> LayerStats {
    let s = step as f64;
    let agc = LAYERS
        .iter()
        .enumerate()
        .map(|(i, name)| AgcLayerStats {
            name: (*name).into(),
            weight_norm: 1.0 + i as f64,
            grad_norm: 0.1 / (1.0 + s / 100.0),
            max_ratio: 0.05 * (i + 1) as f64,
            mean_ratio: 0.01 * (i + 1) as f64,
            clipped_fraction: if *name == "linear.w" {
                0.0
            } else {
                ((0.6 - 0.1 * i as f64) * (-s / (100.0 * lambda * 100.0)).exp()).max(0.0)
            },
            units: 16 * (i + 1),
            clipped_by_agc: *name != "linear.w",
            frozen: false,
            ratio_counts: Vec::new(),
        })
        .collect();
    let spp = BLOCKS
        .iter()
        .enumerate()
        .map(|(i, name)| SppBlockStats {
            name: (*name).into(),
            predicted_var: 1.0 + 0.04 * (i + 1) as f64,
            avg_sq_mean: 0.003 * (1.0 + s / 500.0),
            avg_var: 1.0 + 0.05 * (i + 1) as f64 * (1.0 + s / 300.0),
            res_avg_var: 0.9 + 0.01 * i as f64,
        })
        .collect();
    LayerStats {
        step,
        agc,
        spp,
        total_clipped_fraction: 0.25 * (-s / 150.0).exp(),
    }
}

// ---- A tiny real trainer for the resume tests -------------------------------------------------------------------

use candle_core::{DType, Device, Tensor, Var};
use nfbench::model::{Param, ParamKind};
use nfbench::preset::Preset;
use nfbench::train::parts::Parts;
use nfbench::train::{
    BatchSource, SourceInfo, SyntheticSource, TrainModel, TrainState, Trainer, TrainerHandle,
    TrainerOptions,
};
use std::collections::HashMap;

pub const INFO: SourceInfo = SourceInfo {
    num_classes: 3,
    in_channels: 1,
    resolution: 4,
    train_images: 96,
    val_images: 24,
};

/// Two linear layers with a skip-gain-like scalar; deterministic init.
pub struct TinyNet {
    params: Vec<Param>,
}

fn det(shape: &[usize], salt: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n as u64)
        .map(|i| ((i * 2_654_435_761 + salt * 97) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

impl TinyNet {
    pub fn new() -> Self {
        let d = INFO.in_channels * INFO.resolution * INFO.resolution;
        let p = |name: &str, t: Tensor, kind| Param {
            name: name.into(),
            var: Var::from_tensor(&t).unwrap(),
            kind,
        };
        TinyNet {
            params: vec![
                p("s1.b0.conv1.w", det(&[12, d], 1), ParamKind::LinearWeight),
                p(
                    "s1.b0.conv1.b",
                    Tensor::zeros(12, DType::F32, &Device::Cpu).unwrap(),
                    ParamKind::Bias,
                ),
                p(
                    "s1.b0.skip_gain",
                    Tensor::ones(1, DType::F32, &Device::Cpu).unwrap(),
                    ParamKind::SkipGain,
                ),
                p(
                    "linear.w",
                    det(&[INFO.num_classes, 12], 2),
                    ParamKind::LinearWeight,
                ),
                p(
                    "linear.b",
                    Tensor::zeros(INFO.num_classes, DType::F32, &Device::Cpu).unwrap(),
                    ParamKind::Bias,
                ),
            ],
        }
    }
}

impl TrainModel for TinyNet {
    fn name(&self) -> String {
        "tiny".into()
    }
    fn params(&self) -> &[Param] {
        &self.params
    }
    fn forward(
        &mut self,
        x: &Tensor,
        _train: bool,
        spp: bool,
        _seed: u64,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let w = |i: usize| self.params[i].var.as_tensor();
        let h = x
            .flatten_from(1)?
            .matmul(&w(0).t()?)?
            .broadcast_add(w(1))?
            .relu()?
            .broadcast_mul(w(2))?;
        let logits = h.matmul(&w(3).t()?)?.broadcast_add(w(4))?;
        let spp = if spp {
            let var = h.var_keepdim(0)?.mean_all()?;
            let sq = h.mean_keepdim(0)?.sqr()?.mean_all()?;
            Some(Tensor::stack(&[sq.clone(), var.clone(), var], 0)?.reshape((1, 3))?)
        } else {
            None
        };
        Ok((logits, spp))
    }
    fn set_alpha(&mut self, _alpha: f64) -> Result<(), nfbench::model::ModelError> {
        Ok(())
    }
    fn spp_blocks(&self) -> Vec<(String, f64)> {
        vec![("s1.b0".into(), 1.0)]
    }
    fn buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    fn load_buffers(
        &mut self,
        _b: &HashMap<String, Tensor>,
    ) -> Result<(), nfbench::model::ModelError> {
        Ok(())
    }
}

/// A preset for the tiny net: CPU, warm-up then cosine, EMA, statistics every 4 steps, checkpoints every 5.
pub fn tiny_preset(steps: u64) -> Preset {
    let mut p = Preset::default();
    p.model.name = "tiny".into();
    p.data.batch_size = 16;
    p.run.steps = steps;
    p.run.eval_every = 10;
    p.run.stats_every = 4;
    p.run.checkpoint_every = 5;
    p.run.keep_checkpoints = 2;
    p.run.device = nfbench::preset::DeviceSpec::Cpu;
    p.optim.lr = 0.8;
    p.optim.warmup_epochs = 1.0;
    p.optim.ema_decay = 0.9;
    p.agc.lambda = 0.05;
    p
}

/// Spawns the real trainer thread on the tiny net and synthetic data (resuming the data where the state says).
pub fn spawn_tiny(preset: Preset, opts: TrainerOptions) -> TrainerHandle {
    Trainer::spawn_with(
        preset,
        opts,
        Box::new(|_dev: &Device, p: &Preset, resume: Option<&TrainState>| {
            let mut source = SyntheticSource::new(INFO, p.data.batch_size, 11)?;
            if let Some(s) = resume {
                source.seek(&s.meta.loader_position);
            }
            Ok(Parts {
                model: Box::new(TinyNet::new()),
                source: Box::new(source) as Box<dyn BatchSource>,
            })
        }),
    )
    .expect("spawn")
}

/// Serialises the tests of a file that forks child processes. A child inherits every file descriptor open in the
/// parent at that moment (HDF5 opens without close-on-exec), and with it the lock on a `metrics.h5` that another
/// test thread was writing; that file then stays locked until the child dies, and the other test's next open for
/// writing fails with "unable to lock file" (seen once in six full runs of `record_resume`).
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}
