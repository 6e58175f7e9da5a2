//! Which blob files a read has just verified whole (`verify.trust_cached_secs`).
//!
//! Hashing every block on every read costs a third of a download's CPU. A
//! read that hashed every block of a blob and found them right vouches for
//! that file, as it is (its [`Identity`]), for a while: later reads of it
//! take the bytes still in the page cache as they are. A byte that has to
//! come from the disk again is hashed again, since the disk is where bytes
//! rot: such a read checks every block from there on and withdraws the
//! trust, which the next read that hashes the whole blob grants again. A
//! new file (a repaired blob), a change to it, an expired entry or a blob
//! marked damaged (refused before any of this) is read checked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::Metrics;
use crate::oci::Digest;
use crate::store::bodies::Identity;

/// Files vouched for at most; past that the oldest half is forgotten
/// (their next reads hash again). About 80 bytes each.
const MAX_ENTRIES: usize = 50_000;

/// The blob files verified whole by a read, when.
pub struct ReadTrust {
    /// 0 = trust nothing: every read hashes every block.
    ttl: Duration,
    vouched: Mutex<HashMap<Identity, (Fingerprint, Instant)>>,
    /// Blocks read hashed and read from memory unhashed (metrics).
    hashed: Counter,
    cached: Counter,
    /// The table's size, for `/metrics`.
    files: Gauge,
}

/// The digest a file was verified as (its first 16 bytes), so that an
/// identity reused by another file of another blob vouches for nothing.
type Fingerprint = [u8; 16];

fn fingerprint(d: &Digest) -> Fingerprint {
    let mut f = [0u8; 16];
    for (o, b) in f.iter_mut().zip(d.hex().as_bytes()) {
        *o = *b;
    }
    f
}

impl ReadTrust {
    pub fn new(ttl_secs: u64, metrics: &Metrics) -> ReadTrust {
        let check = |how: &str| {
            let labels = vec![("check".to_string(), how.to_string())];
            metrics.read_blocks.get_or_create(&labels).clone()
        };
        ReadTrust {
            ttl: Duration::from_secs(ttl_secs),
            vouched: Mutex::new(HashMap::new()),
            hashed: check("hashed"),
            cached: check("cached"),
            files: metrics.vouched_files.clone(),
        }
    }

    /// What one read of blob `digest`, whose file is `identity`, may take
    /// on trust.
    pub fn ticket(self: &Arc<Self>, digest: &Digest, identity: Option<Identity>) -> Ticket {
        let identity = identity.filter(|_| !self.ttl.is_zero());
        let trusted = identity.is_some_and(|id| {
            let now = Instant::now();
            let vouched = self.vouched.lock().unwrap_or_else(|p| p.into_inner());
            vouched.get(&id).is_some_and(|(f, at)| {
                *f == fingerprint(digest) && now.saturating_duration_since(*at) < self.ttl
            })
        });
        Ticket {
            trust: self.clone(),
            digest: fingerprint(digest),
            identity,
            trusted,
        }
    }

    /// File `identity` was just installed as the body of `digest` from
    /// bytes hashed as they were written, so the pages in memory are the
    /// verified bytes, as after a read that hashed them all.
    pub fn written(&self, digest: &Digest, identity: Identity) {
        if !self.ttl.is_zero() {
            self.grant(identity, fingerprint(digest));
        }
    }

    fn grant(&self, id: Identity, digest: Fingerprint) {
        let now = Instant::now();
        let mut vouched = self.vouched.lock().unwrap_or_else(|p| p.into_inner());
        if vouched.len() >= MAX_ENTRIES && !vouched.contains_key(&id) {
            vouched.retain(|_, (_, at)| now.saturating_duration_since(*at) < self.ttl);
            if vouched.len() >= MAX_ENTRIES {
                let mut ages: Vec<Instant> = vouched.values().map(|(_, at)| *at).collect();
                let (_, median, _) = ages.select_nth_unstable(MAX_ENTRIES / 2);
                let median = *median;
                vouched.retain(|_, (_, at)| *at > median);
            }
        }
        vouched.insert(id, (digest, now));
        self.files.set(vouched.len() as i64);
    }

    fn revoke(&self, id: &Identity) {
        let mut vouched = self.vouched.lock().unwrap_or_else(|p| p.into_inner());
        vouched.remove(id);
        self.files.set(vouched.len() as i64);
    }

    /// Files vouched for now (metrics, tests).
    pub fn len(&self) -> usize {
        self.vouched.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One read's standing: whether bytes in memory may go out unhashed, and
/// how the read reports what it found.
pub struct Ticket {
    trust: Arc<ReadTrust>,
    digest: Fingerprint,
    identity: Option<Identity>,
    trusted: bool,
}

impl Ticket {
    /// Bytes of this file still in the page cache may be served unhashed.
    pub fn trusted(&self) -> bool {
        self.trusted
    }

    /// One block went out unhashed, from memory.
    pub fn sent_cached(&self) {
        self.trust.cached.inc();
    }

    /// One block was hashed and found right.
    pub fn hashed(&self) {
        self.trust.hashed.inc();
    }

    /// The read hashed every block of the blob and each was right.
    pub fn verified_whole(&self) {
        if let Some(id) = self.identity {
            self.trust.grant(id, self.digest);
        }
    }

    /// The read found bytes that were not in memory: from here on it hashes
    /// every block, and so does every read until one hashes the whole blob.
    pub fn missed(&mut self) {
        if self.trusted {
            self.trusted = false;
            if let Some(id) = &self.identity {
                self.trust.revoke(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ino: u64) -> Identity {
        Identity {
            file: (1, ino),
            size: 10,
            mtime: (5, 0),
            ctime: (5, 0),
        }
    }

    fn digest(c: char) -> Digest {
        Digest::new(crate::oci::Algorithm::Sha256, c.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn a_whole_verified_read_vouches_for_that_file_of_that_blob_only() {
        let trust = Arc::new(ReadTrust::new(60, &Metrics::default()));
        let (a, b) = (digest('a'), digest('b'));
        assert!(!trust.ticket(&a, Some(id(1))).trusted());
        trust.ticket(&a, Some(id(1))).verified_whole();
        assert!(trust.ticket(&a, Some(id(1))).trusted());
        // another blob under the same identity, another file, no identity
        assert!(!trust.ticket(&b, Some(id(1))).trusted());
        assert!(!trust.ticket(&a, Some(id(2))).trusted());
        assert!(!trust.ticket(&a, None).trusted());
        let changed = Identity {
            mtime: (6, 0),
            ..id(1)
        };
        assert!(!trust.ticket(&a, Some(changed)).trusted());
        // a miss withdraws it for every later read
        let mut t = trust.ticket(&a, Some(id(1)));
        t.missed();
        assert!(!t.trusted());
        assert!(!trust.ticket(&a, Some(id(1))).trusted());
    }

    #[test]
    fn nothing_is_trusted_with_a_zero_ttl_and_the_table_stays_bounded() {
        let off = Arc::new(ReadTrust::new(0, &Metrics::default()));
        off.ticket(&digest('a'), Some(id(1))).verified_whole();
        assert!(!off.ticket(&digest('a'), Some(id(1))).trusted());
        let trust = Arc::new(ReadTrust::new(60, &Metrics::default()));
        for ino in 0..(MAX_ENTRIES as u64 + 10) {
            trust.ticket(&digest('a'), Some(id(ino))).verified_whole();
        }
        assert!(trust.len() <= MAX_ENTRIES);
        let newest = id(MAX_ENTRIES as u64 + 9);
        assert!(trust.ticket(&digest('a'), Some(newest)).trusted());
    }
}
