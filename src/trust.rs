//! The certificate authorities a TLS client of Berth's trusts (LDAP,
//! upstream registries, PostgreSQL): read from an operator's PEM file
//! (`ca_file`), one reading for all of them.

use std::sync::Arc;

/// Add every certificate of the PEM file `ca_file` to `roots`; a file with
/// none is an error (a wrong path would otherwise trust nothing, silently).
pub fn add_pem_file(roots: &mut rustls::RootCertStore, ca_file: &str) -> Result<(), String> {
    let pem = std::fs::read(ca_file).map_err(|e| format!("{ca_file}: {e}"))?;
    let before = roots.len();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("{ca_file}: {e}"))?;
        roots.add(cert).map_err(|e| format!("{ca_file}: {e}"))?;
    }
    if roots.len() == before {
        return Err(format!("{ca_file}: no CERTIFICATE in it"));
    }
    Ok(())
}

/// A client configuration (ring, the safe protocol versions) trusting
/// `roots`, with no client certificate.
pub fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, String> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

/// A client configuration trusting the CA certificates of `ca_file` alone.
pub fn trusting(ca_file: &str) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    add_pem_file(&mut roots, ca_file)?;
    client_config(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_a_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "not a certificate\n").unwrap();
        let e = trusting(&f.display().to_string()).unwrap_err();
        assert!(e.contains("no CERTIFICATE"), "{e}");
        assert!(trusting("/nonexistent/ca.pem").is_err());
    }
}
