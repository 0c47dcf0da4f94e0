//! `nfbench data import --format imagenet`: every bad-file kind real ImageNet holds (made in code by
//! tests/jpeg_fixtures) is kept, converted or skipped with its path and reason in the log; --strict names the file;
//! the devkit and Kaggle val layouts give the right labels; mean/std match the stored pixels; a SIGKILLed import
//! resumes to exactly the file an uninterrupted one writes.

mod jpeg_fixtures;

use jpeg_fixtures::{Expect, Fixture};
use nfbench::data::format::JpegSplit;
use nfbench::data::import::{import_imagenet, JpegImportOptions, ValSource, BLOCK_PAUSE_ENV};
use nfbench::data::{inspect, DatasetInfo, EncodedSplit, ImportOptions, Split};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn opts() -> ImportOptions {
    ImportOptions::default()
}

/// The log as path -> (status, reason).
fn read_log(out: &Path) -> HashMap<String, (String, String)> {
    let mut log = PathBuf::from(out.as_os_str().to_owned());
    log.as_mut_os_string().push(".import.tsv");
    let text = std::fs::read_to_string(&log).expect("the import log exists");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("path\tstatus\treason"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.splitn(3, '\t').collect();
            (f[0].to_string(), (f[1].to_string(), f[2].to_string()))
        })
        .collect()
}

fn decode(bytes: &[u8]) -> image::RgbImage {
    image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)
        .expect("stored bytes decode as JPEG")
        .into_rgb8()
}

/// A tree with every fixture in class n01 (train), plain images in n02, and val class folders.
fn bad_kinds_tree(root: &Path) -> Vec<Fixture> {
    let fixtures = jpeg_fixtures::every_kind();
    for f in &fixtures {
        jpeg_fixtures::write(&root.join("train/n01").join(f.name), &f.bytes);
    }
    jpeg_fixtures::train_tree(root, &["n02"], 3, (40, 30));
    for wnid in ["n01", "n02"] {
        for i in 0..2 {
            let p = root.join("val").join(wnid).join(format!("v{i}.JPEG"));
            jpeg_fixtures::write(&p, &jpeg_fixtures::baseline(32, 32, 700 + i));
        }
    }
    fixtures
}

#[test]
fn every_bad_file_kind_is_kept_converted_or_skipped_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    let fixtures = bad_kinds_tree(&root);
    let out = dir.path().join("in.h5");
    let s = import_imagenet(
        std::slice::from_ref(&root),
        &out,
        &opts(),
        &JpegImportOptions::default(),
    )
    .unwrap();
    let log = read_log(&out);
    let count = |e: Expect| fixtures.iter().filter(|f| f.expect == e).count();
    assert_eq!(s.kept, count(Expect::Kept) + 3 + 4);
    assert_eq!(s.converted, count(Expect::Converted));
    assert_eq!(s.skipped, count(Expect::Skipped));
    assert_eq!(s.val_source, ValSource::ClassFolders);
    assert_eq!(log.len(), fixtures.len() + 3 + 4, "one log line per file");
    let train = JpegSplit::open(&out, Split::Train).unwrap();
    // Stored train images in sorted file order: the n01 fixtures that were not skipped, then n02.
    let mut names: Vec<&Fixture> = fixtures.iter().collect();
    names.sort_by_key(|f| f.name);
    let stored: Vec<&Fixture> = names
        .into_iter()
        .filter(|f| f.expect != Expect::Skipped)
        .collect();
    assert_eq!(train.len(), stored.len() + 3);
    let mut buf = Vec::new();
    for (i, f) in stored.iter().enumerate() {
        let (status, reason) = &log[&format!("train/n01/{}", f.name)];
        let want = match f.expect {
            Expect::Kept => "kept",
            Expect::Converted => "converted",
            Expect::Skipped => "skipped",
        };
        assert_eq!(status, want, "{}: {reason}", f.name);
        assert!(
            reason.contains(f.reason),
            "{}: reason {reason:?} lacks {:?}",
            f.name,
            f.reason
        );
        train.read_into(i, &mut buf).unwrap();
        let meta = train.meta(i);
        assert_eq!(meta.label, 0);
        let img = decode(&buf);
        assert_eq!(
            (img.width(), img.height()),
            (meta.width, meta.height),
            "{}",
            f.name
        );
        if f.expect == Expect::Kept {
            assert_eq!(buf, f.bytes, "{} is kept byte for byte", f.name);
        }
        if matches!(f.name, "cmyk.JPEG" | "ycck.JPEG") {
            // Magenta + yellow ink, no cyan, no black: red.
            let [r, g, b] = img.get_pixel(meta.width / 2, meta.height / 2).0;
            assert!(
                r > 200 && g < 70 && b < 70,
                "{}: centre pixel {:?} is not red",
                f.name,
                (r, g, b)
            );
        }
    }
    let large = stored.iter().position(|f| f.name == "large.JPEG").unwrap();
    assert_eq!(
        (train.meta(large).width, train.meta(large).height),
        (512, 384)
    );
    let wide = stored.iter().position(|f| f.name == "wide.JPEG").unwrap();
    assert_eq!((train.meta(wide).width, train.meta(wide).height), (500, 33));
    for f in fixtures.iter().filter(|f| f.expect == Expect::Skipped) {
        let (status, reason) = &log[&format!("train/n01/{}", f.name)];
        assert_eq!(status, "skipped", "{}", f.name);
        assert!(
            reason.contains(f.reason),
            "{}: reason {reason:?} lacks {:?}",
            f.name,
            f.reason
        );
        assert!(
            s.first_skipped.iter().any(|(p, _)| p.ends_with(f.name)) || s.first_skipped.len() == 5,
            "{} among the summary's skipped files",
            f.name
        );
    }
    // The staging files are gone; the log stays.
    assert!(!dir.path().join("in.h5.staging").exists());
    assert!(!dir.path().join("in.h5.journal").exists());
}

#[test]
fn mean_and_std_are_those_of_the_stored_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    jpeg_fixtures::train_tree(&root, &["a", "b"], 4, (48, 36));
    for (i, wnid) in ["a", "b"].iter().enumerate() {
        let p = root.join("val").join(wnid).join("x.JPEG");
        jpeg_fixtures::write(&p, &jpeg_fixtures::baseline(20, 20, i as u32));
    }
    jpeg_fixtures::write(
        &root.join("train/a/zz_grey.JPEG"),
        &jpeg_fixtures::grey(30, 30),
    );
    let out = dir.path().join("m.h5");
    import_imagenet(&[root], &out, &opts(), &JpegImportOptions::default()).unwrap();
    let info = DatasetInfo::open(&out).unwrap();
    let train = JpegSplit::open(&out, Split::Train).unwrap();
    let (mut sum, mut sq, mut n) = ([0f64; 3], [0f64; 3], 0f64);
    let mut buf = Vec::new();
    for i in 0..train.len() {
        train.read_into(i, &mut buf).unwrap();
        for px in decode(&buf).pixels() {
            for c in 0..3 {
                let x = px.0[c] as f64 / 255.0;
                sum[c] += x;
                sq[c] += x * x;
            }
            n += 1.0;
        }
    }
    for c in 0..3 {
        let mean = sum[c] / n;
        let std = (sq[c] / n - mean * mean).sqrt();
        assert!(
            (f64::from(info.mean[c]) - mean).abs() < 1e-6,
            "channel {c} mean"
        );
        assert!(
            (f64::from(info.std[c]) - std).abs() < 1e-6,
            "channel {c} std"
        );
    }
}

/// Three classes whose devkit order (n03, n01, n02) differs from the sorted folder order; val images flat.
fn flat_val_tree(root: &Path) -> (Vec<PathBuf>, Vec<u32>) {
    jpeg_fixtures::train_tree(root, &["n01", "n02", "n03"], 2, (24, 24));
    let val = jpeg_fixtures::flat_val(root, 7, (20, 16));
    // Sorted-order labels the val files must get.
    let labels = vec![2, 0, 1, 1, 2, 0, 0];
    (val, labels)
}

fn assert_val(out: &Path, val: &[PathBuf], labels: &[u32]) {
    let split = JpegSplit::open(out, Split::Val).unwrap();
    assert_eq!(split.labels(), labels);
    let mut buf = Vec::new();
    for (i, p) in val.iter().enumerate() {
        split.read_into(i, &mut buf).unwrap();
        assert_eq!(
            buf,
            std::fs::read(p).unwrap(),
            "val image {i} is {}",
            p.display()
        );
    }
}

#[test]
fn the_devkit_ground_truth_with_its_synset_order_labels_a_flat_val() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    let (val, labels) = flat_val_tree(&root);
    let devkit_order = ["n03", "n01", "n02"];
    let ids: Vec<String> = labels
        .iter()
        .map(|&l| {
            let wnid = ["n01", "n02", "n03"][l as usize];
            (devkit_order.iter().position(|w| *w == wnid).unwrap() + 1).to_string()
        })
        .collect();
    let gt = root.join("ILSVRC2012_validation_ground_truth.txt");
    std::fs::write(&gt, ids.join("\n") + "\n").unwrap();
    let synsets = dir.path().join("devkit_synsets.txt");
    std::fs::write(&synsets, devkit_order.join("\n") + "\n").unwrap();
    let out = dir.path().join("d.h5");
    let missing = import_imagenet(
        std::slice::from_ref(&root),
        &out,
        &opts(),
        &JpegImportOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(missing.contains("--val-synsets"), "{missing}");
    let jpeg = JpegImportOptions {
        val_synsets: Some(synsets),
        ..Default::default()
    };
    let s = import_imagenet(&[root], &out, &opts(), &jpeg).unwrap();
    assert!(matches!(s.val_source, ValSource::Devkit { .. }));
    assert_eq!(s.val_per_class, vec![3, 2, 2]);
    assert_val(&out, &val, &labels);
}

#[test]
fn kaggles_solution_labels_a_flat_val_and_names_the_classes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    let (val, labels) = flat_val_tree(&root);
    let mut rows: Vec<String> = labels
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let wnid = ["n01", "n02", "n03"][l as usize];
            format!(
                "ILSVRC2012_val_{:08},{wnid} 10 20 30 40 {wnid} 1 2 3 4",
                i + 1
            )
        })
        .collect();
    rows.reverse(); // row order must not matter
    std::fs::write(
        root.join("LOC_val_solution.csv"),
        format!("ImageId,PredictionString\n{}\n", rows.join("\n")),
    )
    .unwrap();
    std::fs::write(
        root.join("LOC_synset_mapping.txt"),
        "n01 tench, Tinca tinca\nn02 goldfish, Carassius auratus\nn03 great white shark\n",
    )
    .unwrap();
    let out = dir.path().join("k.h5");
    let s = import_imagenet(&[root], &out, &opts(), &JpegImportOptions::default()).unwrap();
    assert!(matches!(s.val_source, ValSource::Kaggle { .. }));
    assert_val(&out, &val, &labels);
    let info = DatasetInfo::open(&out).unwrap();
    assert_eq!(
        info.class_names,
        vec![
            "tench, Tinca tinca",
            "goldfish, Carassius auratus",
            "great white shark"
        ]
    );
    let folders: Vec<String> = hdf5::File::open(&out)
        .unwrap()
        .attr("class_folders")
        .unwrap()
        .read_raw::<hdf5::types::VarLenUnicode>()
        .unwrap()
        .iter()
        .map(|s| s.as_str().to_string())
        .collect();
    assert_eq!(folders, vec!["n01", "n02", "n03"]);
}

#[test]
fn a_val_file_missing_from_the_solution_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    flat_val_tree(&root);
    std::fs::write(
        root.join("LOC_val_solution.csv"),
        "ImageId,PredictionString\nILSVRC2012_val_00000001,n01 1 2 3 4\n",
    )
    .unwrap();
    let err = import_imagenet(
        &[root],
        &dir.path().join("x.h5"),
        &opts(),
        &JpegImportOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("ILSVRC2012_val_00000002.JPEG"), "{err}");
}

fn nfbench() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nfbench"));
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

#[test]
fn strict_fails_on_the_first_skip_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    jpeg_fixtures::train_tree(&root, &["n01"], 2, (16, 16));
    jpeg_fixtures::write(
        &root.join("train/n01/cut.JPEG"),
        &jpeg_fixtures::truncated(32, 32, 0.5),
    );
    let out = dir.path().join("s.h5");
    let run = nfbench()
        .args([
            "data", "import", "--format", "imagenet", "--strict", "--out",
        ])
        .arg(&out)
        .arg(&root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        err.contains("cut.JPEG") && err.contains("truncated") && err.contains("--strict"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn inspect_reports_a_jpeg_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    jpeg_fixtures::train_tree(&root, &["n01", "n02"], 3, (40, 30));
    jpeg_fixtures::write(
        &root.join("train/n02/wide.JPEG"),
        &jpeg_fixtures::baseline(500, 33, 4),
    );
    for wnid in ["n01", "n02"] {
        jpeg_fixtures::write(
            &root.join("val").join(wnid).join("v.JPEG"),
            &jpeg_fixtures::baseline(24, 20, 1),
        );
    }
    let out = dir.path().join("i.h5");
    import_imagenet(&[root], &out, &opts(), &JpegImportOptions::default()).unwrap();
    let report = inspect(&out).unwrap();
    assert!(report.ok(), "{report}");
    let text = report.to_string();
    for want in [
        "format version 2",
        "storage jpeg",
        "train 7, val 2",
        "20..33 x 24..500",
        "sizes (H x W)",
    ] {
        assert!(text.contains(want), "inspect lacks {want:?}:\n{text}");
    }
    let run = nfbench()
        .args(["data", "inspect"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success());
    assert!(String::from_utf8_lossy(&run.stdout).contains("storage jpeg"));
}

fn import_cmd(root: &Path, out: &Path) -> Command {
    let mut c = nfbench();
    c.args(["data", "import", "--format", "imagenet", "--out"])
        .arg(out)
        .arg(root);
    c
}

fn log_lines(out: &Path) -> usize {
    let mut log = out.as_os_str().to_owned();
    log.push(".import.tsv");
    std::fs::read_to_string(PathBuf::from(log)).map_or(0, |t| t.lines().count().saturating_sub(1))
}

#[test]
fn an_import_killed_at_60_percent_resumes_to_the_identical_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    let n = 320;
    jpeg_fixtures::train_tree(&root, &["n01", "n02", "n03", "n04"], n / 4 - 4, (24, 20));
    for wnid in ["n01", "n02", "n03", "n04"] {
        for i in 0..4 {
            let p = root.join("val").join(wnid).join(format!("v{i}.JPEG"));
            jpeg_fixtures::write(&p, &jpeg_fixtures::baseline(20, 20, 900 + i));
        }
    }
    jpeg_fixtures::write(
        &root.join("train/n02/cmyk.JPEG"),
        &jpeg_fixtures::cmyk(30, 20, [9, 80, 0, 30]),
    );
    jpeg_fixtures::write(
        &root.join("train/n03/bad.JPEG"),
        &jpeg_fixtures::truncated(30, 30, 0.4),
    );
    let out = dir.path().join("out.h5");
    // The uninterrupted import, moved aside.
    let full = import_cmd(&root, &out).output().unwrap();
    assert!(
        full.status.success(),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
    let reference = std::fs::read(&out).unwrap();
    let reference_log = read_log(&out);
    std::fs::remove_file(&out).unwrap();
    std::fs::remove_file(dir.path().join("out.h5.import.tsv")).unwrap();
    // Killed once 60% of the files are staged (the pause holds each block between staging and its journal commit).
    let mut child = import_cmd(&root, &out)
        .env(BLOCK_PAUSE_ENV, "300")
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while log_lines(&out) < n * 6 / 10 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the import ended before 60%"
        );
        assert!(started.elapsed().as_secs() < 120, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.exists(), "no output file before the import completes");
    assert!(dir.path().join("out.h5.journal").exists());
    let again = import_cmd(&root, &out).output().unwrap();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(stdout.contains("resumed after"), "{stdout}");
    assert!(
        std::fs::read(&out).unwrap() == reference,
        "the resumed file differs from the uninterrupted one"
    );
    assert_eq!(read_log(&out), reference_log);
    assert!(!dir.path().join("out.h5.staging").exists());
}
