//! htpasswd files with bcrypt entries (`htpasswd -B`, as Distribution reads),
//! reloaded when the file changes. Successful checks are cached (keyed by a
//! sha256 of the password, never the password) because clients send Basic
//! credentials on every request and bcrypt costs tens of milliseconds.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use crate::oci::Algorithm;
use crate::verify;

/// A bcrypt hash of nothing anyone knows, checked for unknown users so that
/// a wrong user name takes as long as a wrong password (cost 5, as
/// `htpasswd -B` writes by default).
fn dummy() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let secret = crate::verify::hex(&rand::random::<[u8; 16]>());
        bcrypt::hash(secret, 5).expect("bcrypt hashes")
    })
}
const CACHE_FOR: Duration = Duration::from_secs(300);

/// Parse `user:hash` lines; blank lines and `#` comments are skipped.
/// Returns the entries and the numbers of lines that are not bcrypt entries.
pub fn parse(text: &str) -> (HashMap<String, String>, Vec<usize>) {
    let mut users = HashMap::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((u, h))
                if !u.is_empty()
                    && (h.starts_with("$2y$")
                        || h.starts_with("$2b$")
                        || h.starts_with("$2a$")) =>
            {
                users.insert(u.to_string(), h.to_string());
            }
            _ => bad.push(i + 1),
        }
    }
    (users, bad)
}

struct Loaded {
    users: HashMap<String, String>,
    modified: Option<SystemTime>,
    checked: Instant,
}

pub struct Htpasswd {
    path: PathBuf,
    loaded: RwLock<Loaded>,
    /// (user, sha256 of password) -> when it was verified
    ok_cache: RwLock<HashMap<(String, String), Instant>>,
}

impl Htpasswd {
    pub fn open(path: PathBuf) -> std::io::Result<Htpasswd> {
        let h = Htpasswd {
            path,
            loaded: RwLock::new(Loaded {
                users: HashMap::new(),
                modified: None,
                checked: Instant::now() - Duration::from_secs(10),
            }),
            ok_cache: RwLock::new(HashMap::new()),
        };
        h.reload(true)?;
        Ok(h)
    }

    /// Re-read the file when its modification time changed (checked at most
    /// once a second).
    fn reload(&self, force: bool) -> std::io::Result<()> {
        {
            let l = self.loaded.read().unwrap_or_else(|p| p.into_inner());
            if !force && l.checked.elapsed() < Duration::from_secs(1) {
                return Ok(());
            }
        }
        let modified = std::fs::metadata(&self.path)?.modified().ok();
        let mut l = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        l.checked = Instant::now();
        if !force && modified == l.modified {
            return Ok(());
        }
        let (users, bad) = parse(&std::fs::read_to_string(&self.path)?);
        if !bad.is_empty() {
            tracing::warn!(path = %self.path.display(), lines = ?bad, "htpasswd lines that are not bcrypt entries were ignored");
        }
        tracing::info!(path = %self.path.display(), users = users.len(), "htpasswd loaded");
        l.users = users;
        l.modified = modified;
        self.ok_cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
    }

    /// Are these valid credentials?
    pub fn check(&self, user: &str, password: &str) -> bool {
        if let Err(e) = self.reload(false) {
            tracing::error!(error = %e, "cannot re-read htpasswd; keeping the users loaded before");
        }
        let key = (
            user.to_string(),
            verify::digest_bytes(Algorithm::Sha256, password.as_bytes()).to_string(),
        );
        if let Some(at) = self
            .ok_cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            if at.elapsed() < CACHE_FOR {
                return true;
            }
        }
        let hash = self
            .loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .users
            .get(user)
            .cloned();
        let ok = match hash {
            Some(h) => bcrypt::verify(password, &h).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(password, dummy());
                false
            }
        };
        if ok {
            self.ok_cache
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, Instant::now());
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bcrypt_entries_only() {
        let (u, bad) = parse("# c\nalice:$2y$05$abc\nbob:{SHA}xyz\n\ncarol:$2b$10$x\nnocolon\n");
        assert_eq!(u.len(), 2);
        assert_eq!(bad, vec![3, 6]);
    }

    #[test]
    fn checks_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("htpasswd");
        std::fs::write(
            &f,
            format!("alice:{}\n", bcrypt::hash("s3cret", 4).unwrap()),
        )
        .unwrap();
        let h = Htpasswd::open(f.clone()).unwrap();
        assert!(h.check("alice", "s3cret"));
        assert!(h.check("alice", "s3cret"), "cached");
        assert!(!h.check("alice", "wrong"));
        assert!(!h.check("mallory", "s3cret"));
        std::thread::sleep(Duration::from_millis(1100));
        std::fs::write(&f, format!("bob:{}\n", bcrypt::hash("pw", 4).unwrap())).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert!(h.check("bob", "pw"));
        assert!(
            !h.check("alice", "s3cret"),
            "removed users are out, cache included"
        );
    }
}
