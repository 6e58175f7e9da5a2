//! TLS with rustls: certificate and key files, reloaded without a restart
//! (checked at most once a second on new handshakes; a bad new pair keeps
//! the old one in service and is logged).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Option<SystemTime>)>,
    checked: Mutex<Instant>,
}

fn mtime(p: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn load(cert: &PathBuf, key: &PathBuf) -> Result<CertifiedKey, String> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).map_err(|e| format!("{}: {e}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let key_der = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).map_err(|e| format!("{}: {e}", key.display()))?,
    ))
    .map_err(|e| format!("{}: {e}", key.display()))?
    .ok_or_else(|| format!("{}: no private key", key.display()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    Ok(CertifiedKey::new(certs, signing))
}

impl ReloadingCert {
    pub fn open(cert: PathBuf, key: PathBuf) -> Result<ReloadingCert, String> {
        let ck = load(&cert, &key)?;
        let m = mtime(&cert).max(mtime(&key));
        Ok(ReloadingCert {
            cert,
            key,
            current: RwLock::new((Arc::new(ck), m)),
            checked: Mutex::new(Instant::now()),
        })
    }

    fn maybe_reload(&self) {
        {
            let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            if checked.elapsed() < Duration::from_secs(1) {
                return;
            }
            *checked = Instant::now();
        }
        let m = mtime(&self.cert).max(mtime(&self.key));
        if m == self.current.read().unwrap_or_else(|p| p.into_inner()).1 {
            return;
        }
        match load(&self.cert, &self.key) {
            Ok(ck) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = (Arc::new(ck), m);
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "new TLS certificate not loaded; the old one stays in service")
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.maybe_reload();
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .0
                .clone(),
        )
    }
}

/// A rustls server configuration for `cert`/`key`; actix adds the ALPN
/// protocols (h2, http/1.1) when it binds. With `client_ca`, clients may
/// present a certificate that CA issued (those without one still connect).
pub fn server_config(
    cert: &str,
    key: &str,
    client_ca: &str,
) -> Result<rustls::ServerConfig, String> {
    let resolver = ReloadingCert::open(cert.into(), key.into())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if client_ca.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let file = std::fs::File::open(client_ca).map_err(|e| format!("{client_ca}: {e}"))?;
        for c in rustls_pemfile::certs(&mut std::io::BufReader::new(file)) {
            let c = c.map_err(|e| format!("{client_ca}: {e}"))?;
            roots.add(c).map_err(|e| format!("{client_ca}: {e}"))?;
        }
        if roots.is_empty() {
            return Err(format!("{client_ca}: no CA certificate"));
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("{client_ca}: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    };
    Ok(builder.with_cert_resolver(Arc::new(resolver)))
}

/// The user a verified client certificate names (its subject's CN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertUser(pub String);

/// Called by actix for each new connection: remember whom a client
/// certificate (already verified by rustls against `tls.client_ca`) names.
pub fn on_connect(conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    let Some(tls) = conn.downcast_ref::<Tls>() else {
        return;
    };
    let (_, session) = tls.get_ref();
    if let Some(cn) = session
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| common_name(c.as_ref()))
    {
        ext.insert(ClientCertUser(cn));
    }
}

fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().filter(|s| !s.is_empty()).map(String::from)
}
