//! Upload sessions: a durable record per session and its partial file
//! `uploads/<id>`. The file's length is the session's offset, so a session
//! survives a restart with nothing else to recover.

use std::fs::{self, File, OpenOptions};

use super::kv::{Reader, Table};
use super::records::{self, UploadRecord};
use super::{files, new_id, Store, StoreError};

impl Store {
    /// Open a new upload session for `repo`; returns its id.
    pub fn create_upload(&self, repo: &str) -> Result<String, StoreError> {
        let id = new_id();
        File::create(self.files.upload_path(&id))?;
        files::fsync_dir(&self.files.uploads_dir())?;
        let rec = UploadRecord {
            repo: repo.to_string(),
            created: records::now(),
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

    /// Open the session's partial file for appending.
    pub fn open_upload_file(&self, id: &str) -> Result<File, StoreError> {
        Ok(OpenOptions::new()
            .append(true)
            .read(true)
            .open(self.files.upload_path(id))?)
    }

    /// Forget a session and its partial file (cancel, expiry, or after the
    /// file was moved into place).
    pub fn remove_upload(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.kv.write()?;
        let existed = tx.remove(Table::Uploads, id.as_bytes())?;
        tx.commit()?;
        files::remove_if_exists(&self.files.upload_path(id))?;
        Ok(existed)
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

    /// At open: partial files whose session was never recorded (a crash
    /// between creating the file and committing the record, or a
    /// single-request upload cut short) are removed.
    pub(super) fn remove_stray_uploads(&self) -> Result<(), StoreError> {
        let tx = self.kv.read()?;
        for entry in fs::read_dir(self.files.uploads_dir())? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !tx.contains(Table::Uploads, name.as_bytes())? {
                files::remove_if_exists(&entry.path())?;
            }
        }
        Ok(())
    }
}
