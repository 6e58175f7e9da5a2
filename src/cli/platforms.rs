//! `berth platforms`: what a tag or digest offers, from a data directory
//! (server stopped) or a running server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth::config::Config;
use berth::oci::Reference;
use berth::registry::Registry;
use berth::store::{Store, StoreOptions};
use serde_json::Value;

use super::Error;

#[derive(clap::Args)]
pub struct Args {
    /// Read a data directory (the server must be stopped).
    #[arg(long, conflicts_with = "url")]
    data_dir: Option<PathBuf>,
    /// Ask a running server, e.g. http://127.0.0.1:5000.
    #[arg(long)]
    url: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    target: String,
}

/// Split `REPO:TAG` or `REPO@DIGEST`.
fn split(target: &str) -> Result<(String, Reference), Error> {
    let (repo, reference) = match target.split_once('@') {
        Some((r, d)) => (r, d),
        None => match target.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t),
            _ => (target, "latest"),
        },
    };
    if !berth::oci::name::is_valid_name(repo) {
        return Err(Error::Usage(format!("'{repo}' is not a repository name")));
    }
    let reference = Reference::parse(reference).map_err(|e| Error::Usage(e.to_string()))?;
    Ok((repo.to_string(), reference))
}

pub fn run(a: Args) -> Result<(), Error> {
    let (repo, reference) = split(&a.target)?;
    let json = a.json;
    let body = match (a.url.as_deref(), a.data_dir.as_deref()) {
        (Some(url), _) => {
            let u = format!(
                "{}/v2/{repo}/_berth/platforms/{reference}",
                url.trim_end_matches('/')
            );
            match ureq::get(&u).call() {
                Ok(r) => serde_json::from_reader::<_, Value>(r.into_reader())
                    .map_err(|e| Error::Remote(e.to_string()))?,
                Err(ureq::Error::Status(code, r)) => {
                    let body = r.into_string().unwrap_or_default();
                    return Err(Error::Remote(format!("{code}: {body}")));
                }
                Err(e) => return Err(Error::Remote(e.to_string())),
            }
        }
        (None, dir) => {
            let dir = dir.unwrap_or(Path::new("berth-data"));
            let store = Store::open(dir, &StoreOptions::default())?;
            Registry::new(Arc::new(store), Config::default()).platforms(&repo, &reference)?
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&body).expect("JSON prints")
        );
        return Ok(());
    }
    println!(
        "{repo}:{reference}  {}  {}",
        body["digest"].as_str().unwrap_or(""),
        body["mediaType"].as_str().unwrap_or("")
    );
    for p in body["platforms"].as_array().into_iter().flatten() {
        println!(
            "  {:<20} {}  {:>8}  {}",
            p["platform"].as_str().unwrap_or(""),
            p["digest"].as_str().unwrap_or(""),
            p["size"],
            p["mediaType"].as_str().unwrap_or("")
        );
    }
    Ok(())
}
