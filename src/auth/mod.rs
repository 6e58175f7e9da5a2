//! Authentication (htpasswd, LDAP, robot accounts, Bearer tokens) and
//! per-repository access rules.

pub mod access;
pub mod bearer;
pub mod htpasswd;
pub mod keys;
pub mod ldap;
pub mod robots;
pub mod scope;
pub mod throttle;
pub mod token;

pub use access::{Action, AuthConfig, Caller, Grant, Identity, Proof, Rule};
pub use htpasswd::Htpasswd;
pub use throttle::Throttle;
