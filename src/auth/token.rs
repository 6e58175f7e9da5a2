//! Bearer tokens as the Docker/OCI token protocol has them: the `[auth.token]`
//! settings, the claims, and the issuing side. A token is a JWT signed
//! RS256 or ES256, with the signing certificate in its `x5c` header (and
//! its libtrust key ID as `kid`), so CNCF Distribution's `auth.token`
//! (`rootcertbundle` = that certificate) and Berth verify it alike.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::keys;
use super::scope::ResourceActions;
use crate::clock::{rfc3339, unix_now};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// The audience of the tokens, and `service` of the challenge
    /// (Distribution's `auth.token.service`).
    pub service: String,
    /// The `iss` claim of issued tokens (Distribution's `auth.token.issuer`).
    pub issuer: String,
    /// PEM private key signing tokens: RSA (RS256) or EC P-256 (ES256).
    /// Empty = Berth issues no tokens (it may still accept `trusted` ones).
    pub key: String,
    /// PEM certificate of that key, sent in each token's `x5c` header:
    /// what other registries trust (Distribution's `rootcertbundle`).
    pub cert: String,
    /// How long an issued token is valid, seconds.
    pub expiry_secs: u64,
    /// Where clients are sent for tokens (`realm` of the challenge).
    /// Empty = `<auth.external_url>/token`, this registry's own endpoint;
    /// set it to an external token server's URL when only that one issues.
    pub realm: String,
    /// Other token issuers whose tokens are accepted as they are.
    pub trusted: Vec<TrustedIssuer>,
}

/// A token server whose tokens Berth accepts (Harbor, GitLab, docker_auth):
/// its `iss`, and its certificate (a CA is fine: the token's `x5c` leaf
/// must then be signed by it) or its JWKS document, one of the two.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustedIssuer {
    pub issuer: String,
    /// PEM file with the issuer's certificate(s).
    pub cert: String,
    /// JSON Web Key Set file (keys chosen by the token's `kid`).
    pub jwks: String,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            service: "berth".into(),
            issuer: "berth".into(),
            key: String::new(),
            cert: String::new(),
            expiry_secs: 300,
            realm: String::new(),
            trusted: Vec::new(),
        }
    }
}

impl TokenConfig {
    /// Bearer tokens are on: issued here, or accepted from elsewhere.
    pub fn on(&self) -> bool {
        !self.key.is_empty() || !self.trusted.is_empty()
    }

    pub fn check(&self) -> Result<(), String> {
        if self.key.is_empty() != self.cert.is_empty() {
            return Err("auth.token.key and auth.token.cert go together".into());
        }
        if self.on() && self.service.is_empty() {
            return Err("auth.token.service must not be empty".into());
        }
        if !self.key.is_empty() && self.issuer.is_empty() {
            return Err("auth.token.issuer must not be empty".into());
        }
        if self.key.is_empty() && !self.trusted.is_empty() && self.realm.is_empty() {
            return Err(
                "auth.token.realm must name the token server when Berth issues no tokens".into(),
            );
        }
        if !self.key.is_empty() && self.expiry_secs == 0 {
            return Err("auth.token.expiry_secs must be at least 1".into());
        }
        for t in &self.trusted {
            if t.issuer.is_empty() || t.cert.is_empty() == t.jwks.is_empty() {
                return Err(format!(
                    "auth.token.trusted: each entry needs issuer and one of cert or jwks ({t:?})"
                ));
            }
        }
        Ok(())
    }
}

/// The claims of a token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    /// A string, or a list of them.
    pub aud: serde_json::Value,
    pub exp: u64,
    #[serde(default)]
    pub nbf: u64,
    #[serde(default)]
    pub iat: u64,
    #[serde(default)]
    pub jti: String,
    #[serde(default)]
    pub access: Vec<ResourceActions>,
}

/// A token handed out.
pub struct Issued {
    pub token: String,
    pub expires_in: u64,
    /// RFC 3339, UTC.
    pub issued_at: String,
}

/// Signs tokens with the configured key.
pub struct Signer {
    key: EncodingKey,
    header: Header,
    pub alg: Algorithm,
    issuer: String,
    service: String,
    expiry_secs: u64,
    /// The certificates of `cert`, DER: the `x5c` chain, and the key that
    /// checks this signer's tokens.
    pub chain: Vec<Vec<u8>>,
}

impl Signer {
    pub fn load(cfg: &TokenConfig) -> Result<Signer, String> {
        let read = |p: &str| std::fs::read(p).map_err(|e| format!("{p}: {e}"));
        let key = keys::signing_key(&read(&cfg.key)?).map_err(|e| format!("{}: {e}", cfg.key))?;
        let chain = keys::pem_blocks(&read(&cfg.cert)?, "CERTIFICATE");
        let leaf = chain
            .first()
            .ok_or_else(|| format!("{}: no CERTIFICATE in it", cfg.cert))?;
        let mut header = Header::new(key.alg);
        header.typ = Some("JWT".into());
        header.kid = Some(keys::key_id(leaf)?);
        header.x5c = Some(
            chain
                .iter()
                .map(|c| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, c))
                .collect(),
        );
        let signer = Signer {
            key: key.key,
            header,
            alg: key.alg,
            issuer: cfg.issuer.clone(),
            service: cfg.service.clone(),
            expiry_secs: cfg.expiry_secs,
            chain: chain.clone(),
        };
        // A key that does not match its certificate signs tokens nobody
        // accepts: refuse to start instead.
        let (public, alg) = keys::cert_public_key(leaf)?;
        if alg != signer.alg {
            return Err(format!(
                "{} holds a {:?} key but {} an {:?} one",
                cfg.key, signer.alg, cfg.cert, alg
            ));
        }
        let probe = signer.issue("probe", Vec::new()).token;
        let mut v = jsonwebtoken::Validation::new(alg);
        v.set_audience(&[&cfg.service]);
        jsonwebtoken::decode::<Claims>(&probe, &public, &v)
            .map_err(|_| format!("{} is not the key of the certificate {}", cfg.key, cfg.cert))?;
        Ok(signer)
    }

    /// A token for `subject` (empty: anonymous) granting `access`.
    pub fn issue(&self, subject: &str, access: Vec<ResourceActions>) -> Issued {
        let now = unix_now();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_string(),
            aud: serde_json::Value::String(self.service.clone()),
            exp: now + self.expiry_secs,
            nbf: now.saturating_sub(1),
            iat: now,
            jti: crate_random_id(),
            access,
        };
        let token =
            jsonwebtoken::encode(&self.header, &claims, &self.key).expect("a loaded key signs");
        Issued {
            token,
            expires_in: self.expiry_secs,
            issued_at: rfc3339(now),
        }
    }
}

fn crate_random_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
