//! RandAugment alone, in images per second, on 192 px RGB images (the NFNet-F0 training resolution) at the NFNet
//! settings: 4 layers at magnitude 5 (F0), 10 (F1, F2) and 15 (F3+), one thread, a fresh per-image generator each
//! image as the loader keys it. Run: `cargo bench --bench randaugment`. The loader benchmark measures it inside
//! the pipeline (`augment.randaugment_layers` on against off).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nfbench::data::augment::rng_for;
use nfbench::data::randaugment::{PixelConsts, RandAugment};
use nfbench::data::RgbImage;
use std::time::Duration;

const SIDE: u32 = 192;
const IMAGES: u64 = 32;

fn photo_like() -> RgbImage {
    let px = (0..SIDE * SIDE)
        .flat_map(|i| {
            let (x, y) = (i % SIDE, i / SIDE);
            [
                (x * 255 / SIDE) as u8,
                (y * 255 / SIDE) as u8,
                ((x ^ y) & 0xff) as u8,
            ]
        })
        .collect();
    RgbImage::from_raw(SIDE, SIDE, px).expect("a 192 px image")
}

fn randaugment(c: &mut Criterion) {
    let source = photo_like();
    let mut group = c.benchmark_group("randaugment_192px");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(IMAGES));
    for code in [405u32, 410, 415] {
        let ra = RandAugment::from_code(code, PixelConsts::default());
        let mut batch = 0u64;
        group.bench_function(format!("{code}"), |b| {
            b.iter(|| {
                batch += 1;
                for i in 0..IMAGES {
                    let mut img = source.clone();
                    ra.apply(&mut img, &mut rng_for(0, &[3, 0, batch, i]));
                    std::hint::black_box(&img);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, randaugment);
criterion_main!(benches);
