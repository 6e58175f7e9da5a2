//! Robot accounts: named, scoped, expiring credentials for CI pipelines,
//! created and revoked by an admin. A robot logs in as `robot$<name>` with
//! a secret Berth generated; it has exactly the rights it was created
//! with. Only a sha256 of the secret is kept: the secret is 256 random
//! bits, which no one guesses, so a slow password hash (bcrypt) would only
//! slow every login down.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Action, Caller, Grant, Identity, Proof};
use crate::oci::glob::glob_match;

/// What robot account user names start with.
pub const PREFIX: &str = "robot$";

/// One robot account as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Robot {
    /// The name after `robot$`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Repository globs it may act on...
    pub repos: Vec<String>,
    /// ...and what it may do there.
    pub actions: Vec<Action>,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds after which it no longer logs in; 0 = never.
    pub expires: u64,
    /// Set when revoked (unix seconds); a revoked robot stays listed.
    #[serde(default)]
    pub revoked: Option<u64>,
    /// Hex sha256 of the secret.
    pub secret_sha256: String,
}

/// A robot's request, as an admin sends it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewRobot {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub repos: Vec<String>,
    pub actions: Vec<Action>,
    /// Valid this long, seconds; 0 = no expiry.
    #[serde(default)]
    pub expires_in_secs: u64,
}

impl NewRobot {
    pub fn check(&self) -> Result<(), String> {
        let ok = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if self.name.is_empty() || self.name.len() > 64 || !self.name.chars().all(ok) {
            return Err("a robot name is 1-64 of [A-Za-z0-9._-]".into());
        }
        if self.repos.is_empty() || self.actions.is_empty() {
            return Err("a robot needs at least one repository glob and one action".into());
        }
        if self
            .repos
            .iter()
            .any(|r| r.is_empty() || r.chars().any(char::is_control))
        {
            return Err("a repository glob is empty or holds control characters".into());
        }
        Ok(())
    }

    /// The stored robot and its secret (shown once, never kept).
    pub fn create(&self, now: u64) -> (Robot, String) {
        let secret: String = rand::random::<[u8; 32]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let robot = Robot {
            name: self.name.clone(),
            description: self.description.clone(),
            repos: self.repos.clone(),
            actions: self.actions.clone(),
            created: now,
            expires: match self.expires_in_secs {
                0 => 0,
                n => now.saturating_add(n),
            },
            revoked: None,
            secret_sha256: hash(&secret),
        };
        (robot, secret)
    }
}

fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Robot {
    /// The login name.
    pub fn user(&self) -> String {
        format!("{PREFIX}{}", self.name)
    }

    /// Logs in now: not revoked, not expired.
    pub fn active(&self, now: u64) -> bool {
        self.revoked.is_none() && (self.expires == 0 || now < self.expires)
    }

    /// Does `secret` log this robot in now? (Compared in constant time.)
    pub fn accepts(&self, secret: &str, now: u64) -> bool {
        let (a, b) = (hash(secret), &self.secret_sha256);
        let same =
            a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0, |d, (x, y)| d | (x ^ y)) == 0;
        same && self.active(now)
    }

    /// The caller it logs in as: exactly its own rights.
    pub fn caller(&self) -> Caller {
        Caller {
            who: Identity::User(self.user()),
            proof: Proof::Robot,
            groups: Vec::new(),
            only: Some(
                self.repos
                    .iter()
                    .map(|r| Grant {
                        repos: r.clone(),
                        glob: true,
                        actions: self.actions.clone(),
                    })
                    .collect(),
            ),
        }
    }

    /// May it act on `repo` at all (for what a token may grant it)?
    pub fn covers(&self, repo: &str) -> bool {
        self.repos.iter().any(|g| glob_match(g, repo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_expiry_and_revocation() {
        let new = NewRobot {
            name: "ci".into(),
            description: String::new(),
            repos: vec!["ci/*".into()],
            actions: vec![Action::Pull],
            expires_in_secs: 100,
        };
        new.check().unwrap();
        let (mut r, secret) = new.create(1000);
        assert!(r.accepts(&secret, 1050));
        assert!(!r.accepts("guess", 1050));
        assert!(!r.accepts(&secret, 1100), "expired");
        r.revoked = Some(1060);
        assert!(!r.accepts(&secret, 1061));
        assert_eq!(r.user(), "robot$ci");
        assert!(NewRobot {
            name: "a b".into(),
            ..new.clone()
        }
        .check()
        .is_err());
    }
}
