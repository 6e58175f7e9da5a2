//! Globs on repository names and tags, as configuration and selections
//! write them: `*` matches any run of characters (slashes included), `?`
//! one character.
//!
//! ```
//! use berth::oci::glob::glob_match;
//! assert!(glob_match("team/*", "team/app/web"));
//! assert!(!glob_match("team/*", "teamx/app"));
//! assert!(glob_match("v1.?", "v1.2"));
//! ```

/// Does `name` match the glob `pattern`?
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            pi += 1;
            mark = ni;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "a/b"));
        assert!(glob_match("power/*", "power/app"));
        assert!(!glob_match("power/*", "powerx/app"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("*/base", "x/y/base"));
        assert!(!glob_match("*/base", "base"));
    }
}
