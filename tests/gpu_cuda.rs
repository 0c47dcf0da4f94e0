//! The CUDA path against the CPU path, run by `scripts/gpu-check.sh` on a GPU machine.
//!
//! On the GPU the kernels fall back to candle's composite ops (the CPU uses custom ops with their own backward), so
//! these check that both paths give the same values and gradients: conv2d (grouped, strided, asymmetric padding),
//! scaled weight standardisation, max pooling, and a whole NF-ResNet forward + backward with its signal-propagation
//! statistics. The device is `NFBENCH_TEST_DEVICE` (default `cuda:0`; `cpu` runs the harness CPU against CPU). Without the `cuda` feature or without a GPU
//! every test prints why it is skipped and passes, so the CPU suite (and CI) is unaffected.

use candle_core::{Device, Tensor, Var};
use nfbench::kernels::{self, Padding};
use nfbench::model::{ForwardOptions, Network};
use nfbench::preset::schema::ModelConfig;

/// The CUDA device under test, or `None` (with the reason printed) when there is none.
fn cuda_device() -> Option<Device> {
    let spec = std::env::var("NFBENCH_TEST_DEVICE").unwrap_or_else(|_| "cuda:0".into());
    if spec == "cpu" {
        // Exercises this harness without a GPU: the CPU against itself.
        eprintln!(
            "gpu_cuda: NFBENCH_TEST_DEVICE=cpu: comparing the CPU with itself (harness check)"
        );
        return Some(Device::Cpu);
    }
    let parsed = match spec.parse::<nfbench::preset::DeviceSpec>() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("gpu_cuda: skipped: NFBENCH_TEST_DEVICE: {e}");
            return None;
        }
    };
    match nfbench::train::select_device(parsed) {
        Ok(d) if d.is_cuda() => Some(d),
        Ok(_) => {
            eprintln!("gpu_cuda: skipped: NFBENCH_TEST_DEVICE={spec} is not a CUDA device");
            None
        }
        Err(e) => {
            eprintln!("gpu_cuda: skipped: no CUDA device ({e})");
            None
        }
    }
}

/// A reproducible host tensor with entries uniform in [-1, 1).
fn host(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            // xorshift64*: enough for test data, no dependency on a rand version.
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let r = s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
            (r as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).expect("test tensor")
}

/// max |a - b| / max(max |b|, 1e-6), both brought to the host as f32.
fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.to_device(&Device::Cpu).unwrap().flatten_all().unwrap();
    let b = b.to_device(&Device::Cpu).unwrap().flatten_all().unwrap();
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a: Vec<f32> = a.to_vec1().unwrap();
    let b: Vec<f32> = b.to_vec1().unwrap();
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

/// Run `f` on both devices with the same inputs (as Vars) and a fixed random cotangent; return outputs and grads.
fn value_and_grads(
    f: &dyn Fn(&[Tensor]) -> candle_core::Result<Tensor>,
    inputs: &[Tensor],
    device: &Device,
) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(&t.to_device(device).unwrap()).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts).unwrap();
    let cot = host(y.dims(), 99).to_device(device).unwrap();
    let grads = (&y * &cot).unwrap().sum_all().unwrap().backward().unwrap();
    let g = vars
        .iter()
        .map(|v| grads.get(v.as_tensor()).expect("gradient").clone())
        .collect();
    (y, g)
}

fn assert_same_on_cuda(
    what: &str,
    f: &dyn Fn(&[Tensor]) -> candle_core::Result<Tensor>,
    inputs: &[Tensor],
    tol: f32,
) {
    let Some(gpu) = cuda_device() else { return };
    let (y_cpu, g_cpu) = value_and_grads(f, inputs, &Device::Cpu);
    let (y_gpu, g_gpu) = value_and_grads(f, inputs, &gpu);
    let e = rel_err(&y_gpu, &y_cpu);
    assert!(e < tol, "{what}: forward differs from the CPU by {e}");
    for (i, (a, b)) in g_gpu.iter().zip(&g_cpu).enumerate() {
        let e = rel_err(a, b);
        assert!(e < tol, "{what}: gradient of input {i} differs by {e}");
    }
}

#[test]
fn conv2d_grouped_strided_asymmetric_matches_cpu() {
    let pad = Padding {
        top: 0,
        bottom: 1,
        left: 0,
        right: 1,
    };
    let f = move |t: &[Tensor]| kernels::conv2d_padded(&t[0], &t[1], 2, pad, 2);
    assert_same_on_cuda(
        "conv2d",
        &f,
        &[host(&[2, 8, 10, 10], 1), host(&[6, 4, 3, 3], 2)],
        1e-4,
    );
    let g = |t: &[Tensor]| kernels::conv2d(&t[0], &t[1], 1, 1, 1);
    assert_same_on_cuda(
        "conv2d 3x3",
        &g,
        &[host(&[2, 5, 7, 7], 3), host(&[4, 5, 3, 3], 4)],
        1e-4,
    );
}

#[test]
fn weight_standardize_matches_cpu() {
    let f = |t: &[Tensor]| kernels::weight_standardize(&t[0], &t[1], 1e-4);
    assert_same_on_cuda(
        "weight_standardize",
        &f,
        &[host(&[8, 3, 3, 3], 5), host(&[8], 6)],
        1e-4,
    );
}

#[test]
fn max_pool_matches_cpu() {
    let f = |t: &[Tensor]| kernels::max_pool2d(&t[0], 3, 2, 1);
    assert_same_on_cuda("max_pool2d", &f, &[host(&[2, 3, 9, 9], 7)], 1e-5);
}

/// A whole NF-ResNet (skip gains 1, so every residual branch contributes): logits, spp rows and every parameter's
/// gradient agree with the CPU.
#[test]
fn network_forward_backward_matches_cpu() {
    let Some(gpu) = cuda_device() else { return };
    let cfg = ModelConfig {
        skip_gain_init: 1.0,
        ..ModelConfig::default()
    };
    let x = host(&[4, 3, 32, 32], 11);
    let run = |device: &Device| {
        let net = Network::build(&cfg, 10, 3, 32, device, 5).expect("network");
        let opts = ForwardOptions {
            train: false,
            spp: true,
            seed: 0,
        };
        let out = net
            .forward(&x.to_device(device).unwrap(), &opts)
            .expect("forward");
        let cot = host(out.logits.dims(), 12).to_device(device).unwrap();
        let grads = (&out.logits * &cot)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g: Vec<(String, Tensor)> = net
            .params()
            .iter()
            .filter_map(|p| {
                grads
                    .get(p.var.as_tensor())
                    .map(|g| (p.name.clone(), g.clone()))
            })
            .collect();
        (out.logits, out.spp.expect("spp asked"), g)
    };
    let (l_cpu, s_cpu, g_cpu) = run(&Device::Cpu);
    let (l_gpu, s_gpu, g_gpu) = run(&gpu);
    assert!(rel_err(&l_gpu, &l_cpu) < 1e-3, "logits differ");
    assert!(rel_err(&s_gpu, &s_cpu) < 1e-3, "spp statistics differ");
    assert_eq!(
        g_cpu.len(),
        g_gpu.len(),
        "different parameters got gradients"
    );
    assert!(!g_cpu.is_empty(), "no gradients at all");
    for ((name, a), (_, b)) in g_gpu.iter().zip(&g_cpu) {
        let e = rel_err(a, b);
        assert!(e < 2e-3, "gradient of {name} differs from the CPU by {e}");
    }
}

/// bf16 activations on the device against f32 on the CPU: logits to bf16 accuracy, every gradient f32 and pointing
/// the same way (cosine), and the signal-propagation rows in f32.
#[test]
fn network_bf16_on_device_tracks_cpu_f32() {
    let Some(gpu) = cuda_device() else { return };
    let cfg = ModelConfig {
        skip_gain_init: 1.0,
        ..ModelConfig::default()
    };
    let x = host(&[8, 3, 32, 32], 21);
    let run = |device: &Device, precision: nfbench::model::Precision| {
        let mut net = Network::build(&cfg, 10, 3, 32, device, 5).expect("network");
        net.set_precision(precision);
        let opts = ForwardOptions {
            train: false,
            spp: true,
            seed: 0,
        };
        let out = net
            .forward(&x.to_device(device).unwrap(), &opts)
            .expect("forward");
        assert_eq!(out.logits.dtype(), candle_core::DType::F32);
        let spp = out.spp.expect("spp asked");
        assert_eq!(spp.dtype(), candle_core::DType::F32);
        let cot = host(out.logits.dims(), 22).to_device(device).unwrap();
        let grads = (&out.logits * &cot)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g: Vec<(String, Vec<f32>)> = net
            .params()
            .iter()
            .map(|p| {
                let g = grads
                    .get(p.var.as_tensor())
                    .expect("every parameter has a gradient");
                assert_eq!(g.dtype(), candle_core::DType::F32, "{}", p.name);
                let v = g.flatten_all().unwrap().to_device(&Device::Cpu).unwrap();
                (p.name.clone(), v.to_vec1::<f32>().unwrap())
            })
            .collect();
        (out.logits, g)
    };
    let (l_cpu, g_cpu) = run(&Device::Cpu, nfbench::model::Precision::F32);
    let (l_dev, g_dev) = run(&gpu, nfbench::model::Precision::Bf16);
    let e = rel_err(&l_dev, &l_cpu);
    assert!(e < 5e-2, "bf16 logits differ from f32 by {e}");
    for ((name, a), (_, b)) in g_dev.iter().zip(&g_cpu) {
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        let na = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let nb = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        if na == 0.0 && nb == 0.0 {
            continue;
        }
        let cos = dot / (na * nb);
        assert!(cos > 0.97, "bf16 gradient of {name}: cosine {cos} to f32");
    }
}

/// `auto` takes the GPU when there is one and the CPU otherwise, also in a CUDA build on a machine without a GPU
/// or driver (candle's `cuda_if_available` only asks how the binary was built).
#[test]
fn auto_device_falls_back_to_the_cpu() {
    use nfbench::preset::DeviceSpec;
    let auto = nfbench::train::select_device(DeviceSpec::Auto).expect("auto always gives a device");
    match nfbench::train::select_device(DeviceSpec::Cuda(0)) {
        Ok(_) => assert!(auto.is_cuda(), "a GPU is present but auto chose {auto:?}"),
        Err(_) => assert!(auto.is_cpu(), "no GPU, yet auto chose {auto:?}"),
    }
}
