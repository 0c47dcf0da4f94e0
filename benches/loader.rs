//! Loader throughput on the shipped data set (`data/cifar10-subset.h5`), in images per second, for the default
//! preset's settings and a few variations. Run: `cargo bench --bench loader`. Compare with what training consumes
//! (`nfbench bench` reports the trainer's images/s); the loader should be at least 5x faster.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nfbench::data::{Loader, LoaderConfig, LoaderPosition, Split};
use nfbench::preset::schema::DataConfig;
use std::path::PathBuf;
use std::time::Duration;

/// Batches pulled per measured iteration.
const BATCHES: usize = 20;

fn data_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(DataConfig::default().path)
}

fn train_case(c: &mut Criterion, name: &str, cfg: LoaderConfig) {
    let mut group = c.benchmark_group("loader");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements((cfg.batch_size * BATCHES) as u64));
    let mut loader = Loader::train(data_path(), &cfg, LoaderPosition::default())
        .expect("open the shipped data set");
    group.bench_function(name, |b| {
        b.iter(|| {
            for _ in 0..BATCHES {
                let batch = loader.next().expect("endless").expect("batch");
                std::hint::black_box(batch);
            }
        })
    });
    group.finish();
}

fn loader(c: &mut Criterion) {
    let preset = DataConfig::default();
    let default = LoaderConfig::from_preset(&preset, 0);
    train_case(c, "train_default_preset", default.clone());
    train_case(
        c,
        "train_1_worker",
        LoaderConfig {
            workers: 1,
            ..default.clone()
        },
    );
    train_case(
        c,
        "train_4_workers",
        LoaderConfig {
            workers: 4,
            prefetch: 8,
            ..default.clone()
        },
    );
    train_case(
        c,
        "train_resize_64px",
        LoaderConfig {
            resolution: 64,
            ..default.clone()
        },
    );

    let mut group = c.benchmark_group("loader");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(2000));
    group.bench_function("eval_val_split", |b| {
        b.iter(|| {
            for batch in Loader::eval(data_path(), Split::Val, 256, 0, 0).expect("eval loader") {
                std::hint::black_box(batch.expect("batch"));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, loader);
criterion_main!(benches);
