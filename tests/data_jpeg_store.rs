//! Format version 2 (JPEG bytes): what is written is what `read_into` returns, from any number of threads at once;
//! the file is deterministic; DatasetInfo and the v1 paths tell the storage kinds apart.

use nfbench::data::format::{
    write_jpeg_dataset, JpegAttrs, JpegSplit, SplitSource, Storage, FORMAT_VERSION_JPEG,
};
use nfbench::data::{DatasetInfo, EncodedMeta, EncodedSplit, Loader, MemorySplit, Split};
use std::path::Path;
use std::sync::Arc;

/// Image `i` of a split: a JPEG-looking byte string of varying length whose content names the image.
fn fake_jpeg(split: usize, i: usize) -> Vec<u8> {
    let len = 7 + (i * 37 + split * 11) % 300;
    let mut v = vec![0xFF, 0xD8];
    v.extend((0..len).map(|k| ((k * 31 + i * 7 + split) % 251) as u8));
    v.extend([0xFF, 0xD9]);
    v
}

fn meta(split: usize, i: usize) -> EncodedMeta {
    EncodedMeta {
        label: ((i + split) % 3) as u32,
        height: 10 + i as u32,
        width: 20 + (i as u32 * 3) % 17,
    }
}

fn memory_split(split: usize, n: usize) -> MemorySplit {
    let mut m = MemorySplit::new();
    for i in 0..n {
        m.push(meta(split, i), fake_jpeg(split, i));
    }
    m
}

fn attrs() -> JpegAttrs {
    JpegAttrs {
        class_names: vec!["a".into(), "b".into(), "c".into()],
        class_folders: Some(vec!["n1".into(), "n2".into(), "n3".into()]),
        mean: [0.4, 0.5, 0.6],
        std: [0.2, 0.25, 0.3],
        source: "test".into(),
    }
}

fn write(out: &Path, n_train: usize, n_val: usize) {
    let (train, val) = (memory_split(0, n_train), memory_split(1, n_val));
    write_jpeg_dataset(
        out,
        &attrs(),
        SplitSource::measured(&train).unwrap(),
        SplitSource::measured(&val).unwrap(),
    )
    .unwrap();
}

#[test]
fn read_into_returns_the_bytes_written_with_their_meta() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v2.h5");
    write(&out, 50, 9);
    assert!(!dir.path().join("v2.h5.partial").exists());
    for (s, split, n) in [(0, Split::Train, 50), (1, Split::Val, 9)] {
        let js = JpegSplit::open(&out, split).unwrap();
        assert_eq!(js.len(), n);
        let mut buf = vec![1, 2, 3];
        for i in 0..n {
            js.read_into(i, &mut buf).unwrap();
            assert_eq!(buf, fake_jpeg(s, i), "{split} image {i}");
            assert_eq!(js.meta(i), meta(s, i));
        }
        assert!(js.read_into(n, &mut buf).is_err());
    }
    let info = DatasetInfo::open(&out).unwrap();
    assert_eq!(info.format_version, FORMAT_VERSION_JPEG);
    assert_eq!(info.storage, Storage::Jpeg);
    assert_eq!(
        (info.train_count, info.val_count, info.num_classes),
        (50, 9, 3)
    );
    assert_eq!(info.channels, 3);
    let max_h = (0..50).map(|i| meta(0, i).height).max().unwrap() as usize;
    let max_w = (0..50)
        .map(|i| meta(0, i).width)
        .chain((0..9).map(|i| meta(1, i).width))
        .max()
        .unwrap() as usize;
    assert_eq!((info.height, info.width), (max_h, max_w));
    assert_eq!(info.mean, vec![0.4, 0.5, 0.6]);
}

#[test]
fn four_threads_at_once_read_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v2.h5");
    write(&out, 400, 3);
    let split: Arc<dyn EncodedSplit> = JpegSplit::open_shared(&out, Split::Train).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let split = Arc::clone(&split);
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut bad = Vec::new();
                // Each thread walks the split in its own order, many times over.
                for round in 0..5 {
                    for k in 0..400 {
                        let i = (k * (2 * t + 1) + round * 13) % 400;
                        split.read_into(i, &mut buf).unwrap();
                        if buf != fake_jpeg(0, i) {
                            bad.push(i);
                        }
                    }
                }
                bad
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), Vec::<usize>::new());
    }
}

#[test]
fn the_same_content_gives_a_byte_identical_file() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.h5"), dir.path().join("b.h5"));
    write(&a, 30, 4);
    // HDF5 would stamp object times at one-second resolution: cross a second boundary between the writes.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write(&b, 30, 4);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn the_pixel_paths_refuse_a_v2_file_and_name_its_storage() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v2.h5");
    write(&out, 5, 2);
    assert!(Loader::eval(&out, Split::Val, 2, 16, 0).is_err());
    let file = hdf5::File::open(&out).unwrap();
    let err = nfbench::data::format::open_pixel_images(&file, &out, Split::Val)
        .unwrap_err()
        .to_string();
    assert!(err.contains("format version 2"), "{err}");
}

#[test]
fn damaged_indexes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v2.h5");
    write(&out, 5, 2);
    // Rewrite one split's offsets so that they no longer end at the byte count.
    {
        let f = hdf5::File::open_rw(&out).unwrap();
        let g = f.group("val").unwrap();
        g.unlink("offsets").unwrap();
        g.new_dataset_builder()
            .with_data(&[0u64, 5, 3])
            .create("offsets")
            .unwrap();
    }
    let err = DatasetInfo::open(&out).unwrap_err().to_string();
    assert!(err.contains("/val/offsets"), "{err}");
    let bad_label = dir.path().join("label.h5");
    write(&bad_label, 5, 2);
    {
        let f = hdf5::File::open_rw(&bad_label).unwrap();
        let g = f.group("train").unwrap();
        g.unlink("labels").unwrap();
        g.new_dataset_builder()
            .with_data(&[0u32, 1, 2, 7, 0])
            .create("labels")
            .unwrap();
    }
    let err = JpegSplit::open(&bad_label, Split::Train)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("label 7 at index 3 is out of range 0..3"),
        "{err}"
    );
}
