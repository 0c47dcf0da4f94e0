//! Fixtures for the data tests: small data sets and source files the tests make themselves, and the path to the real
//! data in `../shared/data` when it is there.
#![allow(dead_code)]

use nfbench::data::{DatasetWriter, ImageShape, Split};
use std::path::{Path, PathBuf};

/// `../shared/data` beside the checkout (or `$NFBENCH_SHARED_DATA`), or None with a visible skip message.
pub fn shared_data(what: &str) -> Option<PathBuf> {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let candidates = [
        Some(beside),
        std::env::var_os("NFBENCH_SHARED_DATA").map(PathBuf::from),
    ];
    for dir in candidates.into_iter().flatten() {
        if dir.join(what).exists() {
            return Some(dir);
        }
    }
    eprintln!(
        "SKIPPED: ../shared/data/{what} is absent (set NFBENCH_SHARED_DATA to run this test)"
    );
    None
}

/// A small data set whose pixels are `pixel(index, label, y, x, c)`; labels are `index % classes`.
pub struct Fixture {
    pub train: usize,
    pub val: usize,
    pub shape: ImageShape,
    pub classes: usize,
}

impl Fixture {
    pub fn new(train: usize, val: usize, h: usize, w: usize, c: usize, classes: usize) -> Self {
        Self {
            train,
            val,
            shape: ImageShape {
                height: h,
                width: w,
                channels: c,
            },
            classes,
        }
    }

    pub fn label(&self, index: usize) -> u32 {
        (index % self.classes) as u32
    }

    /// Write the fixture to `path` with pixel values from `pixel`.
    pub fn write(
        &self,
        path: &Path,
        pixel: impl Fn(usize, u32, usize, usize, usize) -> u8,
    ) -> PathBuf {
        let names = (0..self.classes).map(|k| format!("class{k}")).collect();
        let mut w = DatasetWriter::create(path, self.shape, names).expect("create fixture");
        for (split, n) in [(Split::Train, self.train), (Split::Val, self.val)] {
            let mut images = Vec::new();
            let mut labels = Vec::new();
            for i in 0..n {
                let label = self.label(i);
                for y in 0..self.shape.height {
                    for x in 0..self.shape.width {
                        for c in 0..self.shape.channels {
                            images.push(pixel(i, label, y, x, c));
                        }
                    }
                }
                labels.push(label);
            }
            w.append(split, &images, &labels).expect("append fixture");
        }
        w.finish("test fixture").expect("finish fixture")
    }
}

/// Pixels that identify the image: channel 0 of pixel 0 is `index % 256`, of pixel 1 `index / 256`; the rest
/// encode the label.
pub fn identity_pixel(i: usize, label: u32, y: usize, x: usize, c: usize) -> u8 {
    match (y, x, c) {
        (0, 0, 0) => (i % 256) as u8,
        (0, 1, 0) => (i / 256) as u8,
        _ => label_value(label),
    }
}

/// Every pixel encodes the label (never 0, so zero padding is told apart).
pub fn label_pixel(_i: usize, label: u32, _y: usize, _x: usize, _c: usize) -> u8 {
    label_value(label)
}

pub fn label_value(label: u32) -> u8 {
    (20 + 20 * label) as u8
}

/// Write CIFAR binary records: `(label, [3 * 1024 CHW bytes])` from a function of the record index.
pub fn write_cifar(
    path: &Path,
    n: usize,
    label: impl Fn(usize) -> u8,
    byte: impl Fn(usize, usize) -> u8,
) {
    let mut data = Vec::with_capacity(n * 3073);
    for r in 0..n {
        data.push(label(r));
        for j in 0..3072 {
            data.push(byte(r, j));
        }
    }
    std::fs::write(path, data).expect("write cifar fixture");
}

/// An IDX file of u8 with the given dims, optionally gzip-compressed.
pub fn idx_bytes(dims: &[u32], data: &[u8], gzip: bool) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    if gzip {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&out).expect("gzip");
        enc.finish().expect("gzip")
    } else {
        out
    }
}

/// Read `/<split>/images` rows `[start, end)` and the split's labels straight from the file.
pub fn read_split(path: &Path, split: &str) -> (Vec<usize>, Vec<u8>, Vec<u32>) {
    let file = hdf5::File::open(path).expect("open");
    let ds = file.dataset(&format!("{split}/images")).expect("images");
    let shape = ds.shape();
    let images: Vec<u8> = ds.read_raw().expect("read images");
    let labels: Vec<u32> = file
        .dataset(&format!("{split}/labels"))
        .expect("labels")
        .read_raw()
        .expect("read labels");
    (shape, images, labels)
}
