//! Bodies as content-addressed files under the data directory:
//! `blobs/<alg>/<xx>/<hex>`, `manifests/<alg>/<xx>/<hex>`, and
//! `uploads/<id>` while an upload is staged. A file becomes a body by
//! fsync, rename into place and fsync of its directory.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Bodies, Body, Identity, Kind, Staged};
use crate::oci::{Algorithm, Digest};

#[derive(Clone, Debug)]
pub struct FileBodies {
    root: PathBuf,
}

impl FileBodies {
    pub fn new(root: &Path) -> io::Result<FileBodies> {
        for d in ["blobs", "manifests", "uploads"] {
            fs::create_dir_all(root.join(d))?;
        }
        Ok(FileBodies {
            root: root.to_path_buf(),
        })
    }

    fn path(&self, kind: Kind, d: &Digest) -> PathBuf {
        self.kind_dir(kind)
            .join(d.algorithm().name())
            .join(&d.hex()[..2])
            .join(d.hex())
    }

    fn kind_dir(&self, kind: Kind) -> PathBuf {
        self.root.join(match kind {
            Kind::Blob => "blobs",
            Kind::Manifest => "manifests",
        })
    }

    fn uploads(&self) -> PathBuf {
        self.root.join("uploads")
    }

    fn staged_path(&self, id: &str) -> PathBuf {
        self.uploads().join(id)
    }

    /// Move a durable file to `dest` and make the rename durable.
    fn place(&self, from: &Path, dest: &Path) -> io::Result<()> {
        let parent = dest.parent().expect("addressed paths have a parent");
        if !parent.exists() {
            fs::create_dir_all(parent)?;
            if let Some(grand) = parent.parent() {
                fsync_dir(grand)?;
            }
        }
        fs::rename(from, dest)?;
        fsync_dir(parent)
    }
}

impl Body for File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn identity(&self) -> Option<Identity> {
        use std::os::unix::fs::MetadataExt;
        let m = self.metadata().ok()?;
        Some(Identity {
            file: (m.dev(), m.ino()),
            size: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }

    fn read_cached(&self, at: u64, len: usize, out: &mut Vec<u8>) -> io::Result<usize> {
        read_cached(self, at, len, out)
    }
}

/// `preadv2(RWF_NOWAIT)` until `len` bytes or the first that is not in the
/// page cache: the kernel answers EAGAIN (or a short read) rather than
/// start and wait for a disk read. Never an error: what it cannot read is
/// left to the ordinary read.
#[cfg(target_os = "linux")]
fn read_cached(file: &File, at: u64, len: usize, out: &mut Vec<u8>) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    out.reserve(len);
    let mut got = 0;
    while got < len {
        let spare = &mut out.spare_capacity_mut()[..len - got];
        let iov = libc::iovec {
            iov_base: spare.as_mut_ptr().cast(),
            iov_len: spare.len(),
        };
        let offset = (at + got as u64) as libc::off_t;
        // SAFETY: the kernel writes at most `iov_len` bytes into the spare
        // capacity `iov` points at, which stays borrowed for the call.
        let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
        match n {
            0 => break,
            n if n > 0 => {
                // SAFETY: the kernel initialised these `n` bytes.
                unsafe { out.set_len(out.len() + n as usize) };
                got += n as usize;
            }
            // EAGAIN: not in memory; EOPNOTSUPP, EINVAL, ENOSYS: a kernel
            // or file system without NOWAIT reads; anything else the
            // ordinary read meets again and reports. Either way the caller
            // reads (and hashes) the rest the ordinary way.
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => break,
        }
    }
    Ok(got)
}

#[cfg(not(target_os = "linux"))]
fn read_cached(_: &File, _: u64, _: usize, _: &mut Vec<u8>) -> io::Result<usize> {
    Ok(0)
}

impl Staged for File {
    fn identity(&self) -> Option<Identity> {
        Body::identity(self)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_all()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)?;
        io::Seek::seek(self, io::SeekFrom::Start(len)).map(drop)
    }

    /// Linux `sync_file_range`; elsewhere the final fsync does all of it.
    fn write_back(&self, from: u64, len: u64) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid open descriptor; the call reads no user memory.
            // A failure only means the fsync has more to do, so it is ignored.
            unsafe {
                libc::sync_file_range(
                    self.as_raw_fd(),
                    from as libc::off64_t,
                    len as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (from, len);
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).read(true).open(path)
}

impl Bodies for FileBodies {
    fn create_staged(&self, id: &str) -> io::Result<Box<dyn Staged>> {
        let path = self.staged_path(id);
        File::create(&path)?;
        fsync_dir(&self.uploads())?;
        Ok(Box::new(append(&path)?))
    }

    fn open_staged(&self, id: &str) -> io::Result<Box<dyn Staged>> {
        Ok(Box::new(append(&self.staged_path(id))?))
    }

    fn staged_stat(&self, id: &str) -> io::Result<(u64, Option<Duration>)> {
        let m = fs::metadata(self.staged_path(id))?;
        let idle = m.modified().ok().and_then(|t| t.elapsed().ok());
        Ok((m.len(), idle))
    }

    fn remove_staged(&self, id: &str) -> io::Result<()> {
        remove_if_exists(&self.staged_path(id))
    }

    fn staged_ids(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.uploads())? {
            out.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }

    fn install(&self, id: &str, kind: Kind, digest: &Digest) -> io::Result<()> {
        self.place(&self.staged_path(id), &self.path(kind, digest))
    }

    fn install_keeping(&self, id: &str, kind: Kind, digest: &Digest) -> io::Result<()> {
        // a second name for the staged file goes into place; a crash
        // leaves it as a stray upload, removed as strays are
        let link = self.staged_path(&format!("{id}.placing"));
        remove_if_exists(&link)?;
        fs::hard_link(self.staged_path(id), &link)?;
        self.place(&link, &self.path(kind, digest))
    }

    fn put(&self, kind: Kind, digest: &Digest, bytes: &[u8]) -> io::Result<()> {
        let staged = self.staged_path(&format!("m-{}", crate::store::new_id()));
        let result = (|| {
            let mut f = File::create(&staged)?;
            io::Write::write_all(&mut f, bytes)?;
            f.sync_all()?;
            self.place(&staged, &self.path(kind, digest))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&staged);
        }
        result
    }

    fn open(&self, kind: Kind, digest: &Digest) -> io::Result<Box<dyn Body>> {
        Ok(Box::new(File::open(self.path(kind, digest))?))
    }

    fn exists(&self, kind: Kind, digest: &Digest) -> io::Result<bool> {
        self.path(kind, digest).try_exists()
    }

    fn delete(&self, kind: Kind, digest: &Digest) -> io::Result<()> {
        remove_if_exists(&self.path(kind, digest))
    }

    fn list(&self, kind: Kind, each: &mut dyn FnMut(Digest)) -> io::Result<()> {
        let Ok(algs) = fs::read_dir(self.kind_dir(kind)) else {
            return Ok(());
        };
        for alg in algs {
            let alg = alg?;
            let Some(algorithm) = Algorithm::from_name(&alg.file_name().to_string_lossy()) else {
                continue;
            };
            let Ok(shards) = fs::read_dir(alg.path()) else {
                continue;
            };
            for shard in shards {
                let Ok(entries) = fs::read_dir(shard?.path()) else {
                    continue;
                };
                for e in entries {
                    let hex = e?.file_name().to_string_lossy().into_owned();
                    if let Ok(d) = Digest::new(algorithm, hex) {
                        each(d);
                    }
                }
            }
        }
        Ok(())
    }

    fn local_path(&self, kind: Kind, digest: &Digest) -> Option<PathBuf> {
        Some(self.path(kind, digest))
    }
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Remove a file; a file already gone is not an error.
fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
