//! Authentication (htpasswd, HTTP Basic) and per-repository access rules.

pub mod access;
pub mod htpasswd;
pub mod throttle;

pub use access::{Action, AuthConfig, Identity, Rule};
pub use htpasswd::Htpasswd;
pub use throttle::Throttle;
