//! The platform filter: which platforms of a multi-arch index are wanted,
//! and the index rewritten to list only them (bundle export, sync), with an
//! annotation saying which were kept.

use serde_json::Value;

use super::{Descriptor, Platform};

/// The annotation of a rewritten index: the platforms it was filtered to.
pub const ANN_PLATFORMS: &str = "io.berth.bundle.platforms";

/// Whether `p` is one of the wanted platforms. A wanted platform without a
/// variant takes every variant; os.version counts only when asked for.
pub fn wanted(filter: &[Platform], p: &Platform) -> bool {
    filter.iter().any(|f| {
        f.os == p.os
            && f.architecture == p.architecture
            && (f.variant.is_none() || f.normal_variant() == p.normal_variant())
            && (f.os_version.is_none() || f.os_version == p.os_version)
    })
}

/// What the platform filter makes of an index.
#[derive(Debug)]
pub enum Filtered {
    /// Every child is wanted: carried unchanged.
    Unchanged,
    /// No child is wanted (or the index is unreadable): left out.
    Empty,
    /// The new index bytes and the children it keeps.
    Rewritten(Vec<u8>, Vec<Descriptor>),
}

/// The index `bytes` with only the children whose platform is wanted, and an
/// annotation saying so.
pub fn filter_index(bytes: &[u8], children: &[Descriptor], filter: &[Platform]) -> Filtered {
    let keep: Vec<Descriptor> = children
        .iter()
        .filter(|c| c.platform.as_ref().is_some_and(|p| wanted(filter, p)))
        .cloned()
        .collect();
    if keep.len() == children.len() {
        return Filtered::Unchanged;
    }
    if keep.is_empty() {
        return Filtered::Empty;
    }
    let Ok(Value::Object(mut doc)) = serde_json::from_slice::<Value>(bytes) else {
        return Filtered::Empty;
    };
    let Some(Value::Array(entries)) = doc.remove("manifests") else {
        return Filtered::Empty;
    };
    let kept: Vec<Value> = entries
        .into_iter()
        .filter(|e| {
            e.get("platform")
                .and_then(|p| serde_json::from_value::<Platform>(p.clone()).ok())
                .is_some_and(|p| wanted(filter, &p))
        })
        .collect();
    doc.insert("manifests".into(), Value::Array(kept));
    let names: Vec<String> = filter.iter().map(|p| p.to_string()).collect();
    let ann = doc
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Value::Object(a) = ann {
        a.insert(ANN_PLATFORMS.into(), Value::String(names.join(",")));
    }
    let out = serde_json::to_vec(&Value::Object(doc)).expect("JSON value serialises");
    Filtered::Rewritten(out, keep)
}
