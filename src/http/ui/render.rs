//! The page templates (`templates/`, compiled into the binary) and the
//! filters they format with. HTML is escaped by minijinja for every
//! `.html` template, so names, tags and labels pushed by anyone render as
//! text.

use std::sync::OnceLock;

use minijinja::{Environment, Value};

use crate::clock::rfc3339;

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // configs and annotations are whatever was pushed: a missing field
        // (and any field under it) renders as nothing, never an error
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        for (name, text) in [
            ("base.html", include_str!("templates/base.html")),
            ("repos.html", include_str!("templates/repos.html")),
            ("repo.html", include_str!("templates/repo.html")),
            ("image.html", include_str!("templates/image.html")),
            ("platforms.html", include_str!("templates/platforms.html")),
            ("admin.html", include_str!("templates/admin.html")),
            ("error.html", include_str!("templates/error.html")),
            ("login.html", include_str!("templates/login.html")),
        ] {
            env.add_template(name, text).expect("templates parse");
        }
        env.add_filter("size", size);
        env.add_filter("time", |ms: u64| time(ms / 1000));
        env.add_filter("time_s", time);
        env.add_filter("short", |d: String| match d.split_once(':') {
            Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}", &hex[..12]),
            _ => d,
        });
        env
    })
}

/// Render template `name` with `ctx`.
pub fn page(name: &str, ctx: Value) -> Result<String, String> {
    env()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| format!("template {name}: {e:#}"))
}

fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    match u {
        0 => format!("{n} B"),
        _ => format!("{v:.1} {}", UNITS[u]),
    }
}

fn time(secs: u64) -> String {
    match secs {
        0 => "—".into(),
        s => rfc3339(s).replace('T', " ").replace('Z', " UTC"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_without_fields_renders() {
        let image = minijinja::context! { digest => "sha256:00", kind => "image", size => 10, config => minijinja::context! { architecture => "amd64" } };
        let html = page(
            "image.html",
            minijinja::context! { repo => "r", image, pulls => Vec::<String>::new() },
        )
        .unwrap();
        assert!(html.contains("<h2>Config</h2>") && !html.contains("Entrypoint"));
    }

    #[test]
    fn sizes_and_escaping() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        let html = page(
            "error.html",
            minijinja::context! { status => 404, message => "<script>x</script>" },
        )
        .unwrap();
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>x"));
    }
}
