//! Content-addressed files under the data directory:
//! `blobs/<alg>/<xx>/<hex>`, `manifests/<alg>/<xx>/<hex>` (large manifests),
//! and `uploads/<session>` while an upload is in progress.
//! A file becomes part of the store by fsync, rename into place, fsync of the
//! directory, and only then is its record committed.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::oci::Digest;

#[derive(Clone, Debug)]
pub struct Files {
    root: PathBuf,
}

impl Files {
    pub fn new(root: &Path) -> io::Result<Files> {
        for d in ["blobs", "manifests", "uploads"] {
            fs::create_dir_all(root.join(d))?;
        }
        Ok(Files {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn addressed(&self, kind: &str, d: &Digest) -> PathBuf {
        self.root
            .join(kind)
            .join(d.algorithm().name())
            .join(&d.hex()[..2])
            .join(d.hex())
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.addressed("blobs", d)
    }

    pub fn manifest_path(&self, d: &Digest) -> PathBuf {
        self.addressed("manifests", d)
    }

    pub fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    pub fn upload_path(&self, id: &str) -> PathBuf {
        self.uploads_dir().join(id)
    }

    /// Move a durable staged file to `dest` and make the rename durable.
    pub fn install(&self, staged: &Path, dest: &Path) -> io::Result<()> {
        let parent = dest.parent().expect("addressed paths have a parent");
        if !parent.exists() {
            fs::create_dir_all(parent)?;
            if let Some(grand) = parent.parent() {
                fsync_dir(grand)?;
            }
        }
        fs::rename(staged, dest)?;
        fsync_dir(parent)
    }

    /// Write `bytes` durably to `dest` through a staged file.
    pub fn write_durable(&self, dest: &Path, bytes: &[u8]) -> io::Result<()> {
        let staged = self
            .uploads_dir()
            .join(format!("m-{}", crate::store::new_id()));
        let result = (|| {
            let mut f = File::create(&staged)?;
            io::Write::write_all(&mut f, bytes)?;
            f.sync_all()?;
            self.install(&staged, dest)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&staged);
        }
        result
    }
}

/// Start writing `len` bytes of `f` from `offset` to disk without waiting,
/// so the fsync that ends an upload finds little left to write (Linux
/// `sync_file_range`; elsewhere the fsync does all of it).
pub fn start_writeback(f: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; the call reads no user memory.
        // A failure only means the fsync has more to do, so it is ignored.
        unsafe {
            libc::sync_file_range(
                f.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (f, offset, len);
}

pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Remove a file; a file already gone is not an error.
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Read until `buf` is full or the input ends; how much was read.
pub fn read_full(r: &mut dyn io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
