//! Logging in to an upstream registry: HTTP Basic, or the token flow that
//! Docker Hub, ghcr.io, quay.io, Harbor and GitLab use. A 401 names a token
//! server (`WWW-Authenticate: Bearer realm=...,service=...,scope=...`); a
//! GET of `realm?service=..&scope=..` (with the Basic credentials, if any)
//! answers a token, which is then sent as `Authorization: Bearer` until it
//! expires. Tokens are cached per scope.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A `WWW-Authenticate: Bearer ...` challenge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
}

/// The Bearer challenge in a `WWW-Authenticate` value, if it is one.
///
/// ```
/// use berth::upstream::auth::challenge;
/// let c = challenge(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#).unwrap();
/// assert_eq!(c.realm, "https://auth.docker.io/token");
/// assert_eq!(c.service.as_deref(), Some("registry.docker.io"));
/// assert_eq!(c.scope.as_deref(), Some("repository:library/alpine:pull"));
/// assert!(challenge(r#"Basic realm="x""#).is_none());
/// ```
pub fn challenge(header: &str) -> Option<Challenge> {
    let rest = header
        .trim()
        .strip_prefix("Bearer ")
        .or_else(|| header.trim().strip_prefix("bearer "))?;
    let mut c = Challenge::default();
    for (k, v) in params(rest) {
        match k.to_ascii_lowercase().as_str() {
            "realm" => c.realm = v,
            "service" => c.service = Some(v),
            "scope" => c.scope = Some(v),
            _ => {}
        }
    }
    (!c.realm.is_empty()).then_some(c)
}

/// `key="value"` pairs separated by commas (values may hold commas).
fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let key = k.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, tail) = match after.strip_prefix('"') {
            Some(q) => match q.find('"') {
                Some(end) => (q[..end].to_string(), &q[end + 1..]),
                None => (q.to_string(), ""),
            },
            None => match after.find(',') {
                Some(end) => (after[..end].trim().to_string(), &after[end..]),
                None => (after.trim().to_string(), ""),
            },
        };
        out.push((key, value));
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// Tokens got for scopes, until they expire.
#[derive(Default)]
pub struct Tokens {
    by_scope: Mutex<HashMap<String, (String, Instant)>>,
}

/// A token is renewed this long before it expires.
const MARGIN: Duration = Duration::from_secs(10);

impl Tokens {
    /// The token for `scope`, if one is cached and still valid.
    pub fn get(&self, scope: &str) -> Option<String> {
        let m = self.by_scope.lock().unwrap_or_else(|p| p.into_inner());
        m.get(scope)
            .filter(|(_, until)| Instant::now() + MARGIN < *until)
            .map(|(t, _)| t.clone())
    }

    /// Remember `token` for `scope`, valid for `expires_in` seconds (60 when
    /// the token server did not say: the spec's default).
    pub fn put(&self, scope: &str, token: String, expires_in: Option<u64>) {
        let ttl = Duration::from_secs(expires_in.unwrap_or(60).max(1));
        let mut m = self.by_scope.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 1024 {
            let now = Instant::now();
            m.retain(|_, (_, until)| *until > now);
        }
        m.insert(scope.to_string(), (token, Instant::now() + ttl));
    }

    /// Forget the token for `scope` (it was refused).
    pub fn drop_scope(&self, scope: &str) {
        self.by_scope
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(scope);
    }
}

/// The token in a token server's JSON answer (`token` or `access_token`)
/// and how long it lasts.
pub fn parse_token(body: &[u8]) -> Option<(String, Option<u64>)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let token = v["token"].as_str().or_else(|| v["access_token"].as_str())?;
    Some((token.to_string(), v["expires_in"].as_u64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_with_commas_and_unquoted_values() {
        let c = challenge(
            r#"Bearer realm="https://h/token",service=reg,scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.service.as_deref(), Some("reg"));
        assert_eq!(c.scope.as_deref(), Some("repository:a/b:pull,push"));
    }

    #[test]
    fn tokens_expire() {
        let t = Tokens::default();
        t.put("s", "tok".into(), Some(3600));
        assert_eq!(t.get("s").as_deref(), Some("tok"));
        t.put("short", "x".into(), Some(5));
        assert_eq!(t.get("short"), None, "within the renewal margin");
        assert_eq!(
            parse_token(br#"{"access_token":"a","expires_in":300}"#),
            Some(("a".into(), Some(300)))
        );
        assert_eq!(parse_token(br#"{"token":"b"}"#), Some(("b".into(), None)));
    }
}
