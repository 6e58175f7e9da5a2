//! `berth platforms`: what a tag or digest offers, from a data directory
//! (server stopped) or a running server.

use std::path::Path;

use berth::oci::Reference;
use berth::registry::platforms::describe;
use berth::store::{Store, StoreOptions};
use serde_json::Value;

/// Split `REPO:TAG` or `REPO@DIGEST`.
fn split(target: &str) -> Result<(String, Reference), String> {
    let (repo, reference) = match target.split_once('@') {
        Some((r, d)) => (r, d),
        None => match target.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t),
            _ => (target, "latest"),
        },
    };
    if !berth::oci::name::is_valid_name(repo) {
        return Err(format!("'{repo}' is not a repository name"));
    }
    Ok((
        repo.to_string(),
        Reference::parse(reference).map_err(|e| e.to_string())?,
    ))
}

pub fn run(
    data_dir: Option<&Path>,
    url: Option<&str>,
    target: &str,
    json: bool,
) -> Result<(), String> {
    let (repo, reference) = split(target)?;
    let body = match (url, data_dir) {
        (Some(url), _) => {
            let u = format!(
                "{}/v2/{repo}/_berth/platforms/{reference}",
                url.trim_end_matches('/')
            );
            match ureq::get(&u).call() {
                Ok(r) => serde_json::from_reader::<_, Value>(r.into_reader())
                    .map_err(|e| e.to_string())?,
                Err(ureq::Error::Status(code, r)) => {
                    return Err(format!("{code}: {}", r.into_string().unwrap_or_default()));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        (None, dir) => {
            let dir = dir.unwrap_or(Path::new("berth-data"));
            let store = Store::open(dir, &StoreOptions::default()).map_err(|e| e.to_string())?;
            describe(&store, &repo, &reference)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{repo}:{reference} is not in {}", dir.display()))?
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
