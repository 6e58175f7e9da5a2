//! Content digests: `algorithm ":" encoded` (OCI image-spec, descriptor.md).

use std::fmt;
use std::str::FromStr;

/// Digest algorithms Berth can compute and verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the registry default.
    Sha256,
    /// SHA-512.
    Sha512,
    /// BLAKE3 (256-bit output), on request (`?digest-algorithm=blake3`).
    Blake3,
}

impl Algorithm {
    /// Every algorithm, in preference order.
    pub const ALL: [Algorithm; 3] = [Algorithm::Sha256, Algorithm::Sha512, Algorithm::Blake3];

    /// The name in a digest string (`sha256`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
            Algorithm::Blake3 => "blake3",
        }
    }

    /// Length of the hex-encoded digest.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 | Algorithm::Blake3 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// The algorithm called `name` in a digest string.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a string is not a usable digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Not `algorithm:encoded`.
    #[error("'{0}' is not a digest (expected algorithm:hex)")]
    Malformed(String),
    /// An algorithm Berth does not compute.
    #[error("digest algorithm '{0}' is not supported (use sha256, sha512 or blake3)")]
    Unsupported(String),
    /// The encoded part is not lowercase hex of the algorithm's length.
    #[error("'{0}' has the wrong length or characters for its algorithm")]
    BadEncoding(String),
}

/// A validated digest of a supported algorithm, with lowercase hex.
///
/// ```
/// use berth::oci::{Algorithm, Digest};
/// let d: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
/// assert_eq!(d.algorithm(), Algorithm::Sha256);
/// assert_eq!(d.to_string(), format!("sha256:{}", "ab".repeat(32)));
/// assert!("sha256:AB".parse::<Digest>().is_err());
/// assert!("md5:0123".parse::<Digest>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// A digest from its parts, checked.
    pub fn new(algorithm: Algorithm, hex: String) -> Result<Digest, DigestError> {
        if hex.len() != algorithm.hex_len()
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::BadEncoding(format!("{algorithm}:{hex}")));
        }
        Ok(Digest { algorithm, hex })
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Its encoded part (lowercase hex).
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

/// The general grammar: `algorithm := component ([+._-] component)*`,
/// `component := [a-z0-9]+`, `encoded := [a-zA-Z0-9=_-]+`.
fn fits_grammar(algorithm: &str, encoded: &str) -> bool {
    let alg_ok = !algorithm.is_empty()
        && algorithm.split(['+', '.', '_', '-']).all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    let enc_ok = !encoded.is_empty()
        && encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'));
    alg_ok && enc_ok
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let (algorithm, encoded) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Malformed(s.to_string()))?;
        if !fits_grammar(algorithm, encoded) {
            return Err(DigestError::Malformed(s.to_string()));
        }
        let alg = Algorithm::from_name(algorithm)
            .ok_or_else(|| DigestError::Unsupported(algorithm.to_string()))?;
        Digest::new(alg, encoded.to_string())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_algorithms() {
        let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        let d: Digest = format!("sha512:{}", "0".repeat(128)).parse().unwrap();
        assert_eq!(d.to_string(), format!("sha512:{}", "0".repeat(128)));
        assert!(format!("blake3:{}", "f".repeat(64))
            .parse::<Digest>()
            .is_ok());
    }

    #[test]
    fn rejects_bad_digests_by_kind() {
        assert!(matches!(
            "sha256".parse::<Digest>(),
            Err(DigestError::Malformed(_))
        ));
        assert!(matches!(
            "SHA256:abc".parse::<Digest>(),
            Err(DigestError::Malformed(_))
        ));
        assert!(matches!(
            "md5:abcd".parse::<Digest>(),
            Err(DigestError::Unsupported(_))
        ));
        assert!(matches!(
            "sha256:totallywrong".parse::<Digest>(),
            Err(DigestError::BadEncoding(_))
        ));
        assert!(matches!(
            format!("sha256:{}", "A".repeat(64)).parse::<Digest>(),
            Err(DigestError::BadEncoding(_))
        ));
        assert!(matches!(
            "sha256:".parse::<Digest>(),
            Err(DigestError::Malformed(_))
        ));
    }
}
