//! TensorBoard event files: TFRecord records of `tensorflow.Event` protobufs holding scalar summaries.
//!
//! The protobuf messages are derived with `prost` from the fields of TensorFlow's `event.proto` and
//! `summary.proto` that scalars use (a oneof member is an optional field on the wire, so `Option` fields give the
//! same bytes). The TFRecord framing (length, masked CRC32C of the length, data, masked CRC32C of the data) is
//! written here by hand: it is a dozen lines over the `crc32c` crate, and the crates that do it (`tfrecord`) bring
//! TensorFlow's whole generated protobuf tree and a build step with them.

use super::{scalars, Scalar};
use crate::record::metrics::RecordedRun;
use crate::record::{RecordError, Result};
use prost::Message;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `tensorflow.Event`: the fields a scalar event file uses.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// The first record of every file: `brain.Event:2`.
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value` with a `simple_value` (a float32 scalar).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

/// The CRC TFRecord stores: CRC32C rotated right by 15 bits plus a constant (so a CRC of data holding CRCs stays
/// well distributed).
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: u64 length (little endian), its masked CRC, the data, the data's masked CRC.
pub fn write_record(out: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    out.write_all(&len)?;
    out.write_all(&masked_crc32c(&len).to_le_bytes())?;
    out.write_all(data)?;
    out.write_all(&masked_crc32c(data).to_le_bytes())
}

/// Writes `events.out.tfevents.<created>.nfbench` into `dir`: the version record, then one event per scalar
/// point. Returns the file's path.
pub fn write_events(run: &RecordedRun, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| RecordError::io(dir, e))?;
    let start = run.step_times.first().copied().unwrap_or(0.0);
    let path = dir.join(format!("events.out.tfevents.{}.nfbench", start as u64));
    let file = std::fs::File::create(&path).map_err(|e| RecordError::io(&path, e))?;
    let mut out = std::io::BufWriter::new(file);
    let io = |e| RecordError::io(&path, e);
    let version = Event {
        wall_time: start,
        step: 0,
        file_version: Some("brain.Event:2".into()),
        summary: None,
    };
    write_record(&mut out, &version.encode_to_vec()).map_err(io)?;
    for s in scalars(run) {
        write_record(&mut out, &scalar_event(&s).encode_to_vec()).map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(path)
}

fn scalar_event(s: &Scalar) -> Event {
    Event {
        wall_time: s.wall_time,
        step: s.step as i64,
        file_version: None,
        summary: Some(Summary {
            value: vec![SummaryValue {
                tag: s.tag.clone(),
                simple_value: Some(s.value as f32),
            }],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_and_its_mask_match_the_published_values() {
        // RFC 3720's check value for "123456789", and TensorFlow's masking of it (crc32c.h: Mask).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        // ((crc >> 15) | (crc << 17)) + 0xa282ead8, mod 2^32, computed by hand.
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn a_record_is_framed_length_crc_data_crc() {
        let mut buf = Vec::new();
        write_record(&mut buf, b"abc").unwrap();
        assert_eq!(buf.len(), 8 + 4 + 3 + 4);
        assert_eq!(&buf[..8], &3u64.to_le_bytes());
        assert_eq!(
            &buf[8..12],
            &masked_crc32c(&3u64.to_le_bytes()).to_le_bytes()
        );
        assert_eq!(&buf[12..15], b"abc");
        assert_eq!(&buf[15..], &masked_crc32c(b"abc").to_le_bytes());
    }

    #[test]
    fn a_scalar_event_has_the_protobuf_bytes_tensorflow_writes() {
        let e = scalar_event(&Scalar {
            tag: "a".into(),
            step: 3,
            wall_time: 0.0,
            value: 1.0,
        });
        // step (field 2, varint 3); summary (field 5, len 10): value (field 1, len 8): tag "a", simple_value 1.0f.
        let want = [
            0x10, 3, 0x2a, 10, 0x0a, 8, 0x0a, 1, b'a', 0x15, 0, 0, 0x80, 0x3f,
        ];
        assert_eq!(e.encode_to_vec(), want);
    }
}
