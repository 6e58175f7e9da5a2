//! The redo log beside the metadata database (`meta.redo`).
//!
//! A write transaction's changes are appended here as one record, and the
//! record's fdatasync is what makes the commit durable; redb itself commits
//! those transactions without an fsync and is made durable only now and
//! then, at a checkpoint, which also records the last record it covers.
//! Opening replays the records after that one. A push thereby costs one
//! small sequential append instead of redb writing every page the commit
//! dirtied.
//!
//! A record is `len: u32 LE, seq: u64 LE, check: 8 bytes, ops`, where
//! `check` is the start of the blake3 of `len, seq, ops`. Sequence numbers
//! run on without gaps; reading stops at the first record that is short,
//! fails its check or breaks the sequence, which is where a crash cut the
//! log (nothing past the last fdatasync was acknowledged).
//!
//! `ops` is a list of `1, table, key len u32, key, value len u32, value`
//! (insert) and `2, table, key len u32, key` (remove).

use std::fs::File;
use std::io::{self, BufReader};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::verify::read_full;

const HEADER: usize = 4 + 8 + 8;

/// A record longer than this is damage, not data (transactions bigger than
/// `kv`'s logging limit commit to redb directly).
const MAX_RECORD: usize = 64 << 20;

const INSERT: u8 = 1;
const REMOVE: u8 = 2;

/// One change in a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Op<'a> {
    Insert(u8, &'a [u8], &'a [u8]),
    Remove(u8, &'a [u8]),
}

/// Append an insert to `ops`.
pub fn push_insert(ops: &mut Vec<u8>, table: u8, key: &[u8], value: &[u8]) {
    ops.reserve(10 + key.len() + value.len());
    ops.extend_from_slice(&[INSERT, table]);
    push_bytes(ops, key);
    push_bytes(ops, value);
}

/// Append a remove to `ops`.
pub fn push_remove(ops: &mut Vec<u8>, table: u8, key: &[u8]) {
    ops.extend_from_slice(&[REMOVE, table]);
    push_bytes(ops, key);
}

fn push_bytes(ops: &mut Vec<u8>, b: &[u8]) {
    ops.extend_from_slice(&(b.len() as u32).to_le_bytes());
    ops.extend_from_slice(b);
}

/// The changes in `ops`, in order; `None` if it is malformed.
pub fn parse(mut ops: &[u8]) -> Option<Vec<Op<'_>>> {
    fn take<'a>(ops: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if ops.len() < n {
            return None;
        }
        let (head, rest) = ops.split_at(n);
        *ops = rest;
        Some(head)
    }
    fn bytes<'a>(ops: &mut &'a [u8]) -> Option<&'a [u8]> {
        let n = u32::from_le_bytes(take(ops, 4)?.try_into().ok()?) as usize;
        take(ops, n)
    }
    let mut out = Vec::new();
    while !ops.is_empty() {
        let head = take(&mut ops, 2)?;
        let (kind, table) = (head[0], head[1]);
        let key = bytes(&mut ops)?;
        out.push(match kind {
            INSERT => Op::Insert(table, key, bytes(&mut ops)?),
            REMOVE => Op::Remove(table, key),
            _ => return None,
        });
    }
    Some(out)
}

fn check(len: u32, seq: u64, ops: &[u8]) -> [u8; 8] {
    let mut h = blake3::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&seq.to_le_bytes());
    h.update(ops);
    let mut c = [0; 8];
    c.copy_from_slice(&h.finalize().as_bytes()[..8]);
    c
}

/// What `Log::recover` hands each record to: its sequence number and ops.
pub type Apply<'a> = dyn FnMut(u64, &[u8]) -> Result<(), String> + 'a;

/// The log file and where the next record goes.
pub struct Log {
    file: File,
    /// Bytes of whole records from the start of the file.
    end: u64,
    /// Sequence number of the last record (or of the checkpoint, if none).
    seq: u64,
}

impl Log {
    /// Open (or create) the log; nothing is read until `recover`.
    pub fn open(path: &Path) -> io::Result<Log> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // The file's name must outlast a power cut as its records do.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(Log {
            file,
            end: 0,
            seq: 0,
        })
    }

    /// A second handle on the file, for fdatasync without the log's lock.
    pub fn sync_handle(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// fdatasync the log.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn end(&self) -> u64 {
        self.end
    }

    /// Read the log from the start: records up to `covered` are skipped
    /// (a checkpoint holds them), each following one is handed to `apply`
    /// in order. Afterwards the log appends after the last whole record.
    /// Returns how many records were applied.
    pub fn recover(&mut self, covered: u64, apply: &mut Apply<'_>) -> Result<u64, String> {
        let mut r = BufReader::with_capacity(1 << 16, &self.file);
        let (mut at, mut seq, mut applied) = (0u64, covered, 0);
        let mut head = [0u8; HEADER];
        let mut ops = Vec::new();
        loop {
            if read_full(&mut r, &mut head).map_err(|e| e.to_string())? < HEADER {
                break;
            }
            let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
            let rec_seq = u64::from_le_bytes(head[4..12].try_into().expect("8 bytes"));
            if len as usize > MAX_RECORD || (rec_seq > covered && rec_seq != seq + 1) {
                break;
            }
            ops.resize(len as usize, 0);
            if read_full(&mut r, &mut ops).map_err(|e| e.to_string())? < ops.len()
                || check(len, rec_seq, &ops) != head[12..]
            {
                break;
            }
            if rec_seq > covered {
                apply(rec_seq, &ops)?;
                seq = rec_seq;
                applied += 1;
            }
            at += (HEADER + ops.len()) as u64;
        }
        self.end = at;
        self.seq = seq;
        Ok(applied)
    }

    /// Write `ops` as the next record (no fdatasync). On failure nothing
    /// counts as written: the next record goes where this one began.
    pub fn append(&mut self, ops: &[u8]) -> io::Result<u64> {
        let len = u32::try_from(ops.len())
            .ok()
            .filter(|&l| l as usize <= MAX_RECORD)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "record too large"))?;
        let seq = self.seq + 1;
        let mut rec = Vec::with_capacity(HEADER + ops.len());
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(&seq.to_le_bytes());
        rec.extend_from_slice(&check(len, seq, ops));
        rec.extend_from_slice(ops);
        self.file.write_all_at(&rec, self.end)?;
        self.end += rec.len() as u64;
        self.seq = seq;
        Ok(seq)
    }

    /// Drop every record after `end` bytes, whose sequence numbers are
    /// given back: records that never became durable.
    pub fn cut(&mut self, end: u64, seq: u64) -> io::Result<()> {
        self.end = end;
        self.seq = seq;
        self.file.set_len(end)
    }

    /// Empty the log after a checkpoint covered all of it; sequence
    /// numbers go on.
    pub fn reset(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.end = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log's path in a scratch directory (removed when the guard drops).
    fn scratch() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redo");
        (dir, path)
    }

    fn record(i: u8) -> Vec<u8> {
        let mut ops = Vec::new();
        push_insert(&mut ops, 3, &[i; 3], &vec![i; 100 * i as usize]);
        push_remove(&mut ops, 4, &[i]);
        ops
    }

    fn recovered(path: &Path, covered: u64) -> (Vec<(u64, Vec<u8>)>, Log) {
        let mut log = Log::open(path).unwrap();
        let mut got = Vec::new();
        log.recover(covered, &mut |seq, ops| {
            got.push((seq, ops.to_vec()));
            Ok(())
        })
        .unwrap();
        (got, log)
    }

    #[test]
    fn ops_round_trip() {
        let ops = record(2);
        assert_eq!(
            parse(&ops).unwrap(),
            vec![Op::Insert(3, &[2; 3], &[2; 200]), Op::Remove(4, &[2])]
        );
        let first = 2 + 4 + 3 + 4 + 200;
        for cut in (1..ops.len()).filter(|&c| c != first) {
            assert_eq!(parse(&ops[..cut]), None, "cut at {cut}");
        }
        assert_eq!(parse(&ops[..first]).unwrap().len(), 1);
        assert_eq!(parse(&[9, 0, 0, 0, 0, 0]), None);
    }

    /// Records come back in order, minus those a checkpoint covers; a log
    /// cut anywhere gives back exactly the records that were whole, and
    /// the next append continues the sequence after them.
    #[test]
    fn a_cut_log_yields_its_whole_records() {
        let (_guard, path) = scratch();
        let mut log = Log::open(&path).unwrap();
        let mut ends = Vec::new();
        for i in 1..=5 {
            assert_eq!(log.append(&record(i)).unwrap(), i as u64);
            ends.push(log.end());
        }
        drop(log);
        let (got, _) = recovered(&path, 0);
        assert_eq!(
            got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(got[2].1, record(3));
        let (got, _) = recovered(&path, 3);
        assert_eq!(got.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [4, 5]);

        let full = std::fs::read(&path).unwrap();
        for cut in 0..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let whole = ends.iter().filter(|&&e| e <= cut as u64).count();
            let (got, mut log) = recovered(&path, 0);
            assert_eq!(got.len(), whole, "cut at {cut}");
            assert_eq!(log.append(&record(9)).unwrap(), whole as u64 + 1);
            drop(log);
            assert_eq!(recovered(&path, 0).0.len(), whole + 1, "cut at {cut}");
        }
    }

    /// A flipped byte ends the log at the record it hit; so does a gap in
    /// the sequence (a stale record from before a reset).
    #[test]
    fn damage_ends_the_log() {
        let (_guard, path) = scratch();
        let mut log = Log::open(&path).unwrap();
        for i in 1..=3 {
            log.append(&record(i)).unwrap();
        }
        drop(log);
        let full = std::fs::read(&path).unwrap();
        let second = HEADER + record(1).len();
        for at in [second, second + 5, second + 13, second + HEADER + 7] {
            let mut bad = full.clone();
            bad[at] ^= 0x40;
            std::fs::write(&path, &bad).unwrap();
            assert_eq!(recovered(&path, 0).0.len(), 1, "flip at {at}");
        }
        // records 2 and 3 again, after a checkpoint at 1 and a reset that
        // left record 1's bytes: they are skipped, not taken for new ones
        let mut log = Log::open(&path).unwrap();
        log.recover(3, &mut |_, _| Ok(())).unwrap();
        assert_eq!(log.seq(), 3);
        log.reset().unwrap();
        log.append(&record(4)).unwrap();
        let mut stale = std::fs::read(&path).unwrap();
        stale.extend_from_slice(&full[..second]);
        std::fs::write(&path, &stale).unwrap();
        let (got, _) = recovered(&path, 3);
        assert_eq!(got.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [4]);
    }
}
