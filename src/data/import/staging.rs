//! The resumable part of a JPEG import: accepted bytes are appended to `<out>.staging`, each file's log line to
//! `<out>.import.tsv`, and after both are fsync'd, one record per file to the journal `<out>.journal`. A record
//! (its checksum intact) is the commit point: on a restart, staging and log are truncated to where the last
//! intact record says they ended, and the import goes on with the next file. The journal's header holds a
//! fingerprint of the import (file list, labels, settings): a different import starts afresh.

use crate::data::DataError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"NFBJRN01";
const HEADER_BYTES: usize = 24;
const RECORD_BYTES: usize = 40;

/// What the journal knows about one file, in source order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    pub status: Status,
    pub height: u32,
    pub width: u32,
    /// Staging length after this file's bytes.
    pub bytes_end: u64,
    /// Log length after this file's line.
    pub log_end: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Kept = 0,
    Converted = 1,
    Skipped = 2,
}

impl Status {
    fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(Status::Kept),
            1 => Some(Status::Converted),
            2 => Some(Status::Skipped),
            _ => None,
        }
    }
}

impl Record {
    fn encode(&self) -> [u8; RECORD_BYTES] {
        let mut b = [0u8; RECORD_BYTES];
        b[0..4].copy_from_slice(&(self.status as u32).to_le_bytes());
        b[4..8].copy_from_slice(&self.height.to_le_bytes());
        b[8..12].copy_from_slice(&self.width.to_le_bytes());
        b[16..24].copy_from_slice(&self.bytes_end.to_le_bytes());
        b[24..32].copy_from_slice(&self.log_end.to_le_bytes());
        let sum = fnv1a(&b[..32]);
        b[32..40].copy_from_slice(&sum.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        if u64_at(32) != fnv1a(&b[..32]) {
            return None;
        }
        Some(Self {
            status: Status::from_u32(u32_at(0))?,
            height: u32_at(4),
            width: u32_at(8),
            bytes_end: u64_at(16),
            log_end: u64_at(24),
        })
    }
}

/// FNV-1a, 64 bit: a stable hash for fingerprints and record checksums (no dependency, same on every build).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// An incremental FNV-1a over several fields.
#[derive(Debug, Clone)]
pub(crate) struct Fingerprint(u64);

impl Fingerprint {
    pub fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    pub fn add(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes.iter().chain(&[0xFFu8]) {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }

    pub fn value(&self) -> u64 {
        self.0
    }
}

/// One accepted or skipped file, ready to commit.
pub(crate) struct Entry<'a> {
    pub status: Status,
    pub height: u32,
    pub width: u32,
    pub bytes: &'a [u8],
    pub log_line: &'a str,
}

/// The staging files of one import, open for appending.
pub(crate) struct Staging {
    staging_path: PathBuf,
    journal_path: PathBuf,
    log_path: PathBuf,
    staging: File,
    journal: File,
    log: File,
    records: Vec<Record>,
    staged: u64,
    logged: u64,
}

impl Staging {
    /// Open (resume) or create the staging files for `out`; `log_header` starts a fresh log.
    pub fn open(out: &Path, fingerprint: u64, log_header: &str) -> Result<Self, DataError> {
        let with = |ext: &str| {
            let mut p = out.as_os_str().to_owned();
            p.push(ext);
            PathBuf::from(p)
        };
        let (staging_path, journal_path, log_path) =
            (with(".staging"), with(".journal"), with(".import.tsv"));
        if let Some(s) = Self::resume(&staging_path, &journal_path, &log_path, fingerprint)? {
            return Ok(s);
        }
        Self::fresh(
            staging_path,
            journal_path,
            log_path,
            fingerprint,
            log_header,
        )
    }

    fn fresh(
        staging_path: PathBuf,
        journal_path: PathBuf,
        log_path: PathBuf,
        fingerprint: u64,
        log_header: &str,
    ) -> Result<Self, DataError> {
        let create = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(p)
                .map_err(|e| DataError::io(p, "cannot create", e))
        };
        let (staging, mut journal, mut log) = (
            create(&staging_path)?,
            create(&journal_path)?,
            create(&log_path)?,
        );
        log.write_all(log_header.as_bytes())
            .and_then(|_| log.sync_data())
            .map_err(|e| DataError::io(&log_path, "cannot write", e))?;
        let mut header = [0u8; HEADER_BYTES];
        header[..8].copy_from_slice(MAGIC);
        header[8..16].copy_from_slice(&fingerprint.to_le_bytes());
        header[16..24].copy_from_slice(&(log_header.len() as u64).to_le_bytes());
        journal
            .write_all(&header)
            .and_then(|_| journal.sync_data())
            .map_err(|e| DataError::io(&journal_path, "cannot write", e))?;
        Ok(Self {
            staging_path,
            journal_path,
            log_path,
            staging,
            journal,
            log,
            records: Vec::new(),
            staged: 0,
            logged: log_header.len() as u64,
        })
    }

    /// The journal's intact records when it belongs to this import and the staging files hold what it says;
    /// the files truncated to that point. None: start afresh.
    fn resume(
        staging_path: &Path,
        journal_path: &Path,
        log_path: &Path,
        fingerprint: u64,
    ) -> Result<Option<Self>, DataError> {
        let Ok(mut journal) = OpenOptions::new().read(true).write(true).open(journal_path) else {
            return Ok(None);
        };
        let mut raw = Vec::new();
        journal
            .read_to_end(&mut raw)
            .map_err(|e| DataError::io(journal_path, "cannot read", e))?;
        if raw.len() < HEADER_BYTES || &raw[..8] != MAGIC || raw[8..16] != fingerprint.to_le_bytes()
        {
            return Ok(None);
        }
        let log_start = u64::from_le_bytes(raw[16..24].try_into().unwrap_or([0; 8]));
        let records: Vec<Record> = raw[HEADER_BYTES..]
            .chunks_exact(RECORD_BYTES)
            .map_while(Record::decode)
            .collect();
        let (staged, logged) = records
            .last()
            .map_or((0, log_start), |r| (r.bytes_end, r.log_end));
        let open = |p: &Path| OpenOptions::new().read(true).write(true).open(p);
        let (Ok(staging), Ok(log)) = (open(staging_path), open(log_path)) else {
            return Ok(None);
        };
        let len = |f: &File, p: &Path| {
            f.metadata()
                .map(|m| m.len())
                .map_err(|e| DataError::io(p, "cannot read metadata", e))
        };
        if len(&staging, staging_path)? < staged || len(&log, log_path)? < logged {
            return Ok(None); // the journal claims more than the files hold: not ours to trust
        }
        let journal_len = (HEADER_BYTES + records.len() * RECORD_BYTES) as u64;
        for (f, p, l) in [
            (&staging, staging_path, staged),
            (&log, log_path, logged),
            (&journal, journal_path, journal_len),
        ] {
            f.set_len(l)
                .map_err(|e| DataError::io(p, "cannot truncate to the last committed image", e))?;
        }
        journal
            .seek(SeekFrom::End(0))
            .map_err(|e| DataError::io(journal_path, "cannot seek", e))?;
        let mut s = Self {
            staging_path: staging_path.to_path_buf(),
            journal_path: journal_path.to_path_buf(),
            log_path: log_path.to_path_buf(),
            staging,
            journal,
            log,
            records,
            staged,
            logged,
        };
        s.seek_ends()?;
        Ok(Some(s))
    }

    fn seek_ends(&mut self) -> Result<(), DataError> {
        self.staging
            .seek(SeekFrom::Start(self.staged))
            .map_err(|e| DataError::io(&self.staging_path, "cannot seek", e))?;
        self.log
            .seek(SeekFrom::Start(self.logged))
            .map_err(|e| DataError::io(&self.log_path, "cannot seek", e))?;
        Ok(())
    }

    /// Files already committed (a resumed import continues with the next).
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    pub fn staging_path(&self) -> &Path {
        &self.staging_path
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Append a block of files and commit it: bytes and log lines first (fsync'd), then the journal records.
    /// `pause` runs between the two (a test hook: a kill there leaves uncommitted staged bytes behind).
    pub fn commit(&mut self, entries: &[Entry<'_>], pause: impl FnOnce()) -> Result<(), DataError> {
        let mut records = Vec::with_capacity(entries.len());
        let mut journal_bytes = Vec::with_capacity(entries.len() * RECORD_BYTES);
        let (mut staged, mut logged) = (self.staged, self.logged);
        for e in entries {
            self.staging
                .write_all(e.bytes)
                .map_err(|err| DataError::io(&self.staging_path, "cannot write", err))?;
            self.log
                .write_all(e.log_line.as_bytes())
                .map_err(|err| DataError::io(&self.log_path, "cannot write", err))?;
            staged += e.bytes.len() as u64;
            logged += e.log_line.len() as u64;
            let r = Record {
                status: e.status,
                height: e.height,
                width: e.width,
                bytes_end: staged,
                log_end: logged,
            };
            journal_bytes.extend_from_slice(&r.encode());
            records.push(r);
        }
        self.staging
            .sync_data()
            .map_err(|e| DataError::io(&self.staging_path, "cannot sync", e))?;
        self.log
            .sync_data()
            .map_err(|e| DataError::io(&self.log_path, "cannot sync", e))?;
        pause();
        self.journal
            .write_all(&journal_bytes)
            .and_then(|_| self.journal.sync_data())
            .map_err(|e| DataError::io(&self.journal_path, "cannot write", e))?;
        self.records.extend(records);
        self.staged = staged;
        self.logged = logged;
        Ok(())
    }

    /// A reader of the staged bytes (for building the final file).
    pub fn staged_file(&self) -> Result<File, DataError> {
        File::open(&self.staging_path)
            .map_err(|e| DataError::io(&self.staging_path, "cannot open", e))
    }

    /// The import is complete and its file in place: remove the staging files (the log stays).
    pub fn remove(self) -> Result<(), DataError> {
        drop((self.staging, self.journal, self.log));
        for p in [&self.staging_path, &self.journal_path] {
            std::fs::remove_file(p).map_err(|e| DataError::io(p, "cannot remove", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(bytes: &'a [u8], line: &'a str) -> Entry<'a> {
        Entry {
            status: Status::Kept,
            height: 2,
            width: 3,
            bytes,
            log_line: line,
        }
    }

    #[test]
    fn a_restart_truncates_to_the_last_committed_block() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.h5");
        let mut s = Staging::open(&out, 7, "h\n").unwrap();
        s.commit(&[entry(b"abc", "a\n"), entry(b"de", "b\n")], || {})
            .unwrap();
        // Staged but not journaled: as if killed between the fsyncs and the journal write.
        s.staging.write_all(b"zzz").unwrap();
        s.log.write_all(b"c\n").unwrap();
        drop(s);
        let s = Staging::open(&out, 7, "h\n").unwrap();
        assert_eq!(s.records().len(), 2);
        assert_eq!(
            std::fs::read(dir.path().join("x.h5.staging")).unwrap(),
            b"abcde"
        );
        assert_eq!(
            std::fs::read(dir.path().join("x.h5.import.tsv")).unwrap(),
            b"h\na\nb\n"
        );
        drop(s);
        // A torn last record is dropped; another fingerprint starts afresh.
        let j = dir.path().join("x.h5.journal");
        let len = std::fs::metadata(&j).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&j)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        assert_eq!(Staging::open(&out, 7, "h\n").unwrap().records().len(), 1);
        assert_eq!(Staging::open(&out, 8, "h\n").unwrap().records().len(), 0);
        assert_eq!(std::fs::read(dir.path().join("x.h5.staging")).unwrap(), b"");
    }
}
