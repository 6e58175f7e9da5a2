//! Authentication (htpasswd, HTTP Basic) and per-repository access rules.

pub mod access;
pub mod htpasswd;

pub use access::{Action, Identity, Rule};
pub use htpasswd::Htpasswd;
