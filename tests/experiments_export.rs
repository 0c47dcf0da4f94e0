//! `nfbench export`: the TensorBoard event file of a real run is well-framed TFRecord (every length and data CRC
//! checks out), its events decode as `Event` protobufs, and its scalars are the record's values; the CSV files
//! hold the record's rows. (scripts/check-tensorboard.sh reads the same file with TensorBoard's own reader.)

use nfbench::record::export::tensorboard::{masked_crc32c, Event};
use nfbench::record::metrics::read_run;
use prost::Message;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn nfbench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nfbench"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Splits a TFRecord file into its records, checking both CRCs of each.
fn records(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len_bytes = &bytes[at..at + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        let len_crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        assert_eq!(len_crc, masked_crc32c(len_bytes), "length CRC at byte {at}");
        let data = &bytes[at + 12..at + 12 + len];
        let data_crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
        assert_eq!(data_crc, masked_crc32c(data), "data CRC at byte {at}");
        out.push(data.to_vec());
        at += 16 + len;
    }
    out
}

fn train(dir: &Path) {
    nfbench(&[
        "train",
        "--headless",
        "--steps",
        "12",
        "--set",
        "model.name=nf_resnet8_cifar",
        "--set",
        "data.batch_size=16",
        "--set",
        "data.eval_images=64",
        "--set",
        "run.eval_every=6",
        "--set",
        "run.stats_every=4",
        "--set",
        "run.checkpoint_every=12",
        "--run-dir",
        dir.to_str().unwrap(),
    ]);
}

#[test]
fn exported_events_and_csv_hold_the_records_values() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    train(&run_dir);
    let (tb, csv) = (tmp.path().join("tb"), tmp.path().join("csv"));
    let listed = nfbench(&[
        "export",
        run_dir.to_str().unwrap(),
        "--tensorboard",
        tb.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
    ]);
    let event_file = PathBuf::from(listed.lines().next().unwrap());
    assert!(event_file
        .file_name()
        .unwrap()
        .to_string_lossy()
        .contains("tfevents"));
    let events: Vec<Event> = records(&std::fs::read(&event_file).unwrap())
        .iter()
        .map(|r| Event::decode(r.as_slice()).unwrap())
        .collect();
    assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
    let mut by_tag: BTreeMap<String, Vec<(i64, f32)>> = BTreeMap::new();
    for e in &events[1..] {
        let v = &e.summary.as_ref().unwrap().value[0];
        by_tag
            .entry(v.tag.clone())
            .or_default()
            .push((e.step, v.simple_value.unwrap()));
    }

    let run = read_run(&run_dir.join("metrics.h5")).unwrap();
    let loss: Vec<(i64, f32)> = run
        .steps
        .iter()
        .map(|s| (s.step as i64, s.loss as f32))
        .collect();
    assert_eq!(loss.len(), 12);
    assert_eq!(by_tag["train/loss"], loss);
    let lambda: Vec<(i64, f32)> = run
        .steps
        .iter()
        .map(|s| (s.step as i64, s.lambda as f32))
        .collect();
    assert_eq!(by_tag["train/lambda"], lambda);
    let top1: Vec<(i64, f32)> = run
        .evals
        .iter()
        .map(|e| (e.step as i64, e.top1 as f32))
        .collect();
    assert_eq!(top1.len(), 2);
    assert_eq!(by_tag["val/top1"], top1);
    let clipped: Vec<(i64, f32)> = run
        .steps
        .iter()
        .filter(|s| s.clipped_fraction.is_finite())
        .map(|s| (s.step as i64, s.clipped_fraction as f32))
        .collect();
    assert!(!clipped.is_empty());
    assert_eq!(by_tag["train/clipped_fraction"], clipped);
    // Per-layer ratios: one tag per layer under agc/, one point per statistics snapshot.
    let snaps: Vec<_> = run.layers.iter().filter(|l| !l.agc.is_empty()).collect();
    assert_eq!(snaps.len(), 3);
    let layer = &snaps[0].agc[1];
    let got = &by_tag[&format!("agc/max_ratio/{}", layer.name)];
    let want: Vec<(i64, f32)> = snaps
        .iter()
        .map(|s| (s.step as i64, s.agc[1].max_ratio as f32))
        .collect();
    assert_eq!(got, &want);
    let agc_tags = by_tag.keys().filter(|t| t.starts_with("agc/")).count();
    assert_eq!(agc_tags, 2 * snaps[0].agc.len());

    // steps.csv: one row per step, the loss in full precision.
    let steps_csv = std::fs::read_to_string(csv.join("steps.csv")).unwrap();
    let rows: Vec<&str> = steps_csv.lines().skip(1).collect();
    assert_eq!(rows.len(), run.steps.len());
    for (row, s) in rows.iter().zip(&run.steps) {
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells[0], s.step.to_string());
        assert_eq!(cells[3].parse::<f64>().unwrap().to_bits(), s.loss.to_bits());
    }
}
