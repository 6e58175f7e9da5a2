//! What retention policies need to know: when tags moved, and which
//! manifests no tag reaches.

use std::collections::{HashMap, HashSet};

use super::kv::{self, Reader, Table};
use super::manifests::{is_index, manifest_record};
use super::records;
use super::{Store, StoreError};

impl Store {
    /// Tags of `repo` with their digest and when each last moved (unix ms).
    pub fn tag_times(&self, repo: &str) -> Result<Vec<(String, String, u64)>, StoreError> {
        let tx = self.kv.read()?;
        let p = kv::prefix(&[repo]);
        let mut out = Vec::new();
        for (k, v) in tx.scan(Table::Tags, &p, None, usize::MAX)? {
            let tag = String::from_utf8_lossy(&k[p.len()..]).into_owned();
            let digest = String::from_utf8_lossy(records::tag_digest(&v)).into_owned();
            out.push((tag, digest, records::tag_moved(&v)));
        }
        Ok(out)
    }

    /// Manifests of `repo` that no tag (other than `ignoring`) reaches,
    /// directly or as a child of a tagged index, with the unix time they
    /// were pushed to the repository.
    pub fn untagged(
        &self,
        repo: &str,
        ignoring: &HashSet<String>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let tx = self.kv.read()?;
        let p = kv::prefix(&[repo]);
        let mut reached = HashSet::new();
        let mut stack: Vec<String> = tx
            .scan(Table::Tags, &p, None, usize::MAX)?
            .into_iter()
            .filter(|(k, _)| !ignoring.contains(String::from_utf8_lossy(&k[p.len()..]).as_ref()))
            .map(|(_, v)| String::from_utf8_lossy(records::tag_digest(&v)).into_owned())
            .collect();
        while let Some(d) = stack.pop() {
            if !reached.insert(d.clone()) {
                continue;
            }
            if let Some(rec) = manifest_record(&tx, &d)? {
                if is_index(&rec.summary) {
                    stack.extend(rec.summary.children.iter().map(|c| c.digest.to_string()));
                }
                // a referrer (signature, SBOM) belongs with its subject
            }
        }
        let mut subjects: HashMap<String, String> = HashMap::new();
        let mut linked = Vec::new();
        for (k, v) in tx.scan(Table::RepoManifests, &p, None, usize::MAX)? {
            let d = String::from_utf8_lossy(&k[p.len()..]).into_owned();
            let at = String::from_utf8_lossy(&v).parse().unwrap_or(0);
            if let Some(rec) = manifest_record(&tx, &d)? {
                if let Some(s) = rec.summary.subject {
                    subjects.insert(d.clone(), s.digest.to_string());
                }
            }
            linked.push((d, at));
        }
        Ok(linked
            .into_iter()
            .filter(|(d, _)| {
                !reached.contains(d) && !subjects.get(d).is_some_and(|s| reached.contains(s))
            })
            .collect())
    }
}
