//! Bad input: every case gets an error naming the file and the reason, never a panic.

mod data_support;

use clap::Parser;
use data_support::{idx_bytes, label_pixel, write_cifar, Fixture};
use hdf5::types::VarLenUnicode;
use nfbench::cli::Cli;
use nfbench::data::import::{import_cifar_bin, import_folder, import_idx};
use nfbench::data::{
    inspect, DataError, DatasetInfo, ImportOptions, Loader, LoaderConfig, LoaderPosition, Split,
};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Assert that `err` names `path` and says `reason`.
fn says(err: &DataError, path: &Path, reason: &str) {
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()),
        "{text:?} should name {}",
        path.display()
    );
    assert!(text.contains(reason), "{text:?} should say {reason:?}");
}

#[test]
fn missing_file() {
    let path = PathBuf::from("/nonexistent/dir/data.h5");
    let err = DatasetInfo::open(&path).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }));
    says(&err, &path, "cannot open");
}

#[test]
fn not_hdf5_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.h5");
    std::fs::write(&text, "this is a text file, not HDF5\n".repeat(40)).unwrap();
    let err = DatasetInfo::open(&text).unwrap_err();
    assert!(matches!(err, DataError::NotHdf5 { .. }));
    says(&err, &text, "not an HDF5 file");
    let empty = dir.path().join("empty.h5");
    std::fs::write(&empty, b"").unwrap();
    says(&DatasetInfo::open(&empty).unwrap_err(), &empty, "empty");
}

#[test]
fn truncated_file_at_any_length() {
    let dir = tempfile::tempdir().unwrap();
    let good = Fixture::new(40, 10, 8, 8, 3, 4).write(&dir.path().join("good.h5"), label_pixel);
    let bytes = std::fs::read(&good).unwrap();
    for keep in [4, 100, 2048, bytes.len() / 2, bytes.len() - 1] {
        let cut = dir.path().join(format!("cut{keep}.h5"));
        std::fs::write(&cut, &bytes[..keep]).unwrap();
        let err = DatasetInfo::open(&cut).unwrap_err();
        assert!(
            err.to_string().contains(&cut.display().to_string()),
            "{err}"
        );
        let c = LoaderConfig {
            batch_size: 4,
            resolution: 0,
            crop_padding: 0,
            hflip: false,
            workers: 1,
            prefetch: 1,
            seed: 0,
        };
        assert!(Loader::train(&cut, &c, LoaderPosition::default()).is_err());
    }
}

/// What to break in a hand-written data-set file.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Defect {
    None,
    FloatImages,
    Rank3Images,
    LabelOutOfRange,
    NegativeLabel,
    FloatLabels,
    LabelCountMismatch,
    EmptyVal,
    MissingVal,
    ValShapeDiffers,
    MissingVersion,
    FutureVersion,
    MeanWrongLength,
    ZeroStd,
    NoClasses,
    MeanOff,
}

/// A tiny data set written with the hdf5 crate directly (as h5py would), with one defect.
fn hand_written(path: &Path, defect: Defect) {
    let f = hdf5::File::create(path).unwrap();
    for split in ["train", "val"] {
        if split == "val" && defect == Defect::MissingVal {
            continue;
        }
        let g = f.create_group(split).unwrap();
        let n = if split == "val" && defect == Defect::EmptyVal {
            0
        } else {
            4
        };
        let side = if split == "val" && defect == Defect::ValShapeDiffers {
            3
        } else {
            2
        };
        let pixels: Vec<u8> = (0..n * side * side)
            .map(|i| if i % 2 == 0 { 0 } else { 255 })
            .collect();
        match defect {
            Defect::FloatImages if split == "train" => {
                let px: Vec<f32> = pixels.iter().map(|&p| f32::from(p)).collect();
                let a = ndarray::Array4::from_shape_vec((n, side, side, 1), px).unwrap();
                g.new_dataset_builder()
                    .with_data(&a)
                    .create("images")
                    .unwrap();
            }
            Defect::Rank3Images if split == "train" => {
                let a = ndarray::Array3::from_shape_vec((n, side, side), pixels).unwrap();
                g.new_dataset_builder()
                    .with_data(&a)
                    .create("images")
                    .unwrap();
            }
            _ => {
                let a = ndarray::Array4::from_shape_vec((n, side, side, 1), pixels).unwrap();
                g.new_dataset_builder()
                    .with_data(&a)
                    .create("images")
                    .unwrap();
            }
        }
        let mut labels: Vec<i64> = (0..n as i64).map(|i| i % 2).collect();
        if split == "train" {
            match defect {
                Defect::LabelOutOfRange => labels[3] = 2,
                Defect::NegativeLabel => labels[1] = -1,
                Defect::LabelCountMismatch => labels.push(0),
                _ => {}
            }
        }
        if defect == Defect::FloatLabels && split == "train" {
            let l: Vec<f64> = labels.iter().map(|&l| l as f64).collect();
            g.new_dataset_builder()
                .with_data(&l)
                .create("labels")
                .unwrap();
        } else {
            g.new_dataset_builder()
                .with_data(&labels)
                .create("labels")
                .unwrap();
        }
    }
    let version: u32 = if defect == Defect::FutureVersion {
        99
    } else {
        1
    };
    if defect != Defect::MissingVersion {
        f.new_attr::<u32>()
            .create("format_version")
            .unwrap()
            .write_scalar(&version)
            .unwrap();
    }
    let names: Vec<VarLenUnicode> = if defect == Defect::NoClasses {
        Vec::new()
    } else {
        ["zero", "one"]
            .iter()
            .map(|s| VarLenUnicode::from_str(s).unwrap())
            .collect()
    };
    if names.is_empty() {
        f.new_attr::<VarLenUnicode>()
            .shape(0)
            .create("class_names")
            .unwrap();
    } else {
        f.new_attr_builder()
            .with_data(&names)
            .create("class_names")
            .unwrap();
    }
    let mean: Vec<f64> = match defect {
        Defect::MeanWrongLength => vec![0.5, 0.5, 0.5],
        Defect::MeanOff => vec![0.1],
        _ => vec![0.5],
    };
    let std = if defect == Defect::ZeroStd { 0.0 } else { 0.5 };
    f.new_attr_builder()
        .with_data(&mean)
        .create("mean")
        .unwrap();
    f.new_attr_builder()
        .with_data(&[std])
        .create("std")
        .unwrap();
}

#[test]
fn layout_defects_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (Defect::FloatImages, "/train/images: dtype is Float"),
        (Defect::Rank3Images, "/train/images: rank 3"),
        (
            Defect::LabelOutOfRange,
            "/train/labels: label 2 at index 3 is out of range 0..2",
        ),
        (Defect::NegativeLabel, "label -1 at index 1 is out of range"),
        (Defect::FloatLabels, "/train/labels: dtype is Float"),
        (
            Defect::LabelCountMismatch,
            "/train/labels: 5 labels for 4 images",
        ),
        (Defect::EmptyVal, "/val/images: empty split"),
        (Defect::MissingVal, "/val/images: missing dataset"),
        (Defect::ValShapeDiffers, "differs from the train split"),
        (Defect::MissingVersion, "format_version: missing"),
        (Defect::FutureVersion, "version 99 is not supported"),
        (
            Defect::MeanWrongLength,
            "attribute mean: 3 values for 1 channels",
        ),
        (Defect::ZeroStd, "attribute std: channel 0 has std 0"),
        (Defect::NoClasses, "class_names: no classes"),
    ];
    for (defect, reason) in cases {
        let path = dir.path().join(format!("{defect:?}.h5"));
        hand_written(&path, defect);
        let err = DatasetInfo::open(&path).unwrap_err();
        says(&err, &path, reason);
        assert!(Loader::eval(&path, Split::Val, 2, 0, 0).is_err());
    }
    // The defect-free hand-written file (as h5py would write it, i64 labels, no chunks) is fine.
    let ok = dir.path().join("ok.h5");
    hand_written(&ok, Defect::None);
    assert_eq!(DatasetInfo::open(&ok).unwrap().train_count, 4);
    let b: Vec<_> = Loader::eval(&ok, Split::Train, 3, 0, 0)
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(b.len(), 2);
}

#[test]
fn inspect_reports_problems_and_the_cli_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let off = dir.path().join("off.h5");
    hand_written(&off, Defect::MeanOff);
    let report = inspect(&off).unwrap();
    assert!(!report.ok());
    assert!(
        report.problems[0].contains("stored mean/std"),
        "{:?}",
        report.problems
    );
    let run = |args: &[&str]| nfbench::cli::run(Cli::try_parse_from(args).unwrap());
    let code = run(&["nfbench", "data", "inspect", off.to_str().unwrap()]).unwrap();
    assert_eq!(
        format!("{code:?}"),
        format!("{:?}", std::process::ExitCode::FAILURE)
    );
    let ok = dir.path().join("ok.h5");
    hand_written(&ok, Defect::None);
    let code = run(&["nfbench", "data", "inspect", "--json", ok.to_str().unwrap()]).unwrap();
    assert_eq!(
        format!("{code:?}"),
        format!("{:?}", std::process::ExitCode::SUCCESS)
    );
    let bad = dir.path().join("bad.h5");
    hand_written(&bad, Defect::LabelOutOfRange);
    let err = run(&["nfbench", "data", "inspect", bad.to_str().unwrap()]).unwrap_err();
    assert!(format!("{err:#}").contains("out of range"));
}

#[test]
fn unknown_import_format_is_refused_by_the_cli() {
    let err = Cli::try_parse_from([
        "nfbench", "data", "import", "--format", "tfrecord", "src", "--out", "x.h5",
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("tfrecord") && err.contains("cifar-bin"),
        "{err}"
    );
}

fn cifar_err(dir: &Path, name: &str, bytes: &[u8]) -> (PathBuf, DataError) {
    let src = dir.join(name);
    std::fs::write(&src, bytes).unwrap();
    let err = import_cifar_bin(
        std::slice::from_ref(&src),
        &dir.join("out.h5"),
        &ImportOptions::default(),
    )
    .unwrap_err();
    (src, err)
}

#[test]
fn cifar_bad_sources() {
    let dir = tempfile::tempdir().unwrap();
    let (p, e) = cifar_err(dir.path(), "short.bin", &[0u8; 3000]);
    says(&e, &p, "not a multiple of the 3073-byte CIFAR record");
    let (p, e) = cifar_err(dir.path(), "empty.bin", b"");
    says(&e, &p, "empty file");
    let labels = dir.path().join("labels.bin");
    write_cifar(&labels, 3, |r| if r == 2 { 12 } else { 1 }, |_, _| 0);
    let e = import_cifar_bin(
        std::slice::from_ref(&labels),
        &dir.path().join("o.h5"),
        &ImportOptions::default(),
    )
    .unwrap_err();
    says(&e, &labels, "record 2: label 12 is out of range 0..10");
    let missing = dir.path().join("missing.bin");
    let e = import_cifar_bin(
        std::slice::from_ref(&missing),
        &dir.path().join("o.h5"),
        &ImportOptions::default(),
    )
    .unwrap_err();
    says(&e, &missing, "cannot open");
    let empty_dir = dir.path().join("nothing");
    std::fs::create_dir(&empty_dir).unwrap();
    let e = import_cifar_bin(
        std::slice::from_ref(&empty_dir),
        &dir.path().join("o.h5"),
        &ImportOptions::default(),
    )
    .unwrap_err();
    says(&e, &empty_dir, "no *.bin");
    let good = dir.path().join("good.bin");
    write_cifar(&good, 10, |r| (r % 10) as u8, |_, _| 0);
    let bad_split = ImportOptions {
        val_split: 1.5,
        ..ImportOptions::default()
    };
    let e = import_cifar_bin(&[good], &dir.path().join("o.h5"), &bad_split).unwrap_err();
    assert!(e.to_string().contains("--val-split"), "{e}");
    assert!(!dir.path().join("o.h5").exists() && !dir.path().join("o.h5.partial").exists());
}

#[test]
fn idx_bad_sources() {
    let dir = tempfile::tempdir().unwrap();
    let case = |name: &str, files: &[(&str, Vec<u8>)]| -> (PathBuf, DataError) {
        let src = dir.path().join(name);
        std::fs::create_dir(&src).unwrap();
        for (f, bytes) in files {
            std::fs::write(src.join(f), bytes).unwrap();
        }
        let err = import_idx(
            std::slice::from_ref(&src),
            &dir.path().join("o.h5"),
            &ImportOptions::default(),
        )
        .unwrap_err();
        (src, err)
    };
    let images = idx_bytes(&[3, 2, 2], &[1u8; 12], false);
    let labels = idx_bytes(&[3], &[0, 1, 2], false);
    let (src, e) = case(
        "magic",
        &[
            ("t10k-images-idx3-ubyte", b"\x12\x34\x08\x03rest".to_vec()),
            ("t10k-labels-idx1-ubyte", labels.clone()),
        ],
    );
    says(&e, &src.join("t10k-images-idx3-ubyte"), "bad IDX magic");
    let (src, e) = case(
        "type",
        &[
            ("t10k-images-idx3-ubyte", vec![0, 0, 0x0D, 1, 0, 0, 0, 0]),
            ("t10k-labels-idx1-ubyte", labels.clone()),
        ],
    );
    says(&e, &src.join("t10k-images-idx3-ubyte"), "element type 0x0d");
    let (src, e) = case(
        "short",
        &[
            ("t10k-images-idx3-ubyte", images[..20].to_vec()),
            ("t10k-labels-idx1-ubyte", labels.clone()),
        ],
    );
    says(
        &e,
        &src.join("t10k-images-idx3-ubyte"),
        "truncated: dimensions [3, 2, 2] need 12 bytes of data, found 4",
    );
    let gz = idx_bytes(&[3, 2, 2], &[1u8; 12], true);
    let (src, e) = case(
        "gz",
        &[
            ("t10k-images-idx3-ubyte.gz", gz[..gz.len() - 9].to_vec()),
            ("t10k-labels-idx1-ubyte", labels.clone()),
        ],
    );
    says(
        &e,
        &src.join("t10k-images-idx3-ubyte.gz"),
        "gzip data is damaged or truncated",
    );
    let (src, e) = case(
        "count",
        &[
            ("t10k-images-idx3-ubyte", images.clone()),
            ("t10k-labels-idx1-ubyte", idx_bytes(&[2], &[0, 1], false)),
        ],
    );
    says(
        &e,
        &src.join("t10k-labels-idx1-ubyte"),
        "2 labels for 3 images",
    );
    let (src, e) = case("alone", &[("train-images-idx3-ubyte", images.clone())]);
    says(
        &e,
        &src.join("train-images-idx3-ubyte"),
        "no matching train-labels",
    );
    let (src, e) = case("empty", &[]);
    says(&e, &src, "no IDX files found");
    let (src, e) = case(
        "zero",
        &[
            ("t10k-images-idx3-ubyte", idx_bytes(&[0, 2, 2], &[], false)),
            ("t10k-labels-idx1-ubyte", idx_bytes(&[0], &[], false)),
        ],
    );
    says(
        &e,
        &src.join("t10k-images-idx3-ubyte"),
        "0 images (empty split)",
    );
}

#[test]
fn folder_bad_sources() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.h5");
    let o = ImportOptions::default();
    let root = dir.path().join("no_train");
    std::fs::create_dir_all(root.join("val/a")).unwrap();
    says(
        &import_folder(std::slice::from_ref(&root), &out, &o).unwrap_err(),
        &root,
        "no train/ directory",
    );
    let root = dir.path().join("stray_val");
    std::fs::create_dir_all(root.join("train/a")).unwrap();
    std::fs::create_dir_all(root.join("val/zebra")).unwrap();
    says(
        &import_folder(std::slice::from_ref(&root), &out, &o).unwrap_err(),
        &root.join("val/zebra"),
        "no train folder",
    );
    // Every image bad: the split ends up empty, which is an error, not an empty data set.
    let root = dir.path().join("all_bad");
    std::fs::create_dir_all(root.join("train/a")).unwrap();
    std::fs::create_dir_all(root.join("val/a")).unwrap();
    std::fs::write(root.join("train/a/x.jpg"), b"\xff\xd8\xff\xe0 nope").unwrap();
    std::fs::write(root.join("val/a/y.png"), b"").unwrap();
    let e = import_folder(
        std::slice::from_ref(&root),
        &out,
        &ImportOptions {
            resolution: Some(8),
            ..o.clone()
        },
    )
    .unwrap_err();
    says(&e, &root, "split has no usable images");
    let e = import_folder(
        &[root],
        &out,
        &ImportOptions {
            resolution: Some(0),
            ..o
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("--resolution"), "{e}");
    assert!(!out.exists());
}
