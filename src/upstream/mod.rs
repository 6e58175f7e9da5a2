//! A client of an upstream registry, the source a mirror pulls from:
//! manifests, blobs, tags and the catalog over the distribution API, with
//! HTTP Basic or the token flow (`auth`), and the TLS trust the upstream is
//! configured with (`ca_file`, `tls_verify`). Blocking (ureq): callers run
//! it off the async workers.

pub mod auth;

use std::io::Read;
use std::time::Duration;

use crate::config::UpstreamConfig;
use crate::oci::{Descriptor, Digest};

/// Every manifest type a pull may get.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Why a request to the upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No answer: refused, reset, timed out, name or TLS failure.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// An answer other than success or 404.
    #[error("answered {0}: {1}")]
    Status(u16, String),
    /// An answer that is not what the protocol says.
    #[error("{0}")]
    Protocol(String),
}

impl UpstreamError {
    /// The upstream is down or failing (serve what is cached), rather than
    /// refusing this request.
    pub fn is_outage(&self) -> bool {
        match self {
            UpstreamError::Unreachable(_) => true,
            UpstreamError::Status(code, _) => *code >= 500 || *code == 429,
            UpstreamError::Protocol(_) => false,
        }
    }
}

/// What a manifest HEAD says.
#[derive(Clone, Debug)]
pub struct Head {
    pub digest: Option<Digest>,
    pub media_type: String,
}

/// A manifest as the upstream serves it.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// `Docker-Content-Digest`, when sent.
    pub digest: Option<Digest>,
}

/// A blob body arriving.
pub struct Blob {
    /// `Content-Length`, when sent.
    pub size: Option<u64>,
    pub body: Box<dyn Read + Send>,
}

pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// `Basic ...`, when credentials are configured.
    basic: Option<String>,
    tokens: auth::Tokens,
}

impl Client {
    /// A client for `cfg`; reads its password and CA files.
    pub fn new(cfg: &UpstreamConfig) -> Result<Client, String> {
        let login = match cfg.username.is_empty() {
            true => None,
            false => {
                let pw = match cfg.password_file.is_empty() {
                    true => String::new(),
                    false => std::fs::read_to_string(&cfg.password_file)
                        .map_err(|e| format!("password_file {}: {e}", cfg.password_file))?
                        .trim_end_matches(['\r', '\n'])
                        .to_string(),
                };
                Some(format!("{}:{pw}", cfg.username))
            }
        };
        Client::with_login(cfg, login.as_deref())
    }

    /// A client for `cfg` logging in as `user:password` (if given) instead
    /// of the configured username and password file.
    pub fn with_login(cfg: &UpstreamConfig, login: Option<&str>) -> Result<Client, String> {
        use base64::Engine as _;
        let basic = login.map(|pair| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        });
        let mut agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            // between bytes of an answer: a stalled upstream is an outage
            .timeout_read(Duration::from_secs(60))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")));
        if cfg.url.starts_with("https://") {
            agent = tls(agent, cfg)?;
        }
        Ok(Client {
            base: cfg.url.trim_end_matches('/').to_string(),
            agent: agent.build(),
            basic,
            tokens: auth::Tokens::default(),
        })
    }

    /// The `Authorization: Basic ...` value of the configured login.
    pub fn basic(&self) -> Option<&str> {
        self.basic.as_deref()
    }

    /// `HEAD /v2/<repo>/manifests/<reference>`; None when the upstream does
    /// not have it.
    pub fn head_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Head>, UpstreamError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let Some(r) = self.send("HEAD", &path, &pull_scope(repo), Some(ACCEPT))? else {
            return Ok(None);
        };
        Ok(Some(Head {
            digest: r
                .header("Docker-Content-Digest")
                .and_then(|d| d.parse().ok()),
            media_type: media_type(&r),
        }))
    }

    /// `GET /v2/<repo>/manifests/<reference>`, refusing more than `max`
    /// bytes; None when the upstream does not have it.
    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        max: u64,
    ) -> Result<Option<Manifest>, UpstreamError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let Some(r) = self.send("GET", &path, &pull_scope(repo), Some(ACCEPT))? else {
            return Ok(None);
        };
        let digest = r
            .header("Docker-Content-Digest")
            .and_then(|d| d.parse().ok());
        let media_type = media_type(&r);
        let mut bytes = Vec::new();
        r.into_reader()
            .take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| UpstreamError::Unreachable(format!("GET {path}: {e}")))?;
        if bytes.len() as u64 > max {
            return Err(UpstreamError::Protocol(format!(
                "GET {path}: manifest larger than {max} bytes"
            )));
        }
        Ok(Some(Manifest {
            bytes,
            media_type,
            digest,
        }))
    }

    /// `GET /v2/<repo>/blobs/<digest>`, the body as it arrives; None when
    /// the upstream does not have it.
    pub fn get_blob(&self, repo: &str, digest: &Digest) -> Result<Option<Blob>, UpstreamError> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let Some(r) = self.send("GET", &path, &pull_scope(repo), None)? else {
            return Ok(None);
        };
        let size = r.header("Content-Length").and_then(|l| l.parse().ok());
        Ok(Some(Blob {
            size,
            body: Box::new(r.into_reader()),
        }))
    }

    /// `HEAD /v2/<repo>/blobs/<digest>`: its size; None when the upstream
    /// does not have it.
    pub fn head_blob(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, UpstreamError> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let Some(r) = self.send("HEAD", &path, &pull_scope(repo), None)? else {
            return Ok(None);
        };
        r.header("Content-Length")
            .and_then(|l| l.parse().ok())
            .map(Some)
            .ok_or_else(|| UpstreamError::Protocol(format!("HEAD {path}: no Content-Length")))
    }

    /// Every tag of `repo` (following `Link` pages); empty when the
    /// upstream does not know the repository.
    pub fn tags(&self, repo: &str) -> Result<Vec<String>, UpstreamError> {
        self.pages(&format!("/v2/{repo}/tags/list"), "tags", &pull_scope(repo))
    }

    /// The referrers of `digest` in `repo` (the referrers API's index);
    /// empty when the upstream has none or does not offer the API.
    pub fn referrers(&self, repo: &str, digest: &Digest) -> Result<Vec<Descriptor>, UpstreamError> {
        let path = format!("/v2/{repo}/referrers/{digest}");
        let Some(r) = self.send("GET", &path, &pull_scope(repo), None)? else {
            return Ok(Vec::new());
        };
        let v: serde_json::Value = serde_json::from_reader(r.into_reader().take(16 << 20))
            .map_err(|e| UpstreamError::Protocol(format!("GET {path}: {e}")))?;
        Ok(serde_json::from_value(v["manifests"].clone()).unwrap_or_default())
    }

    /// Every repository the upstream lists (`/v2/_catalog`, if it allows it).
    pub fn catalog(&self) -> Result<Vec<String>, UpstreamError> {
        self.pages("/v2/_catalog", "repositories", "registry:catalog:*")
    }

    fn pages(&self, first: &str, key: &str, scope: &str) -> Result<Vec<String>, UpstreamError> {
        let mut out = Vec::new();
        let mut next = Some(first.to_string());
        // a bound, against an upstream whose Link never ends
        for _ in 0..10_000 {
            let Some(path) = next.take() else {
                break;
            };
            let Some(r) = self.send("GET", &path, scope, None)? else {
                break;
            };
            next = r
                .header("Link")
                .and_then(|l| l.split_once('<'))
                .and_then(|(_, rest)| rest.split_once('>'))
                .map(|(p, _)| p.to_string());
            let v: serde_json::Value = serde_json::from_reader(r.into_reader())
                .map_err(|e| UpstreamError::Protocol(format!("GET {path}: {e}")))?;
            out.extend(
                v[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(str::to_string)),
            );
        }
        Ok(out)
    }

    /// Send a request, logging in as the upstream asks; None on 404.
    // ureq's error carries the whole response (for its status and headers)
    #[allow(clippy::result_large_err)]
    fn send(
        &self,
        method: &str,
        path: &str,
        scope: &str,
        accept: Option<&str>,
    ) -> Result<Option<ureq::Response>, UpstreamError> {
        let url = format!("{}{path}", self.base);
        let request = |authorization: Option<&str>| {
            let mut req = self.agent.request(method, &url);
            if let Some(a) = accept {
                req = req.set("Accept", a);
            }
            if let Some(a) = authorization {
                req = req.set("Authorization", a);
            }
            req.call()
        };
        let bearer = self.tokens.get(scope).map(|t| format!("Bearer {t}"));
        let first = request(bearer.as_deref().or(self.basic.as_deref()));
        let answer = match first {
            Err(ureq::Error::Status(401, r)) => {
                let Some(c) = r.header("WWW-Authenticate").and_then(auth::challenge) else {
                    return Err(UpstreamError::Status(401, "unauthorized".into()));
                };
                if bearer.is_some() {
                    self.tokens.drop_scope(scope);
                }
                let token = self.token(&c, scope)?;
                request(Some(&format!("Bearer {token}")))
            }
            other => other,
        };
        match answer {
            Ok(r) => Ok(Some(r)),
            Err(ureq::Error::Status(404, _)) => Ok(None),
            Err(ureq::Error::Status(code, r)) => {
                let body: String = r
                    .into_string()
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect();
                Err(UpstreamError::Status(
                    code,
                    format!("{method} {path}: {body}"),
                ))
            }
            Err(e) => Err(UpstreamError::Unreachable(format!("{method} {path}: {e}"))),
        }
    }

    /// A token for `scope` from the token server `c` names.
    fn token(&self, c: &auth::Challenge, scope: &str) -> Result<String, UpstreamError> {
        let scope = c.scope.as_deref().unwrap_or(scope);
        let mut req = self.agent.get(&c.realm).query("scope", scope);
        if let Some(s) = &c.service {
            req = req.query("service", s);
        }
        if let Some(b) = &self.basic {
            req = req.set("Authorization", b);
        }
        let r = req.call().map_err(|e| match e {
            ureq::Error::Status(code, _) => {
                UpstreamError::Status(code, format!("token server {}: login refused", c.realm))
            }
            e => UpstreamError::Unreachable(format!("token server {}: {e}", c.realm)),
        })?;
        let mut body = Vec::new();
        r.into_reader()
            .take(1 << 20)
            .read_to_end(&mut body)
            .map_err(|e| UpstreamError::Unreachable(format!("token server: {e}")))?;
        let (token, expires_in) = auth::parse_token(&body)
            .ok_or_else(|| UpstreamError::Protocol("token server answered no token".into()))?;
        self.tokens.put(scope, token.clone(), expires_in);
        Ok(token)
    }
}

fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

fn media_type(r: &ureq::Response) -> String {
    crate::oci::media::essence(r.header("Content-Type").unwrap_or("")).to_string()
}

/// HTTPS with the system's web roots, the CA file, or no verification.
#[cfg(feature = "tls")]
fn tls(agent: ureq::AgentBuilder, cfg: &UpstreamConfig) -> Result<ureq::AgentBuilder, String> {
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = if !cfg.tls_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if !cfg.ca_file.is_empty() {
            crate::trust::add_pem_file(&mut roots, &cfg.ca_file)
                .map_err(|e| format!("ca_file {e}"))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(agent.tls_config(Arc::new(config)))
}

#[cfg(not(feature = "tls"))]
fn tls(_: ureq::AgentBuilder, cfg: &UpstreamConfig) -> Result<ureq::AgentBuilder, String> {
    Err(format!(
        "upstream {}: https needs the \"tls\" build feature",
        cfg.url
    ))
}

/// `tls_verify = false`: any certificate is accepted (an operator's choice
/// for a lab; the digests still verify every byte).
#[cfg(feature = "tls")]
#[derive(Debug)]
struct NoVerify;

#[cfg(feature = "tls")]
impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
