//! Loader throughput on the shipped data set (`data/cifar10-subset.h5`), in images per second, for the default
//! preset's settings and a few variations. Run: `cargo bench --bench loader`. Compare with what training consumes
//! (`nfbench bench` reports the trainer's images/s); the loader should be at least 5x faster.
//!
//! JPEG mode, one JSON line per measurement (what `scripts/bench-loader-vs-torch.sh` runs):
//! `cargo bench --bench loader -- --jpeg DIR --mode train|decode|crop --threads N --decoder turbo|zune [--randaugment L]
//! [--resolution 192] [--images N] [--epochs E]`: `train` is the training loader over `DIR/train/<class>/*.jpg`
//! (read, Inception crop, decode, bicubic resize, flip, batch; RSS after each epoch), `decode` whole-image decoding
//! alone on N threads, `crop` one thread's crop-region + DCT-scaled decode against decoding the whole image, each
//! then resized to the resolution.

use criterion::{criterion_group, Criterion, Throughput};
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--jpeg") {
        jpeg::main(&args);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

mod jpeg {
    use nfbench::data::augment::resize::Resizer;
    use nfbench::data::augment::rng_for;
    use nfbench::data::augment::{ImageWorker, InceptionCrop, TrainTransform};
    use nfbench::data::decode::{jpeg_size, CropBox, DecoderKind, JpegDecoder};
    use nfbench::data::{
        AugmentConfig, EncodedSplit, EncodedTrainConfig, FolderSplit, Loader, LoaderPosition,
    };
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Instant;

    struct Opts {
        dir: PathBuf,
        mode: String,
        threads: usize,
        decoder: DecoderKind,
        resolution: u32,
        images: usize,
        epochs: usize,
        /// RandAugment layers in the train path (0: off), at magnitude 5 (F0's 405).
        randaugment: u32,
    }

    fn value<'a>(args: &'a [String], key: &str) -> Option<&'a str> {
        args.iter()
            .position(|a| a == key)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    }

    fn opts(args: &[String]) -> Opts {
        let num = |k: &str, d: usize| value(args, k).map_or(d, |v| v.parse().expect(k));
        Opts {
            dir: PathBuf::from(value(args, "--jpeg").expect("--jpeg DIR")),
            mode: value(args, "--mode").unwrap_or("train").to_string(),
            threads: num("--threads", 1),
            decoder: match value(args, "--decoder").unwrap_or("turbo") {
                "zune" => DecoderKind::Zune,
                _ => DecoderKind::Turbo,
            },
            resolution: num("--resolution", 192) as u32,
            images: num("--images", 0),
            epochs: num("--epochs", 1),
            randaugment: num("--randaugment", 0) as u32,
        }
    }

    /// Resident set size in MiB (Linux), NaN elsewhere.
    fn rss_mib() -> f64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            })
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    fn files(o: &Opts) -> (FolderSplit, Vec<Vec<u8>>) {
        let (_, train, _) = FolderSplit::open_root(&o.dir).expect("open the corpus");
        let n = if o.images == 0 {
            train.len()
        } else {
            o.images.min(train.len())
        };
        let mut bytes = Vec::with_capacity(n);
        for i in 0..n {
            let mut b = Vec::new();
            train.read_into(i, &mut b).expect("read");
            bytes.push(b);
        }
        (train, bytes)
    }

    pub fn main(args: &[String]) {
        let o = opts(args);
        match o.mode.as_str() {
            "train" => train(&o),
            "decode" => decode(&o),
            "crop" => crop(&o),
            m => panic!("unknown --mode {m}"),
        }
    }

    fn train(o: &Opts) {
        let (info, split, _) = FolderSplit::open_root(&o.dir).expect("open the corpus");
        let batch = 64;
        let cfg = EncodedTrainConfig {
            batch_size: batch,
            workers: o.threads,
            prefetch: 2 * o.threads,
            seed: 0,
            decoder: o.decoder,
            transform: TrainTransform {
                resolution: o.resolution,
                hflip: true,
                crop: InceptionCrop::default(),
                ops: Vec::new(),
            },
            augment: AugmentConfig {
                randaugment_layers: o.randaugment,
                randaugment_magnitude: 5,
                ..AugmentConfig::default()
            },
        };
        let mut loader =
            Loader::train_encoded(info, Arc::new(split), &cfg, LoaderPosition::default())
                .expect("loader");
        let per_epoch = loader.batches_per_epoch() as usize;
        // One warm-up batch per worker (thread start, page cache), not timed.
        for _ in 0..o.threads {
            loader.next().expect("endless").expect("batch");
        }
        let mut rss = Vec::new();
        let t = Instant::now();
        let mut images = 0;
        for _ in 0..o.epochs {
            for _ in 0..per_epoch {
                let b = loader.next().expect("endless").expect("batch");
                images += b.labels.dims()[0];
            }
            rss.push(format!("{:.1}", rss_mib()));
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{{\"impl\":\"nfbench-{}\",\"mode\":\"train\",\"randaugment\":{},\"threads\":{},\"images\":{images},\"secs\":{secs:.3},\"images_per_sec\":{:.1},\"rss_mib_per_epoch\":[{}]}}",
            o.decoder.name(),
            o.randaugment,
            o.threads,
            images as f64 / secs,
            rss.join(",")
        );
    }

    fn decode(o: &Opts) {
        let (_, bytes) = files(o);
        let t = Instant::now();
        std::thread::scope(|s| {
            for part in bytes.chunks(bytes.len().div_ceil(o.threads)) {
                s.spawn(move || {
                    let mut d = JpegDecoder::new(o.decoder).expect("decoder");
                    for b in part {
                        std::hint::black_box(d.decode(b).expect("decode"));
                    }
                });
            }
        });
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{{\"impl\":\"nfbench-{}\",\"mode\":\"decode\",\"threads\":{},\"images\":{},\"secs\":{secs:.3},\"images_per_sec\":{:.1}}}",
            o.decoder.name(),
            o.threads,
            bytes.len(),
            bytes.len() as f64 / secs
        );
    }

    fn crop(o: &Opts) {
        let (_, bytes) = files(o);
        let crop = InceptionCrop::default();
        let side = o.resolution;
        let mut worker = ImageWorker::new(o.decoder).expect("decoder");
        let mut whole = JpegDecoder::new(o.decoder).expect("decoder");
        let mut resizer = Resizer::new();
        let regions: Vec<_> = bytes
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let (w, h) = jpeg_size(b).expect("header");
                crop.sample(w, h, &mut rng_for(1, &[i as u64]))
                    .unwrap_or(nfbench::data::decode::Region::whole(w, h))
            })
            .collect();
        let time = |f: &mut dyn FnMut(&[u8], nfbench::data::decode::Region)| {
            let t = Instant::now();
            for (b, r) in bytes.iter().zip(&regions) {
                f(b, *r);
            }
            bytes.len() as f64 / t.elapsed().as_secs_f64()
        };
        let region_rate = time(&mut |b, r| {
            std::hint::black_box(worker.decode_resize(b, r, side).expect("region"));
        });
        let whole_rate = time(&mut |b, r| {
            let img = whole.decode(b).expect("decode");
            std::hint::black_box(
                resizer
                    .crop_resize(&img, CropBox::of(r), side, side)
                    .expect("resize"),
            );
        });
        println!(
            "{{\"impl\":\"nfbench-{}\",\"mode\":\"crop\",\"threads\":1,\"images\":{},\"region_images_per_sec\":{region_rate:.1},\"whole_images_per_sec\":{whole_rate:.1},\"region_speedup\":{:.3}}}",
            o.decoder.name(),
            bytes.len(),
            region_rate / whole_rate
        );
    }
}
