//! Importers: round trips on fixtures the tests make (so every path runs without ../shared) and on the real files
//! in ../shared/data when they are there; `data inspect` on the results.

mod data_support;

use data_support::{idx_bytes, read_split, shared_data, write_cifar};
use image::{ImageBuffer, Rgb};
use nfbench::data::import::{import_cifar_bin, import_folder, import_idx, CIFAR10_CLASSES};
use nfbench::data::{inspect, DatasetInfo, ImportOptions};
use std::path::{Path, PathBuf};

fn opts() -> ImportOptions {
    ImportOptions::default()
}

/// A CIFAR byte for record `r`, channel-plane offset `j` (CHW).
fn cifar_byte(r: usize, j: usize) -> u8 {
    ((r * 31 + j * 7) % 251) as u8
}

#[test]
fn cifar_directory_round_trips_pixels_labels_and_class_names() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    write_cifar(
        &src.join("data_batch_1.bin"),
        7,
        |r| (r % 3) as u8,
        cifar_byte,
    );
    write_cifar(
        &src.join("data_batch_2.bin"),
        5,
        |r| ((r + 7) % 3) as u8,
        |r, j| cifar_byte(r + 7, j),
    );
    write_cifar(
        &src.join("test_batch.bin"),
        4,
        |r| (r % 3) as u8,
        |r, j| cifar_byte(r + 100, j),
    );
    std::fs::write(src.join("batches.meta.txt"), "cat\ndog\nemu\n\n").unwrap();
    let out = dir.path().join("c.h5");
    let s = import_cifar_bin(&[src], &out, &opts()).unwrap();
    assert_eq!(
        (s.train_count, s.val_count, s.val_from_train),
        (12, 4, false)
    );
    assert_eq!(s.train_per_class, vec![4, 4, 4]);
    let info = DatasetInfo::open(&out).unwrap();
    assert_eq!(info.class_names, vec!["cat", "dog", "emu"]);
    assert_eq!((info.height, info.width, info.channels), (32, 32, 3));
    let (shape, images, labels) = read_split(&out, "train");
    assert_eq!(shape, vec![12, 32, 32, 3]);
    assert_eq!(labels, (0..12).map(|r| (r % 3) as u32).collect::<Vec<_>>());
    // HWC pixel (y, x, c) comes from CHW byte c * 1024 + y * 32 + x of the same record.
    for r in [0usize, 6, 7, 11] {
        for (y, x, c) in [(0, 0, 0), (3, 17, 1), (31, 31, 2)] {
            assert_eq!(
                images[r * 3072 + (y * 32 + x) * 3 + c],
                cifar_byte(r, c * 1024 + y * 32 + x)
            );
        }
    }
    let (_, val_images, _) = read_split(&out, "val");
    assert_eq!(val_images[5 * 3 + 1], cifar_byte(100, 1024 + 5));
    // mean/std attributes match the train pixels.
    let report = inspect(&out).unwrap();
    assert!(report.ok(), "{report}");
    let mean0 = (0..12)
        .flat_map(|r| (0..1024).map(move |j| f64::from(cifar_byte(r, j))))
        .sum::<f64>()
        / (12.0 * 1024.0);
    assert!((f64::from(info.mean[0]) - mean0 / 255.0).abs() < 1e-6);
}

#[test]
fn cifar_single_file_is_split_by_val_split_per_class_and_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("records.bin");
    write_cifar(&file, 30, |r| (r % 10) as u8, cifar_byte);
    let out = dir.path().join("a.h5");
    let o = ImportOptions {
        val_split: 0.34,
        ..opts()
    };
    let s = import_cifar_bin(std::slice::from_ref(&file), &out, &o).unwrap();
    assert!(s.val_from_train);
    assert_eq!((s.train_count, s.val_count), (20, 10));
    assert_eq!(s.val_per_class, vec![1; 10]);
    assert_eq!(
        s.class_names,
        CIFAR10_CLASSES.to_vec(),
        "no meta file: the CIFAR-10 names"
    );
    // The last image of each class goes to val.
    let (_, _, val_labels) = read_split(&out, "val");
    assert_eq!(val_labels, (0..10).collect::<Vec<u32>>());
    let (_, val_images, _) = read_split(&out, "val");
    assert_eq!(val_images[0], cifar_byte(20, 0));
    let again = dir.path().join("b.h5");
    import_cifar_bin(&[file], &again, &o).unwrap();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&again).unwrap(),
        "byte-identical re-import"
    );
}

fn mnist_like(n: usize, seed: usize) -> (Vec<u8>, Vec<u8>) {
    let images = (0..n * 4 * 5)
        .map(|i| ((i * 13 + seed) % 256) as u8)
        .collect();
    let labels = (0..n).map(|i| ((i + seed) % 10) as u8).collect();
    (images, labels)
}

#[test]
fn idx_round_trips_gzip_and_plain_with_t10k_as_val() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("mnist");
    std::fs::create_dir(&src).unwrap();
    let (ti, tl) = mnist_like(23, 0);
    let (vi, vl) = mnist_like(11, 5);
    std::fs::write(
        src.join("train-images-idx3-ubyte.gz"),
        idx_bytes(&[23, 4, 5], &ti, true),
    )
    .unwrap();
    std::fs::write(
        src.join("train-labels-idx1-ubyte"),
        idx_bytes(&[23], &tl, false),
    )
    .unwrap();
    std::fs::write(
        src.join("t10k-images-idx3-ubyte"),
        idx_bytes(&[11, 4, 5], &vi, false),
    )
    .unwrap();
    std::fs::write(
        src.join("t10k-labels-idx1-ubyte.gz"),
        idx_bytes(&[11], &vl, true),
    )
    .unwrap();
    std::fs::write(src.join("README.txt"), "ignored").unwrap();
    let out = dir.path().join("m.h5");
    let s = import_idx(&[src], &out, &opts()).unwrap();
    assert_eq!((s.train_count, s.val_count, s.channels), (23, 11, 1));
    let info = DatasetInfo::open(&out).unwrap();
    assert_eq!(
        (info.height, info.width, info.channels, info.num_classes),
        (4, 5, 1, 10)
    );
    let (shape, images, labels) = read_split(&out, "train");
    assert_eq!(shape, vec![23, 4, 5, 1]);
    assert_eq!(images, ti);
    assert_eq!(labels, tl.iter().map(|&l| u32::from(l)).collect::<Vec<_>>());
    let (_, images, labels) = read_split(&out, "val");
    assert_eq!(images, vi);
    assert_eq!(labels, vl.iter().map(|&l| u32::from(l)).collect::<Vec<_>>());
}

#[test]
fn idx_with_only_t10k_files_is_split_by_val_split() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("t10k");
    std::fs::create_dir(&src).unwrap();
    let (vi, vl) = mnist_like(40, 1);
    std::fs::write(
        src.join("t10k-images-idx3-ubyte.gz"),
        idx_bytes(&[40, 4, 5], &vi, true),
    )
    .unwrap();
    std::fs::write(
        src.join("t10k-labels-idx1-ubyte.gz"),
        idx_bytes(&[40], &vl, true),
    )
    .unwrap();
    let out = dir.path().join("t.h5");
    let s = import_idx(
        &[src],
        &out,
        &ImportOptions {
            val_split: 0.25,
            ..opts()
        },
    )
    .unwrap();
    assert!(s.val_from_train);
    assert_eq!((s.train_count, s.val_count), (30, 10));
    assert_eq!(s.val_per_class, vec![1; 10]);
}

/// A class-folder tree: classes `a`, `b` (and `c` with no val folder); PNG and JPEG, solid colours per class.
fn folder_fixture(root: &Path, size: (u32, u32)) {
    let colours = [[200u8, 30, 30], [30, 200, 30], [30, 30, 200]];
    for (split, per_class) in [("train", 4), ("val", 2)] {
        for (k, class) in ["a", "b", "c"].iter().enumerate() {
            if split == "val" && *class == "c" {
                continue;
            }
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..per_class {
                let img: ImageBuffer<Rgb<u8>, Vec<u8>> =
                    ImageBuffer::from_pixel(size.0, size.1, Rgb(colours[k]));
                let ext = if i % 2 == 0 { "png" } else { "jpg" };
                img.save(dir.join(format!("{i:03}.{ext}"))).unwrap();
            }
        }
    }
}

#[test]
fn folder_round_trips_png_and_jpeg_with_sorted_classes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    folder_fixture(&root, (10, 10));
    let out = dir.path().join("f.h5");
    let s = import_folder(&[root], &out, &opts()).unwrap();
    assert_eq!(s.class_names, vec!["a", "b", "c"]);
    assert_eq!((s.train_count, s.val_count, s.skipped_count), (12, 4, 0));
    assert_eq!(s.val_per_class, vec![2, 2, 0]);
    let (shape, images, labels) = read_split(&out, "train");
    assert_eq!(shape, vec![12, 10, 10, 3]);
    assert_eq!(labels, vec![0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
    // PNG is lossless; JPEG of a solid colour stays within a few levels.
    assert_eq!(&images[..3], &[200, 30, 30]);
    let jpeg = &images[300..303];
    assert!(
        jpeg.iter()
            .zip([200u8, 30, 30])
            .all(|(&a, b)| a.abs_diff(b) <= 4),
        "{jpeg:?}"
    );
    let report = inspect(&out).unwrap();
    assert!(report.ok());
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("class 2 (c) has no val images")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn folder_resizes_to_the_resolution_and_carves_val_when_absent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    folder_fixture(&root, (20, 12));
    std::fs::remove_dir_all(root.join("val")).unwrap();
    let out = dir.path().join("r.h5");
    let o = ImportOptions {
        resolution: Some(8),
        val_split: 0.25,
        ..opts()
    };
    let s = import_folder(&[root], &out, &o).unwrap();
    assert!(s.val_from_train);
    assert_eq!(
        (s.train_count, s.val_count, s.height, s.width),
        (9, 3, 8, 8)
    );
    let (shape, images, _) = read_split(&out, "val");
    assert_eq!(shape, vec![3, 8, 8, 3]);
    // Val image 0 is the last of class a, a JPEG: solid colours survive resizing within JPEG error.
    assert!(
        images[..3]
            .iter()
            .zip([200u8, 30, 30])
            .all(|(&a, b)| a.abs_diff(b) <= 4),
        "{:?}",
        &images[..3]
    );
}

#[test]
fn folder_skips_bad_files_with_a_count_and_names_or_fails_when_strict() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    folder_fixture(&root, (10, 10));
    let a = root.join("train/a");
    std::fs::write(a.join("empty.jpg"), b"").unwrap();
    std::fs::write(a.join("notes.txt"), b"not an image at all").unwrap();
    let jpeg = std::fs::read(a.join("001.jpg")).unwrap();
    std::fs::write(a.join("cut.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    let png = std::fs::read(a.join("000.png")).unwrap();
    std::fs::write(a.join("cut.png"), &png[..png.len() - 20]).unwrap();
    std::fs::write(a.join("garbage.png"), [&png[..16], &[7u8; 40][..]].concat()).unwrap();
    let big: ImageBuffer<Rgb<u8>, Vec<u8>> = ImageBuffer::from_pixel(12, 10, Rgb([1, 2, 3]));
    big.save(a.join("wrong_size.png")).unwrap();
    let out = dir.path().join("s.h5");
    let s = import_folder(std::slice::from_ref(&root), &out, &opts()).unwrap();
    assert_eq!(s.skipped_count, 6, "{:?}", s.skipped);
    assert_eq!(s.skipped.len(), 5, "the first five are named");
    assert_eq!(s.train_count, 12);
    let named: Vec<String> = s
        .skipped
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into())
        .collect();
    assert_eq!(
        named,
        vec![
            "cut.jpg",
            "cut.png",
            "empty.jpg",
            "garbage.png",
            "notes.txt"
        ]
    );
    let reasons: Vec<&str> = s.skipped.iter().map(|(_, r)| r.as_str()).collect();
    assert!(reasons[0].contains("truncated JPEG"), "{reasons:?}");
    assert!(reasons[2].contains("empty file"), "{reasons:?}");
    assert!(reasons[4].contains("not an image"), "{reasons:?}");
    assert!(s.to_string().contains("skipped 6 bad file(s)"));
    let strict = ImportOptions {
        strict: true,
        ..opts()
    };
    let err = import_folder(&[root], &dir.path().join("t.h5"), &strict).unwrap_err();
    assert!(
        err.to_string().contains("cut.jpg") && err.to_string().contains("--strict"),
        "{err}"
    );
    assert!(
        !dir.path().join("t.h5").exists() && !dir.path().join("t.h5.partial").exists(),
        "no half-written file"
    );
}

fn real(what: &str) -> Option<PathBuf> {
    shared_data(what).map(|d| d.join(what))
}

#[test]
fn real_cifar10_subset_round_trip() {
    let Some(src) = real("cifar10") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.h5");
    let s = import_cifar_bin(std::slice::from_ref(&src), &out, &opts()).unwrap();
    assert_eq!((s.train_count, s.val_count), (8000, 2000));
    assert_eq!(s.train_per_class, vec![800; 10]);
    let info = DatasetInfo::open(&out).unwrap();
    for (got, want) in info.mean.iter().zip([0.4919, 0.4817, 0.4457]) {
        assert!((got - want).abs() < 1e-4, "mean {got} vs {want}");
    }
    for (got, want) in info.std.iter().zip([0.2463, 0.2443, 0.2617]) {
        assert!((got - want).abs() < 1e-4, "std {got} vs {want}");
    }
    // Record 0 of test.bin is val image 0.
    let raw = std::fs::read(src.join("test.bin")).unwrap();
    let (_, images, labels) = read_split(&out, "val");
    assert_eq!(labels[0], u32::from(raw[0]));
    assert_eq!(images[(5 * 32 + 9) * 3 + 2], raw[1 + 2 * 1024 + 5 * 32 + 9]);
}

#[test]
fn real_mnist_round_trip() {
    let Some(src) = real("mnist") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.h5");
    let s = import_idx(&[src], &out, &opts()).unwrap();
    assert_eq!(
        (s.train_count + s.val_count, s.channels, s.height),
        (10000, 1, 28)
    );
    let total: Vec<usize> = s
        .train_per_class
        .iter()
        .zip(&s.val_per_class)
        .map(|(a, b)| a + b)
        .collect();
    assert_eq!(
        total,
        vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    let (_, _, labels) = read_split(&out, "train");
    assert_eq!(&labels[..10], &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
}

#[test]
fn real_cifar10_jpeg_folder_round_trip() {
    let Some(src) = real("cifar10-jpeg") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.h5");
    let s = import_folder(&[src], &out, &opts()).unwrap();
    assert_eq!((s.train_count, s.val_count, s.skipped_count), (500, 200, 0));
    assert_eq!(s.class_names, CIFAR10_CLASSES.to_vec());
    assert_eq!(s.val_per_class, vec![20; 10]);
    assert!(inspect(&out).unwrap().ok());
}
