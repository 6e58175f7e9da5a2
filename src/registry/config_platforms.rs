//! Platforms read from image config blobs, remembered by digest.
//!
//! A config blob's bytes never change (it is content-addressed), so its
//! platform is read from the file once: the same image pushed under more
//! tags or to more repositories (mirroring, CI re-tagging) skips the record
//! lookup and the file read on the push path.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::oci::{Digest, Platform};

/// Configs remembered at most; the memo starts over when full (a bound, not
/// a policy: a miss costs one small file read).
const MAX_ENTRIES: usize = 4096;

#[derive(Default)]
pub struct ConfigPlatforms {
    known: Mutex<HashMap<Digest, Option<Platform>>>,
}

impl ConfigPlatforms {
    /// The platform of config `digest`, from memory or from `read`, which
    /// returns None when the blob cannot be read now (not remembered) and
    /// Some(platform or None) once it was.
    pub fn get(
        &self,
        digest: &Digest,
        read: impl FnOnce() -> Option<Option<Platform>>,
    ) -> Option<Platform> {
        if let Some(p) = self.lock().get(digest) {
            return p.clone();
        }
        let p = read()?;
        let mut known = self.lock();
        if known.len() >= MAX_ENTRIES {
            known.clear();
        }
        known.insert(digest.clone(), p.clone());
        p
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Option<Platform>>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_once_and_not_when_unreadable() {
        let memo = ConfigPlatforms::default();
        let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        assert_eq!(memo.get(&d, || None), None);
        let amd64 = Platform::parse("linux/amd64");
        assert_eq!(memo.get(&d, || Some(amd64.clone())), amd64);
        assert_eq!(memo.get(&d, || panic!("read again")), amd64);
    }

    #[test]
    fn stays_bounded() {
        let memo = ConfigPlatforms::default();
        for i in 0..MAX_ENTRIES + 10 {
            let d: Digest = format!("sha256:{i:064x}").parse().unwrap();
            memo.get(&d, || Some(None));
        }
        assert!(memo.lock().len() <= MAX_ENTRIES);
    }
}
