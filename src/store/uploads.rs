//! Upload sessions: a durable record per session and its staged upload in
//! `bodies`, whose length is the session's offset, so a session survives a
//! restart with nothing else to recover.

use std::time::Duration;

use super::bodies::Staged;
use super::kv::{Reader, Table};
use super::records::{self, UploadRecord};
use super::{new_id, Store, StoreError};

/// How long a staged upload with no session must have been idle before a
/// node sharing the metadata takes it for a stray.
const SHARED_STRAY_AGE: Duration = Duration::from_secs(3600);

impl Store {
    /// Open a new upload session for `repo`; returns its id.
    pub fn create_upload(&self, repo: &str) -> Result<String, StoreError> {
        let id = new_id();
        drop(self.bodies.create_staged(&id)?);
        let rec = UploadRecord {
            repo: repo.to_string(),
            created: crate::clock::unix_now(),
        };
        let mut tx = self.kv.write()?;
        tx.insert(Table::Uploads, id.as_bytes(), &records::encode(&rec))?;
        tx.commit()?;
        Ok(id)
    }

    pub fn upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError> {
        self.kv
            .read()?
            .get(Table::Uploads, id.as_bytes())?
            .map(|v| records::decode(&format!("upload {id}"), &v))
            .transpose()
    }

    /// The session's staged upload, to append to (and read back).
    pub fn open_upload(&self, id: &str) -> Result<Box<dyn Staged>, StoreError> {
        Ok(self.bodies.open_staged(id)?)
    }

    /// What the session holds, and how long ago it was last written.
    pub fn upload_stat(&self, id: &str) -> Result<(u64, Option<Duration>), StoreError> {
        Ok(self.bodies.staged_stat(id)?)
    }

    /// Forget a session and its staged upload (cancel, expiry, or after it
    /// was installed).
    pub fn remove_upload(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.kv.write()?;
        let existed = tx.remove(Table::Uploads, id.as_bytes())?;
        tx.commit()?;
        self.bodies.remove_staged(id)?;
        Ok(existed)
    }

    /// A staged upload with no session (bundle import, benchmarks): write
    /// it, sync it, then `stage_blob` or `commit_blob` it. One left behind
    /// is removed when the store next opens.
    pub fn stage(&self) -> Result<(String, Box<dyn Staged>), StoreError> {
        let id = format!("s-{}", new_id());
        let staged = self.bodies.create_staged(&id)?;
        Ok((id, staged))
    }

    /// Remove a staged upload made by `stage` that will not be committed.
    pub fn discard_staged(&self, id: &str) -> Result<(), StoreError> {
        Ok(self.bodies.remove_staged(id)?)
    }

    /// Every open session.
    pub fn uploads(&self) -> Result<Vec<(String, UploadRecord)>, StoreError> {
        let mut out = Vec::new();
        let mut bad = None;
        self.kv.read()?.for_each(Table::Uploads, b"", &mut |k, v| {
            let id = String::from_utf8_lossy(k).into_owned();
            match records::decode(&format!("upload {id}"), v) {
                Ok(r) => out.push((id, r)),
                Err(e) => bad = Some(e),
            }
            true
        })?;
        match bad {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// At open: staged uploads whose session was never recorded (a crash
    /// between creating one and committing its record, a single-request
    /// upload cut short, an import or a benchmark that stopped) are removed.
    /// With shared metadata, other nodes are staging uploads right now
    /// (a session's record is committed just after its staged upload is
    /// created): only strays idle for `SHARED_STRAY_AGE` are theirs no more.
    pub(super) fn remove_stray_uploads(&self) -> Result<(), StoreError> {
        let tx = self.kv.read()?;
        for id in self.bodies.staged_ids()? {
            if tx.contains(Table::Uploads, id.as_bytes())? {
                continue;
            }
            if self.shared {
                match self.bodies.staged_stat(&id) {
                    Ok((_, Some(idle))) if idle >= SHARED_STRAY_AGE => {}
                    _ => continue,
                }
            }
            self.bodies.remove_staged(&id)?;
        }
        Ok(())
    }
}
