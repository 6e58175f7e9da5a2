//! Checking Bearer tokens: signature (this registry's key, or a trusted
//! issuer's certificate or JWKS), expiry, audience; then what the token's
//! `access` claim grants. A token checked once is remembered until it
//! expires, so a pull of many layers pays for one signature check.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};

use super::token::{Claims, TokenConfig};
use super::{keys, Caller, Grant, Identity, Proof};
use crate::clock::unix_now;

/// Tokens remembered at most; beyond, the memo starts over.
const MEMO_MAX: usize = 10_000;
/// Clock skew allowed on `exp` and `nbf`, seconds.
const LEEWAY: u64 = 5;

/// Why a token is refused (for the challenge's `error_description`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

enum Keys {
    /// Certificates: a token's `x5c` leaf must be one of them or be signed
    /// by one; without `x5c`, the first one's key checks it.
    Certs(Vec<Vec<u8>>),
    Jwks(JwkSet),
}

struct Issuer {
    name: String,
    own: bool,
    keys: Keys,
}

pub struct Verifier {
    service: String,
    issuers: Vec<Issuer>,
    memo: Mutex<HashMap<[u8; 32], (Caller, u64)>>,
}

impl Verifier {
    /// Trust this registry's own certificate chain (if it issues) and the
    /// configured issuers.
    pub fn load(cfg: &TokenConfig, own_chain: Option<&[Vec<u8>]>) -> Result<Verifier, String> {
        let mut issuers = Vec::new();
        if let Some(chain) = own_chain {
            issuers.push(Issuer {
                name: cfg.issuer.clone(),
                own: true,
                keys: Keys::Certs(chain[..1].to_vec()),
            });
        }
        for t in &cfg.trusted {
            let keys = if !t.cert.is_empty() {
                let pem = std::fs::read(&t.cert).map_err(|e| format!("{}: {e}", t.cert))?;
                let certs = keys::pem_blocks(&pem, "CERTIFICATE");
                for c in &certs {
                    keys::cert_public_key(c).map_err(|e| format!("{}: {e}", t.cert))?;
                }
                if certs.is_empty() {
                    return Err(format!("{}: no CERTIFICATE in it", t.cert));
                }
                Keys::Certs(certs)
            } else {
                let text = std::fs::read(&t.jwks).map_err(|e| format!("{}: {e}", t.jwks))?;
                Keys::Jwks(serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", t.jwks))?)
            };
            issuers.push(Issuer {
                name: t.issuer.clone(),
                own: false,
                keys,
            });
        }
        Ok(Verifier {
            service: cfg.service.clone(),
            issuers,
            memo: Mutex::new(HashMap::new()),
        })
    }

    /// The caller a token names, with exactly the rights its claims grant.
    pub fn verify(&self, token: &str) -> Result<Caller, Refused> {
        let memo_key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = unix_now();
        if let Some((caller, exp)) = self.memo.lock().expect("memo").get(&memo_key) {
            if now <= exp + LEEWAY {
                return Ok(caller.clone());
            }
        }
        let refused = |why: &str| Refused(why.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|_| refused("malformed token"))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(refused("token algorithm not accepted"));
        }
        let iss = unverified_issuer(token).ok_or_else(|| refused("malformed token"))?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.name == iss)
            .ok_or_else(|| refused("token issuer not trusted"))?;
        let key = issuer
            .key_for(&header)
            .ok_or_else(|| refused("token not signed by a trusted key"))?;
        let mut v = Validation::new(header.alg);
        v.leeway = LEEWAY;
        v.validate_nbf = true;
        v.set_audience(&[&self.service]);
        v.set_issuer(&[&issuer.name]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => refused("token expired"),
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                    refused("token not yet valid")
                }
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    refused("token is for another service")
                }
                _ => refused("token signature invalid"),
            })?
            .claims;
        let caller = caller_of(&claims, issuer.own);
        let mut memo = self.memo.lock().expect("memo");
        if memo.len() >= MEMO_MAX {
            memo.clear();
        }
        memo.insert(memo_key, (caller.clone(), claims.exp));
        Ok(caller)
    }
}

impl Issuer {
    fn key_for(&self, header: &jsonwebtoken::Header) -> Option<DecodingKey> {
        match &self.keys {
            Keys::Certs(certs) => {
                let leaf = header
                    .x5c
                    .as_ref()
                    .and_then(|c| c.first())
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
                let cert = match leaf {
                    Some(leaf) if certs.contains(&leaf) => leaf,
                    Some(leaf) if certs.iter().any(|ca| keys::issued_by(&leaf, ca)) => leaf,
                    Some(_) => return None,
                    None => certs[0].clone(),
                };
                let (key, alg) = keys::cert_public_key(&cert).ok()?;
                (alg == header.alg).then_some(key)
            }
            Keys::Jwks(set) => {
                let jwk = match &header.kid {
                    Some(kid) => set.find(kid)?,
                    None if set.keys.len() == 1 => &set.keys[0],
                    None => return None,
                };
                DecodingKey::from_jwk(jwk).ok()
            }
        }
    }
}

/// The `iss` of a token, read before its signature is checked, to choose
/// the key that checks it.
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    v.get("iss")?.as_str().map(str::to_string)
}

fn caller_of(claims: &Claims, own: bool) -> Caller {
    let grants = claims
        .access
        .iter()
        .filter(|a| a.is_repository())
        .map(|a| Grant {
            repos: a.name.clone(),
            glob: false,
            actions: a.berth_actions(),
        })
        .collect();
    Caller {
        who: match claims.sub.is_empty() {
            true => Identity::Anonymous,
            false => Identity::User(claims.sub.clone()),
        },
        proof: Proof::Token { own },
        groups: Vec::new(),
        only: Some(grants),
    }
}
