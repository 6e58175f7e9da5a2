//! Export sources: a stopped server's data directory, or a running server
//! read through the OCI distribution API.

use std::io::Read;

use super::export::Source;
use super::{BundleError, Result};
use crate::oci::{Descriptor, Digest, Reference};
use crate::store::Store;

/// A data directory (opened exclusively: the server must be stopped).
pub struct StoreSource<'a>(pub &'a Store);

impl Source for StoreSource<'_> {
    fn repositories(&self) -> Result<Vec<String>> {
        Ok(self.0.repositories(None, usize::MAX)?)
    }

    fn tags(&self, repo: &str) -> Result<Vec<String>> {
        Ok(self.0.tags(repo, None, usize::MAX)?)
    }

    fn manifest(&self, repo: &str, r: &Reference) -> Result<Option<(Digest, String, Vec<u8>)>> {
        Ok(self
            .0
            .manifest(repo, r)?
            .map(|m| (m.digest, m.summary.media_type, m.bytes)))
    }

    fn blob(&self, repo: &str, d: &Digest) -> Result<Box<dyn Read + '_>> {
        let info = self
            .0
            .blob(repo, d)?
            .ok_or_else(|| BundleError::Bad(format!("{repo} lacks blob {d} (run berth verify)")))?;
        Ok(Box::new(self.0.open_blob(d, &info)?))
    }

    fn referrers(&self, repo: &str, d: &Digest) -> Result<Vec<Descriptor>> {
        Ok(self.0.referrers(repo, d)?)
    }
}

/// A running registry (Berth or any other), anonymous or with Basic auth.
pub struct UrlSource {
    base: String,
    agent: ureq::Agent,
    auth: Option<String>,
}

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

impl UrlSource {
    pub fn new(base: &str, user: Option<&str>) -> UrlSource {
        use base64::Engine as _;
        UrlSource {
            base: base.trim_end_matches('/').to_string(),
            agent: ureq::AgentBuilder::new().build(),
            auth: user.map(|u| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(u)
                )
            }),
        }
    }

    fn get(&self, path: &str, accept: Option<&str>) -> Result<Option<ureq::Response>> {
        let mut req = self.agent.get(&format!("{}{path}", self.base));
        if let Some(a) = &self.auth {
            req = req.set("Authorization", a);
        }
        if let Some(a) = accept {
            req = req.set("Accept", a);
        }
        match req.call() {
            Ok(r) => Ok(Some(r)),
            Err(ureq::Error::Status(404, _)) => Ok(None),
            Err(ureq::Error::Status(code, r)) => Err(BundleError::Registry(format!(
                "GET {path}: {code} {}",
                r.into_string().unwrap_or_default()
            ))),
            Err(e) => Err(BundleError::Registry(format!("GET {path}: {e}"))),
        }
    }

    fn json(&self, path: &str) -> Result<Option<serde_json::Value>> {
        match self.get(path, None)? {
            None => Ok(None),
            Some(r) => parse_json(path, r).map(Some),
        }
    }

    /// Follow `Link: <...>; rel="next"` pages of a list endpoint.
    fn pages(&self, first: &str, key: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut next = Some(first.to_string());
        while let Some(path) = next.take() {
            let Some(r) = self.get(&path, None)? else {
                break;
            };
            next = r
                .header("Link")
                .and_then(|l| l.split_once('<'))
                .and_then(|(_, rest)| rest.split_once('>'))
                .map(|(p, _)| p.to_string());
            let v = parse_json(&path, r)?;
            out.extend(
                v[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(String::from)),
            );
        }
        Ok(out)
    }
}

fn parse_json(path: &str, r: ureq::Response) -> Result<serde_json::Value> {
    serde_json::from_reader(r.into_reader().take(64 << 20))
        .map_err(|e| BundleError::Registry(format!("GET {path}: {e}")))
}

impl Source for UrlSource {
    fn repositories(&self) -> Result<Vec<String>> {
        self.pages("/v2/_catalog?n=1000", "repositories")
    }

    fn tags(&self, repo: &str) -> Result<Vec<String>> {
        self.pages(&format!("/v2/{repo}/tags/list?n=1000"), "tags")
    }

    fn manifest(&self, repo: &str, r: &Reference) -> Result<Option<(Digest, String, Vec<u8>)>> {
        let reference = match r {
            Reference::Tag(t) => t.clone(),
            Reference::Digest(d) => d.to_string(),
        };
        let path = format!("/v2/{repo}/manifests/{reference}");
        let Some(resp) = self.get(&path, Some(ACCEPT))? else {
            return Ok(None);
        };
        let media_type = crate::oci::media::essence(resp.content_type()).to_string();
        let mut bytes = Vec::new();
        resp.into_reader()
            .take(crate::config::Limits::default().max_manifest_bytes as u64 + 1)
            .read_to_end(&mut bytes)?;
        let alg = match r {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => crate::oci::Algorithm::Sha256,
        };
        let digest = crate::verify::digest_bytes(alg, &bytes);
        if let Reference::Digest(want) = r {
            if &digest != want {
                return Err(BundleError::Registry(format!(
                    "{path}: body hashes to {digest}"
                )));
            }
        }
        Ok(Some((digest, media_type, bytes)))
    }

    fn blob(&self, repo: &str, d: &Digest) -> Result<Box<dyn Read + '_>> {
        let path = format!("/v2/{repo}/blobs/{d}");
        match self.get(&path, None)? {
            Some(r) => Ok(r.into_reader()),
            None => Err(BundleError::Registry(format!("{path}: not found"))),
        }
    }

    fn referrers(&self, repo: &str, d: &Digest) -> Result<Vec<Descriptor>> {
        let Some(v) = self.json(&format!("/v2/{repo}/referrers/{d}"))? else {
            return Ok(Vec::new());
        };
        Ok(serde_json::from_value(v["manifests"].clone()).unwrap_or_default())
    }
}
