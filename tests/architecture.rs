//! The layering rules of the README's architecture section, checked on the
//! source itself: what each top-level module of the library names of the
//! others (`crate::<module>` outside comments), and that no two depend on
//! each other in a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out
}

/// The code of a file, comments left out.
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules of the library, each with its files.
fn modules() -> BTreeMap<String, Vec<PathBuf>> {
    let lib = std::fs::read_to_string(root().join("lib.rs")).unwrap();
    let mut out = BTreeMap::new();
    for line in lib.lines() {
        let Some(name) = line
            .strip_prefix("pub mod ")
            .and_then(|l| l.strip_suffix(';'))
        else {
            continue;
        };
        let dir = root().join(name);
        let paths = match dir.is_dir() {
            true => files(&dir),
            false => vec![root().join(format!("{name}.rs"))],
        };
        out.insert(name.to_string(), paths);
    }
    out
}

/// The crate modules each module names (other than itself).
fn uses() -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    let mut out = BTreeMap::new();
    for (m, paths) in &mods {
        let mut named = BTreeSet::new();
        for p in paths {
            let text = code(p);
            for (i, _) in text.match_indices("crate::") {
                let rest = &text[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if mods.contains_key(&name) && &name != m {
                    named.insert(name);
                }
            }
        }
        out.insert(m.clone(), named);
    }
    out
}

/// Does `text` hold `word` as a whole word?
fn has_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word)
        .any(|(i, _)| !text[..i].ends_with(ident) && !text[i + word.len()..].starts_with(ident))
}

#[test]
fn http_reaches_the_store_only_through_the_registry() {
    for p in files(&root().join("http")) {
        let text = code(&p);
        assert!(
            !text.contains("crate::store"),
            "{} names the store",
            p.display()
        );
        for word in ["Store", "StoreError", "Kv"] {
            assert!(
                !has_word(&text, word),
                "{} names the store ({word})",
                p.display()
            );
        }
    }
}

#[test]
fn layers_import_downward() {
    let uses = uses();
    let forbidden = [
        (
            "store",
            &["registry", "http", "auth", "metrics", "config", "bundle"][..],
        ),
        (
            "oci",
            &[
                "auth", "bundle", "config", "http", "metrics", "registry", "store", "verify",
            ][..],
        ),
        (
            "verify",
            &["registry", "http", "store", "auth", "config", "metrics"][..],
        ),
        ("registry", &["http", "bundle"][..]),
        (
            "auth",
            &["config", "registry", "http", "store", "metrics"][..],
        ),
    ];
    for (m, not) in forbidden {
        for n in not {
            assert!(!uses[m].contains(*n), "{m} imports {n}: {:?}", uses[m]);
        }
    }
}

#[test]
fn no_module_depends_on_itself_through_others() {
    let uses = uses();
    // depth-first search for a cycle, reporting its path
    fn visit(
        m: &str,
        uses: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == m) {
            panic!("circle: {} -> {m}", path[i..].join(" -> "));
        }
        if done.contains(m) {
            return;
        }
        path.push(m.to_string());
        for n in &uses[m] {
            visit(n, uses, path, done);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in uses.keys() {
        visit(m, &uses, &mut Vec::new(), &mut done);
    }
}

/// Files outside `store/kv/<engine>` (and the seam, which picks engines
/// by their module names) that name the engine's crate.
fn naming(engine: &str, clean: impl Fn(String) -> String) -> Vec<String> {
    naming_outside(
        engine,
        &format!("store/kv/{engine}"),
        "store/kv/mod.rs",
        clean,
    )
}

/// Files outside `dir` and `seam` (under src/) that name `krate`.
fn naming_outside(
    krate: &str,
    dir: &str,
    seam: &str,
    clean: impl Fn(String) -> String,
) -> Vec<String> {
    let (dir, seam) = (root().join(dir), root().join(seam));
    files(&root())
        .into_iter()
        .filter(|p| !p.starts_with(&dir) && *p != seam)
        .filter(|p| {
            let text = clean(code(p));
            text.contains(&format!("{krate}::")) || text.contains(&format!("use {krate}"))
        })
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn the_object_store_client_is_named_only_by_the_s3_bodies() {
    let named = naming_outside(
        "object_store",
        "store/bodies/s3",
        "store/bodies/mod.rs",
        |t| t,
    );
    assert!(named.is_empty(), "naming object_store: {named:?}");
}

#[test]
fn redb_is_named_only_by_its_engine() {
    let named = naming("redb", |t| t.replace("meta.redb", ""));
    assert!(named.is_empty(), "naming redb: {named:?}");
}

#[test]
fn postgres_is_named_only_by_its_engine() {
    let named = naming("postgres", |t| t);
    assert!(named.is_empty(), "naming postgres: {named:?}");
}

#[test]
fn files_stay_small() {
    for p in files(&root()) {
        let n = std::fs::read_to_string(&p).unwrap().lines().count();
        let most = if p.ends_with("main.rs") { 100 } else { 600 };
        assert!(n <= most, "{} has {n} lines (at most {most})", p.display());
    }
}
