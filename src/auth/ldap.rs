//! Logins against an LDAP directory or Active Directory: bind as the user
//! (a DN template), or find the user with a service account (base +
//! filter) and bind as the entry found; groups from the user's entry
//! (`memberOf`) or a group search, named for the access rules by their
//! first RDN value (`cn=devs,ou=groups,...` is group `devs`) and by their
//! whole DN. Successful logins are remembered for `cache_secs`; while the
//! directory cannot be reached, remembered ones keep working for an hour
//! and others are refused as unavailable (503), never as wrong (401).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ldap3::{dn_escape, ldap_escape, LdapConn, LdapConnSettings, Scope, SearchEntry};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a remembered login keeps working while the directory is down.
const OFFLINE_GRACE: Duration = Duration::from_secs(3600);
/// Remembered logins at most; beyond, the memo starts over.
const MEMO_MAX: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapConfig {
    /// `ldap://host:389` or `ldaps://host:636`; empty = no directory.
    pub url: String,
    /// Bind as the user directly: `uid={username},ou=people,dc=example,dc=org`
    /// (AD: `{username}@example.org`). Empty = search with `bind_dn`.
    pub user_dn: String,
    /// Service account that searches for users (and groups).
    pub bind_dn: String,
    /// File holding that account's password (one line).
    pub bind_password_file: String,
    /// Where users are searched for.
    pub base: String,
    /// Which entry is the user: `{username}` is replaced (escaped); in
    /// `user_dn` mode it is checked on the user's own entry. Default
    /// `(uid={username})`; AD: `(sAMAccountName={username})`. Exclude
    /// disabled accounts here, e.g. AD's
    /// `(!(userAccountControl:1.2.840.113556.1.4.803:=2))`.
    pub filter: String,
    /// Attribute of the user's entry listing the DNs of their groups
    /// (`memberOf`).
    pub group_attribute: String,
    /// Or: search for groups here...
    pub group_base: String,
    /// ...with this filter; `{dn}` and `{username}` are replaced, e.g.
    /// `(&(objectClass=groupOfNames)(member={dn}))`.
    pub group_filter: String,
    /// PEM CA certificates the directory's TLS certificate is checked
    /// against (default: the system's roots).
    pub ca_file: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    pub starttls: bool,
    /// Connect and operation timeout, seconds.
    pub timeout_secs: u64,
    /// How long a successful login is remembered, seconds.
    pub cache_secs: u64,
}

impl Default for LdapConfig {
    fn default() -> Self {
        LdapConfig {
            url: String::new(),
            user_dn: String::new(),
            bind_dn: String::new(),
            bind_password_file: String::new(),
            base: String::new(),
            filter: String::new(),
            group_attribute: String::new(),
            group_base: String::new(),
            group_filter: String::new(),
            ca_file: String::new(),
            starttls: false,
            timeout_secs: 5,
            cache_secs: 300,
        }
    }
}

impl LdapConfig {
    pub fn on(&self) -> bool {
        !self.url.is_empty()
    }

    pub fn check(&self) -> Result<(), String> {
        if !self.on() {
            return Ok(());
        }
        if !(self.url.starts_with("ldap://") || self.url.starts_with("ldaps://")) {
            return Err(format!(
                "auth.ldap.url '{}' is not ldap:// or ldaps://",
                self.url
            ));
        }
        if self.user_dn.is_empty() && (self.bind_dn.is_empty() || self.base.is_empty()) {
            return Err("auth.ldap needs user_dn, or bind_dn and base to search with".into());
        }
        if !self.user_dn.is_empty() && !self.user_dn.contains("{username}") {
            return Err("auth.ldap.user_dn must contain {username}".into());
        }
        if self.group_base.is_empty() != self.group_filter.is_empty() {
            return Err("auth.ldap.group_base and group_filter go together".into());
        }
        if self.starttls && self.url.starts_with("ldaps://") {
            return Err("auth.ldap.starttls is for ldap:// URLs (ldaps:// is TLS already)".into());
        }
        Ok(())
    }
}

/// What the directory says of a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LdapLogin {
    /// Valid; the user's groups.
    Valid(Vec<String>),
    /// Wrong password, unknown or excluded user.
    Invalid,
    /// The directory cannot be asked (down, timeout, misconfigured).
    Unavailable(String),
}

type MemoKey = (String, [u8; 32]);

pub struct Directory {
    cfg: LdapConfig,
    bind_password: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    memo: RwLock<HashMap<MemoKey, (Vec<String>, Instant)>>,
}

impl Directory {
    pub fn open(cfg: &LdapConfig) -> Result<Directory, String> {
        let bind_password = match cfg.bind_password_file.is_empty() {
            true => String::new(),
            false => std::fs::read_to_string(&cfg.bind_password_file)
                .map_err(|e| format!("{}: {e}", cfg.bind_password_file))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        };
        let tls = match cfg.ca_file.is_empty() {
            true => None,
            false => Some(Arc::new(crate::trust::trusting(&cfg.ca_file)?)),
        };
        Ok(Directory {
            cfg: cfg.clone(),
            bind_password,
            tls,
            memo: RwLock::new(HashMap::new()),
        })
    }

    /// Check `user`'s `password` (blocking: call it off the async workers).
    pub fn login(&self, user: &str, password: &str) -> LdapLogin {
        // An empty password is an unauthenticated bind, which LDAP servers
        // answer with success: never a login.
        if password.is_empty()
            || user.is_empty()
            || user.len() > 256
            || user.chars().any(char::is_control)
        {
            return LdapLogin::Invalid;
        }
        let key = (user.to_string(), Sha256::digest(password.as_bytes()).into());
        let remembered = self.memo.read().expect("memo").get(&key).cloned();
        if let Some((groups, at)) = &remembered {
            if at.elapsed() < Duration::from_secs(self.cfg.cache_secs) {
                return LdapLogin::Valid(groups.clone());
            }
        }
        let answer = self.ask(user, password);
        let mut memo = self.memo.write().expect("memo");
        match &answer {
            LdapLogin::Valid(groups) => {
                if memo.len() >= MEMO_MAX {
                    memo.clear();
                }
                memo.insert(key, (groups.clone(), Instant::now()));
            }
            LdapLogin::Invalid => {
                memo.remove(&key);
            }
            LdapLogin::Unavailable(why) => {
                if let Some((groups, at)) = remembered {
                    if at.elapsed() < OFFLINE_GRACE {
                        tracing::warn!(error = %why, "directory unavailable: a remembered login is used");
                        return LdapLogin::Valid(groups);
                    }
                }
            }
        }
        answer
    }

    fn connect(&self) -> Result<LdapConn, String> {
        let timeout = Duration::from_secs(self.cfg.timeout_secs.max(1));
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(timeout)
            .set_starttls(self.cfg.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let mut conn = LdapConn::with_settings(settings, &self.cfg.url)
            .map_err(|e| format!("cannot reach {}: {e}", self.cfg.url))?;
        conn.with_timeout(timeout);
        Ok(conn)
    }

    fn ask(&self, user: &str, password: &str) -> LdapLogin {
        let mut conn = match self.connect() {
            Ok(c) => c,
            Err(e) => return LdapLogin::Unavailable(e),
        };
        let result = self.ask_on(&mut conn, user, password);
        let _ = conn.unbind();
        match result {
            Ok(Some(groups)) => LdapLogin::Valid(groups),
            Ok(None) => LdapLogin::Invalid,
            Err(e) => LdapLogin::Unavailable(e),
        }
    }

    /// Ok(None): the directory says no. Err: it could not be asked.
    fn ask_on(
        &self,
        conn: &mut LdapConn,
        user: &str,
        password: &str,
    ) -> Result<Option<Vec<String>>, String> {
        let filter = match self.cfg.filter.is_empty() {
            true => "(uid={username})".to_string(),
            false => self.cfg.filter.clone(),
        };
        let filter = filter.replace("{username}", &ldap_escape(user));
        let attrs: Vec<&str> = match self.cfg.group_attribute.is_empty() {
            true => vec!["1.1"], // no attributes
            false => vec![self.cfg.group_attribute.as_str()],
        };
        let entry = if !self.cfg.user_dn.is_empty() {
            let dn = self.cfg.user_dn.replace("{username}", &dn_escape(user));
            if !bind(conn, &dn, password)? {
                return Ok(None);
            }
            // the user's own entry must pass the filter (disabled accounts)
            match self.search(conn, &dn, Scope::Base, &filter, &attrs)?.pop() {
                Some(e) => e,
                None => return Ok(None),
            }
        } else {
            if !bind(conn, &self.cfg.bind_dn, &self.bind_password)? {
                return Err(format!(
                    "the directory refused bind_dn {}",
                    self.cfg.bind_dn
                ));
            }
            let mut found = self.search(conn, &self.cfg.base, Scope::Subtree, &filter, &attrs)?;
            if found.len() != 1 {
                return Ok(None); // unknown, or ambiguous: never guess which
            }
            let entry = found.pop().expect("one entry");
            if !bind(conn, &entry.dn, password)? {
                return Ok(None);
            }
            if !self.cfg.group_base.is_empty() {
                // group searches run as the service account, as the user
                // may not read groups
                if !bind(conn, &self.cfg.bind_dn, &self.bind_password)? {
                    return Err(format!(
                        "the directory refused bind_dn {}",
                        self.cfg.bind_dn
                    ));
                }
            }
            entry
        };
        let mut dns: Vec<String> = entry
            .attrs
            .get(&self.cfg.group_attribute)
            .cloned()
            .unwrap_or_default();
        if !self.cfg.group_base.is_empty() {
            let f = self
                .cfg
                .group_filter
                .replace("{dn}", &ldap_escape(&entry.dn))
                .replace("{username}", &ldap_escape(user));
            for g in self.search(conn, &self.cfg.group_base, Scope::Subtree, &f, &["1.1"])? {
                dns.push(g.dn);
            }
        }
        Ok(Some(group_names(&dns)))
    }

    fn search(
        &self,
        conn: &mut LdapConn,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, String> {
        let result = conn
            .search(base, scope, filter, attrs.to_vec())
            .map_err(|e| format!("search failed: {e}"))?;
        match result.success() {
            Ok((entries, _)) => Ok(entries.into_iter().map(SearchEntry::construct).collect()),
            // noSuchObject: the base or the user's entry is not there
            Err(ldap3::LdapError::LdapResult { result }) if result.rc == 32 => Ok(Vec::new()),
            Err(e) => Err(format!("search failed: {e}")),
        }
    }
}

/// Ok(false): wrong credentials (invalidCredentials and the like).
fn bind(conn: &mut LdapConn, dn: &str, password: &str) -> Result<bool, String> {
    if password.is_empty() {
        return Ok(false);
    }
    match conn.simple_bind(dn, password) {
        Ok(r) if r.rc == 0 => Ok(true),
        // invalidCredentials, inappropriateAuthentication, invalidDNSyntax,
        // noSuchObject, unwillingToPerform (a disabled AD account)
        Ok(r) if matches!(r.rc, 49 | 48 | 34 | 32 | 53) => Ok(false),
        Ok(r) => Err(format!("bind answered {}: {}", r.rc, r.text)),
        Err(e) => Err(format!("bind failed: {e}")),
    }
}

/// Each group by its first RDN value and by its DN.
fn group_names(dns: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for dn in dns {
        let first = dn.split(',').next().unwrap_or("");
        if let Some((_, value)) = first.split_once('=') {
            out.push(value.trim().to_string());
        }
        out.push(dn.clone());
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_first_rdn_and_dn() {
        let g = group_names(&["cn=devs,ou=groups,dc=example,dc=org".into()]);
        assert_eq!(g, vec!["cn=devs,ou=groups,dc=example,dc=org", "devs"]);
    }

    #[test]
    fn empty_passwords_never_log_in() {
        let d = Directory::open(&LdapConfig {
            url: "ldap://127.0.0.1:1".into(),
            user_dn: "uid={username},dc=x".into(),
            ..LdapConfig::default()
        })
        .unwrap();
        assert_eq!(d.login("alice", ""), LdapLogin::Invalid);
        assert!(matches!(d.login("alice", "pw"), LdapLogin::Unavailable(_)));
    }
}
