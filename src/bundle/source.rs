//! The export source for a stopped server's data directory (`remote.rs`
//! has the one for a running server).

use std::io::Read;

use super::export::Source;
use super::{BundleError, Result};
use crate::oci::{Descriptor, Digest, Reference};
use crate::store::Store;

/// A data directory (opened exclusively: the server must be stopped).
pub struct StoreSource<'a>(pub &'a Store);

impl Source for StoreSource<'_> {
    fn repositories(&self) -> Result<Vec<String>> {
        Ok(self.0.repositories(None, usize::MAX)?)
    }

    fn tags(&self, repo: &str) -> Result<Vec<String>> {
        Ok(self.0.tags(repo, None, usize::MAX)?)
    }

    fn manifest(&self, repo: &str, r: &Reference) -> Result<Option<(Digest, String, Vec<u8>)>> {
        Ok(self
            .0
            .manifest(repo, r)?
            .map(|m| (m.digest, m.summary.media_type, m.bytes)))
    }

    fn blob(&self, repo: &str, d: &Digest) -> Result<Box<dyn Read + '_>> {
        let info = self
            .0
            .blob(repo, d)?
            .ok_or_else(|| BundleError::Bad(format!("{repo} lacks blob {d} (run berth verify)")))?;
        Ok(Box::new(self.0.open_blob(d, &info)?))
    }

    fn referrers(&self, repo: &str, d: &Digest) -> Result<Vec<Descriptor>> {
        Ok(self.0.referrers(repo, d)?)
    }
}
