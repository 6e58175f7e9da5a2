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
/// protocols (h2, http/1.1) when it binds.
pub fn server_config(cert: &str, key: &str) -> Result<rustls::ServerConfig, String> {
    let resolver = ReloadingCert::open(cert.into(), key.into())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    Ok(cfg)
}
