//! A running registry (Berth or any other) over the OCI distribution API,
//! anonymous or with Basic auth: a source for `berth export --url` and a
//! destination for `berth import --url`.

use std::io::Read;

use super::apply::Destination;
use super::export::Source;
use super::{BundleError, Result};
use crate::oci::{Descriptor, Digest, Reference};
use crate::store::Store;

/// A running registry (Berth or any other), anonymous or with Basic auth.
pub struct Remote {
    base: String,
    agent: ureq::Agent,
    auth: Option<String>,
}

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

impl Remote {
    pub fn new(base: &str, user: Option<&str>) -> Remote {
        use base64::Engine as _;
        Remote {
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

impl Source for Remote {
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

impl Remote {
    fn request(&self, method: &str, path_or_url: &str) -> ureq::Request {
        let url = if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        let mut r = self.agent.request(method, &url);
        if let Some(a) = &self.auth {
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
            .set("Accept", ACCEPT)
            .call()
            .map_err(|e| failed(&format!("HEAD {repo}:{t}"), e))?;
        Ok(r.header("Docker-Content-Digest")
            .and_then(|d| d.parse().ok()))
    }
}
