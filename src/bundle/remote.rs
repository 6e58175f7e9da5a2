//! A running registry (Berth or any other) over the OCI distribution API:
//! a source for `berth export --url` and a destination for `berth import
//! --url`. Reads go through the mirror's upstream client (`crate::upstream`:
//! anonymous, Basic, or the Bearer token flow; HTTPS with the web roots);
//! writes (blob uploads, manifest pushes) are sent with Basic auth.

use std::io::Read;

use super::apply::Destination;
use super::export::Source;
use super::{BundleError, Result};
use crate::config::UpstreamConfig;
use crate::oci::{Descriptor, Digest, Reference};
use crate::store::Store;
use crate::upstream::{Client, UpstreamError};

/// A running registry (Berth or any other).
pub struct Remote {
    client: Client,
    base: String,
    agent: ureq::Agent,
}

impl Remote {
    /// The registry at `base`, logging in as `user` (`name:password`).
    pub fn new(base: &str, user: Option<&str>) -> Result<Remote> {
        let base = base.trim_end_matches('/').to_string();
        let client = Client::with_login(&UpstreamConfig::for_url(&base), user)
            .map_err(BundleError::Registry)?;
        Ok(Remote {
            client,
            base,
            agent: ureq::AgentBuilder::new().build(),
        })
    }
}

fn failed_read(e: UpstreamError) -> BundleError {
    BundleError::Registry(e.to_string())
}

impl Source for Remote {
    fn repositories(&self) -> Result<Vec<String>> {
        self.client.catalog().map_err(failed_read)
    }

    fn tags(&self, repo: &str) -> Result<Vec<String>> {
        self.client.tags(repo).map_err(failed_read)
    }

    fn manifest(&self, repo: &str, r: &Reference) -> Result<Option<(Digest, String, Vec<u8>)>> {
        let max = crate::config::Limits::default().max_manifest_bytes as u64;
        let Some(m) = self
            .client
            .get_manifest(repo, &r.to_string(), max)
            .map_err(failed_read)?
        else {
            return Ok(None);
        };
        let alg = match r {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => crate::oci::Algorithm::Sha256,
        };
        let digest = crate::verify::digest_bytes(alg, &m.bytes);
        if let Reference::Digest(want) = r {
            if &digest != want {
                return Err(BundleError::Registry(format!(
                    "{repo}@{want}: body hashes to {digest}"
                )));
            }
        }
        Ok(Some((digest, m.media_type, m.bytes)))
    }

    fn blob(&self, repo: &str, d: &Digest) -> Result<Box<dyn Read + '_>> {
        match self.client.get_blob(repo, d).map_err(failed_read)? {
            Some(b) => Ok(b.body),
            None => Err(BundleError::Registry(format!(
                "/v2/{repo}/blobs/{d}: not found"
            ))),
        }
    }

    fn referrers(&self, repo: &str, d: &Digest) -> Result<Vec<Descriptor>> {
        self.client.referrers(repo, d).map_err(failed_read)
    }
}

impl Remote {
    fn request(&self, method: &str, path_or_url: &str) -> ureq::Request {
        let url = if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        let mut r = self.agent.request(method, &url);
        if let Some(a) = self.client.basic() {
            r = r.set("Authorization", a);
        }
        r
    }

    /// Link `d` into `repo` from wherever the registry holds it (Berth's
    /// automatic mount); false when the registry cannot.
    fn mount(&self, repo: &str, d: &Digest) -> Result<bool> {
        let what = format!("mount {d} into {repo}");
        match self
            .request("POST", &format!("/v2/{repo}/blobs/uploads/?mount={d}"))
            .call()
        {
            Ok(r) if r.status() == 201 => Ok(true),
            Ok(r) => {
                // an upload session was opened instead: close it
                if let Some(loc) = r.header("Location").map(String::from) {
                    let _ = self.request("DELETE", &loc).call();
                }
                Ok(false)
            }
            Err(ureq::Error::Status(..)) => Ok(false),
            Err(e) => Err(failed(&what, e)),
        }
    }
}

fn failed(what: &str, e: ureq::Error) -> BundleError {
    match e {
        ureq::Error::Status(code, r) => BundleError::Registry(format!(
            "{what}: {code} {}",
            r.into_string().unwrap_or_default()
        )),
        e => BundleError::Registry(format!("{what}: {e}")),
    }
}

impl Destination for Remote {
    fn has_blob(&self, repo: &str, d: &Digest) -> Result<bool> {
        match self
            .request("HEAD", &format!("/v2/{repo}/blobs/{d}"))
            .call()
        {
            Ok(_) => Ok(true),
            Err(ureq::Error::Status(404, _)) => self.mount(repo, d),
            Err(e) => Err(failed(&format!("HEAD blob {d}"), e)),
        }
    }

    fn put_blob(&self, repo: &str, d: &Digest, staging: &Store) -> Result<()> {
        if !staging.has_blob(d)? {
            // not in the bundle: the check found it at the destination
            return match self.has_blob(repo, d)? {
                true => Ok(()),
                false => Err(BundleError::Missing(vec![d.to_string()])),
            };
        }
        if self
            .request("HEAD", &format!("/v2/{repo}/blobs/{d}"))
            .call()
            .is_ok()
        {
            return Ok(());
        }
        let what = format!("upload {d} to {repo}");
        let r = self
            .request("POST", &format!("/v2/{repo}/blobs/uploads/"))
            .call()
            .map_err(|e| failed(&what, e))?;
        let loc = r
            .header("Location")
            .ok_or_else(|| BundleError::Registry(format!("{what}: no Location")))?
            .to_string();
        let sep = if loc.contains('?') { '&' } else { '?' };
        let f = staging.open_stored_blob(d)?;
        let len = f.size()?;
        self.request("PUT", &format!("{loc}{sep}digest={d}"))
            .set("Content-Type", "application/octet-stream")
            .set("Content-Length", &len.to_string())
            .send(f)
            .map_err(|e| failed(&what, e))?;
        Ok(())
    }

    fn put_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        media_type: &str,
        bytes: &[u8],
        tags: Vec<String>,
    ) -> Result<Option<Digest>> {
        let put = |reference: &str| {
            self.request("PUT", &format!("/v2/{repo}/manifests/{reference}"))
                .set("Content-Type", media_type)
                .send_bytes(bytes)
                .map_err(|e| failed(&format!("PUT {repo}:{reference}"), e))
        };
        put(&digest.to_string())?;
        for t in &tags {
            put(t)?;
        }
        let Some(t) = tags.first() else {
            return Ok(None);
        };
        let r = self
            .request("HEAD", &format!("/v2/{repo}/manifests/{t}"))
            .set("Accept", crate::upstream::ACCEPT)
            .call()
            .map_err(|e| failed(&format!("HEAD {repo}:{t}"), e))?;
        Ok(r.header("Docker-Content-Digest")
            .and_then(|d| d.parse().ok()))
    }
}
