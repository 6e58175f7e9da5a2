//! The key material of tokens: a PEM signing key (RSA or EC P-256), the
//! certificate that vouches for it, the public key a certificate holds, and
//! the libtrust key ID Docker's token tools name keys by.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sha2::{Digest, Sha256};

/// A private key that signs tokens, and its algorithm.
pub struct SigningKey {
    pub key: EncodingKey,
    pub alg: Algorithm,
}

/// Read a PEM private key: RSA (PKCS#1 or PKCS#8) signs RS256, EC P-256
/// (SEC1 as `openssl ecparam -genkey` writes it, or PKCS#8) ES256.
pub fn signing_key(pem: &[u8]) -> Result<SigningKey, String> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("BEGIN EC PRIVATE KEY") {
        let der = pem_blocks(pem, "EC PRIVATE KEY")
            .into_iter()
            .next()
            .ok_or("no EC PRIVATE KEY block")?;
        return Ok(SigningKey {
            key: EncodingKey::from_ec_der(&sec1_to_pkcs8(&der)),
            alg: Algorithm::ES256,
        });
    }
    if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
        return Ok(SigningKey {
            key,
            alg: Algorithm::RS256,
        });
    }
    if let Ok(key) = EncodingKey::from_ec_pem(pem) {
        return Ok(SigningKey {
            key,
            alg: Algorithm::ES256,
        });
    }
    Err("not an RSA or EC P-256 private key in PEM".into())
}

/// The DER bodies of a PEM file's blocks labelled `label`.
pub fn pem_blocks(pem: &[u8], label: &str) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(pem);
    let (begin, end) = (
        format!("-----BEGIN {label}-----"),
        format!("-----END {label}-----"),
    );
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(i) = rest.find(&begin) {
        let body = &rest[i + begin.len()..];
        let Some(j) = body.find(&end) else { break };
        let b64: String = body[..j].chars().filter(|c| !c.is_whitespace()).collect();
        if let Ok(der) = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64) {
            out.push(der);
        }
        rest = &body[j..];
    }
    out
}

/// The public key a DER certificate holds, for checking signatures.
pub fn cert_public_key(der: &[u8]) -> Result<(DecodingKey, Algorithm), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let spki = cert.public_key();
    let bits = &spki.subject_public_key.data;
    match spki.algorithm.algorithm.to_id_string().as_str() {
        // rsaEncryption: the bit string is PKCS#1 RSAPublicKey
        "1.2.840.113549.1.1.1" => Ok((DecodingKey::from_rsa_der(bits), Algorithm::RS256)),
        // id-ecPublicKey: the bit string is the curve point
        "1.2.840.10045.2.1" => Ok((DecodingKey::from_ec_der(bits), Algorithm::ES256)),
        other => Err(format!(
            "certificate key algorithm {other} is not RSA or EC"
        )),
    }
}

/// Is `child` (DER) signed by the key of `issuer` (DER)?
pub fn issued_by(child: &[u8], issuer: &[u8]) -> bool {
    let (Ok((_, c)), Ok((_, i))) = (
        x509_parser::parse_x509_certificate(child),
        x509_parser::parse_x509_certificate(issuer),
    ) else {
        return false;
    };
    c.verify_signature(Some(i.public_key())).is_ok() && c.validity().is_valid()
}

/// The libtrust key ID of a certificate's public key: the first 240 bits
/// of the sha256 of its DER SubjectPublicKeyInfo, base32, in groups of 4.
pub fn key_id(cert_der: &[u8]) -> Result<String, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| e.to_string())?;
    let digest = Sha256::digest(cert.public_key().raw);
    let b32 = base32(&digest[..30]);
    let groups: Vec<&str> = (0..b32.len())
        .step_by(4)
        .map(|i| &b32[i..(i + 4).min(b32.len())])
        .collect();
    Ok(groups.join(":"))
}

/// RFC 4648 base32 without padding (the input here is a multiple of 5).
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Wrap a SEC1 P-256 private key as PKCS#8 (what ring reads):
/// SEQUENCE { 0, SEQUENCE { id-ecPublicKey, prime256v1 }, OCTET STRING sec1 }.
fn sec1_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    const ALGORITHM: &[u8] = &[
        0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
        0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(ALGORITHM);
    body.push(0x04);
    der_length(&mut body, sec1.len());
    body.extend_from_slice(sec1);
    let mut out = vec![0x30];
    der_length(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn der_length(out: &mut Vec<u8>, n: usize) {
    match n {
        0..=127 => out.push(n as u8),
        128..=255 => out.extend_from_slice(&[0x81, n as u8]),
        _ => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"fooba"), "MZXW6YTB");
    }
}
