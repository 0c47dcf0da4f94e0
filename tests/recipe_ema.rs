//! EMA evaluation: DeepMind's `tf1_ema` decay warm-up, the start step, evaluating the EMA and/or raw weights per
//! `run.eval_weights`, each result saying which weights it measured.

mod mlp_support;

use candle_core::{Device, Tensor};
use mlp_support::{det, Mlp, INFO};
use nfbench::optim::{EmaSchedule, EmaWarmup};
use nfbench::preset::schema::EvalWeights;
use nfbench::preset::Preset;
use nfbench::train::source::HostBatch;
use nfbench::train::step::{StepRunner, Weights};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[test]
fn tf1_warmup_and_start_step_follow_deepminds_formula() {
    let s = EmaSchedule {
        decay: 0.99999,
        warmup: EmaWarmup::Tf1,
        start: 0,
    };
    for t in [0u64, 1, 9, 100, 10_000] {
        let want = 0.99999f64.min((1.0 + t as f64) / (10.0 + t as f64));
        assert_eq!(s.decay_at(t), want, "{t}");
    }
    assert_eq!(s.decay_at(0), 0.1);
    assert_eq!(s.decay_at(100_000_000), 0.99999);
    let late = EmaSchedule { start: 50, ..s };
    assert_eq!(
        late.decay_at(49),
        0.0,
        "before the start the average is the weights"
    );
    assert_eq!(late.decay_at(50), 0.1, "the warm-up counts from the start");
    let constant = EmaSchedule {
        warmup: EmaWarmup::Constant,
        ..s
    };
    assert_eq!(constant.decay_at(0), 0.99999);
}

#[test]
fn eval_weights_choose_the_rows() {
    assert_eq!(Weights::for_run(EvalWeights::Ema, true), vec![Weights::Ema]);
    assert_eq!(Weights::for_run(EvalWeights::Raw, true), vec![Weights::Raw]);
    assert_eq!(
        Weights::for_run(EvalWeights::Both, true),
        vec![Weights::Raw, Weights::Ema]
    );
    assert_eq!(
        Weights::for_run(EvalWeights::Both, false),
        vec![Weights::Raw]
    );
}

fn eval_batch() -> HostBatch {
    let labels: Vec<u32> = (0..16).map(|i| i % 4).collect();
    HostBatch::new(
        det(&[16, 1, 4, 4], 4.0, 77),
        Tensor::from_vec(labels, 16, &Device::Cpu).unwrap(),
    )
}

#[test]
fn ema_and_raw_evaluations_measure_different_weights_and_say_which() {
    let mut p = Preset::default();
    p.data.batch_size = 16;
    p.optim.ema_decay = 0.999;
    p.optim.ema_warmup = EmaWarmup::Constant;
    p.optim.lr = 2.0;
    p.optim.warmup_epochs = 0.0;
    let model = Box::new(Mlp::new(Arc::new(AtomicBool::new(false))));
    let mut r = StepRunner::new(model, Device::Cpu, &p, &INFO).unwrap();
    let before = r
        .evaluate_with(std::iter::once(Ok(eval_batch())), Weights::Raw)
        .unwrap();
    for s in 0..20 {
        let b = HostBatch::new(
            det(&[16, 1, 4, 4], 4.0, 200 + s),
            Tensor::from_vec(
                (0..16).map(|i| i % 4).collect::<Vec<u32>>(),
                16,
                &Device::Cpu,
            )
            .unwrap(),
        );
        r.run_step(&b, false, false).unwrap();
    }
    let raw = r
        .evaluate_with(std::iter::once(Ok(eval_batch())), Weights::Raw)
        .unwrap();
    let ema = r
        .evaluate_with(std::iter::once(Ok(eval_batch())), Weights::Ema)
        .unwrap();
    assert!(!raw.ema && ema.ema);
    // With decay 0.999 over 20 steps the average has barely left the initial weights; the raw ones have.
    assert!(
        (ema.loss - before.loss).abs() < (raw.loss - before.loss).abs(),
        "{before:?} {raw:?} {ema:?}"
    );
    assert!((raw.loss - ema.loss).abs() > 1e-4);
    // Evaluating the EMA puts the raw weights back.
    let again = r
        .evaluate_with(std::iter::once(Ok(eval_batch())), Weights::Raw)
        .unwrap();
    assert_eq!(again.loss, raw.loss);
}
