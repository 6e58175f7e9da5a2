//! OCI image layouts for real clients to push (skopeo `oci:`).

use std::path::Path;

use serde_json::json;

use super::{bytes, sha256};

/// A valid gzip member holding `data` in stored (uncompressed) deflate
/// blocks: clients that sniff compression see a real gzip layer.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let mut chunks = data.chunks(65535).peekable();
    while let Some(c) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        out.extend_from_slice(&(c.len() as u16).to_le_bytes());
        out.extend_from_slice(&(!(c.len() as u16)).to_le_bytes());
        out.extend_from_slice(c);
    }
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & 0u32.wrapping_sub(crc & 1));
        }
    }
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

pub fn put_blob(dir: &Path, data: &[u8]) -> serde_json::Value {
    let d = sha256(data);
    std::fs::write(dir.join("blobs/sha256").join(&d[7..]), data).unwrap();
    json!({"digest": d, "size": data.len()})
}

/// Write one image for `arch`/`variant` into the layout at `dir`; returns
/// its index entry.
pub fn put_image(dir: &Path, i: usize, arch: &str, variant: Option<&str>) -> serde_json::Value {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    {
        let layer = put_blob(dir, &gzip_stored(&bytes(100 + i as u64, 4000)));
        let mut cfg = json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}});
        let mut platform = json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            cfg["variant"] = json!(v);
            platform["variant"] = json!(v);
        }
        let c = put_blob(dir, &serde_json::to_vec(&cfg).unwrap());
        let m = json!({
            "schemaVersion": 2, "mediaType": super::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c["digest"], "size": c["size"]},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer["digest"], "size": layer["size"]}]
        });
        let md = put_blob(dir, &serde_json::to_vec(&m).unwrap());
        json!({"mediaType": super::OCI_MANIFEST, "digest": md["digest"], "size": md["size"], "platform": platform})
    }
}

pub fn write_top(dir: &Path, entry: &serde_json::Value) {
    let mut e = entry.clone();
    e.as_object_mut().unwrap().remove("platform");
    e["annotations"] = json!({"org.opencontainers.image.ref.name": "v1"});
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [e]})).unwrap(),
    )
    .unwrap();
}

/// A runnable single-platform image (one real tar layer with
/// `hello.txt`) tagged `v1` in a new layout at `layout`; returns its
/// index entry.
pub fn runnable_image(layout: &Path) -> serde_json::Value {
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    let body = b"hello from berth\n";
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    tar.append_data(&mut h, "hello.txt", &body[..]).unwrap();
    let raw = tar.into_inner().unwrap();
    let layer = put_blob(layout, &gzip_stored(&raw));
    let cfg = put_blob(
        layout,
        &serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(&raw)]}}))
        .unwrap(),
    );
    let m = put_blob(layout, &serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": super::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg["digest"], "size": cfg["size"]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer["digest"], "size": layer["size"]}]})).unwrap());
    let entry = json!({"mediaType": super::OCI_MANIFEST, "digest": m["digest"], "size": m["size"]});
    write_top(layout, &entry);
    entry
}
