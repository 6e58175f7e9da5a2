//! The error codes a registry answers with: the register of the
//! distribution spec (end of its "Error Codes" section) and three that CNCF
//! Distribution adds and clients understand, each with the HTTP status it
//! goes with. Every error Berth sends names one of these; nothing else
//! spells a code.
//!
//! A few answers keep a code but need another status than its own (a body
//! over a size limit is `SIZE_INVALID` with 413, a stalled body 408, a
//! method an endpoint lacks `UNSUPPORTED` with 405, a full disk `UNKNOWN`
//! with 507); the HTTP layer says so where it answers them.
//!
//! ```
//! use berth::oci::Code;
//! assert_eq!(Code::ManifestBlobUnknown.as_str(), "MANIFEST_BLOB_UNKNOWN");
//! assert_eq!(Code::ManifestBlobUnknown.status(), 400);
//! assert_eq!(Code::parse("DENIED"), Some(Code::Denied));
//! ```

/// An error code of the distribution spec (or Distribution's additions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// The blob is unknown to the registry (404).
    BlobUnknown,
    /// The upload failed: a broken body, a session taken over (400).
    BlobUploadInvalid,
    /// The upload session is unknown: finished, cancelled, expired (404).
    BlobUploadUnknown,
    /// The content does not match its digest, or a digest is malformed (400).
    DigestInvalid,
    /// A manifest references a blob or manifest the repository lacks (400).
    ManifestBlobUnknown,
    /// The manifest is malformed or refused (400).
    ManifestInvalid,
    /// The manifest is unknown to the repository (404).
    ManifestUnknown,
    /// The repository name is invalid (400).
    NameInvalid,
    /// The repository is unknown (404).
    NameUnknown,
    /// A length does not match the content (400).
    SizeInvalid,
    /// Credentials are missing or wrong (401).
    Unauthorized,
    /// The caller may not do this (403).
    Denied,
    /// The operation or a parameter is unsupported (400).
    Unsupported,
    /// Too many requests from this client, or for the registry (429).
    TooManyRequests,
    /// Distribution: a range or chunk offset that cannot be satisfied (416).
    RangeInvalid,
    /// Distribution: the registry cannot take this now; retry (503).
    Unavailable,
    /// Distribution: a fault of the registry (500).
    Unknown,
}

impl Code {
    /// Every code, for tables and tests.
    pub const ALL: [Code; 17] = [
        Code::BlobUnknown,
        Code::BlobUploadInvalid,
        Code::BlobUploadUnknown,
        Code::DigestInvalid,
        Code::ManifestBlobUnknown,
        Code::ManifestInvalid,
        Code::ManifestUnknown,
        Code::NameInvalid,
        Code::NameUnknown,
        Code::SizeInvalid,
        Code::Unauthorized,
        Code::Denied,
        Code::Unsupported,
        Code::TooManyRequests,
        Code::RangeInvalid,
        Code::Unavailable,
        Code::Unknown,
    ];

    /// The code as it appears in an error body.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::RangeInvalid => "RANGE_INVALID",
            Code::Unavailable => "UNAVAILABLE",
            Code::Unknown => "UNKNOWN",
        }
    }

    /// The HTTP status the code goes with.
    pub const fn status(self) -> u16 {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown => 404,
            Code::BlobUploadInvalid
            | Code::DigestInvalid
            | Code::ManifestBlobUnknown
            | Code::ManifestInvalid
            | Code::NameInvalid
            | Code::SizeInvalid
            | Code::Unsupported => 400,
            Code::Unauthorized => 401,
            Code::Denied => 403,
            Code::TooManyRequests => 429,
            Code::RangeInvalid => 416,
            Code::Unavailable => 503,
            Code::Unknown => 500,
        }
    }

    /// The code named `s` in an error body.
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert_eq!(Code::parse(c.as_str()), Some(c));
            assert!((400..600).contains(&c.status()));
        }
        assert_eq!(Code::parse("NOPE"), None);
    }
}
