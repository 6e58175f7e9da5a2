//! Who may do what on which repository.
//!
//! Rules name repositories by glob and users or groups, and grant actions.
//! Where any rule's pattern matches a repository, a user has exactly the
//! actions of the matching rules that name them (or a group of theirs);
//! where none matches, a valid user has `default_access`. Anonymous clients
//! may pull where `anonymous_pull` matches, nothing else.

use serde::{Deserialize, Serialize};

use crate::oci::glob::glob_match;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pull,
    Push,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Repository glob.
    pub repos: String,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub actions: Vec<Action>,
}

/// The `[auth]` section of the configuration: the credentials file and the
/// access policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// htpasswd file with bcrypt entries; empty = authentication off.
    pub htpasswd: String,
    /// Realm of the `WWW-Authenticate: Basic` challenge.
    pub realm: String,
    /// Repository globs anyone may pull without credentials.
    pub anonymous_pull: Vec<String>,
    /// What a valid user may do on repositories no rule matches.
    pub default_access: Vec<Action>,
    /// Users who may call the `/_berth/` admin endpoints.
    pub admins: Vec<String>,
    /// Group name -> user names.
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
    pub rules: Vec<Rule>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            htpasswd: String::new(),
            realm: "Berth".into(),
            anonymous_pull: Vec::new(),
            default_access: vec![Action::Pull, Action::Push],
            admins: Vec::new(),
            groups: Default::default(),
            rules: Vec::new(),
        }
    }
}

/// The caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    User(String),
}

impl AuthConfig {
    /// May `who` do `action` on `repo`? A user may always do what an
    /// anonymous client may: logging in never takes a right away.
    pub fn may(&self, who: &Identity, repo: &str, action: Action) -> bool {
        let anonymous_may =
            action == Action::Pull && self.anonymous_pull.iter().any(|g| glob_match(g, repo));
        let user = match who {
            Identity::Anonymous => return anonymous_may,
            Identity::User(_) if anonymous_may => return true,
            Identity::User(u) => u,
        };
        let matching: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| glob_match(&r.repos, repo))
            .collect();
        if matching.is_empty() {
            return self.default_access.contains(&action);
        }
        matching.iter().any(|r| {
            r.actions.contains(&action)
                && (r.users.iter().any(|u| u == user)
                    || r.groups
                        .iter()
                        .any(|g| self.groups.get(g).is_some_and(|m| m.contains(user))))
        })
    }

    pub fn is_admin(&self, who: &Identity) -> bool {
        matches!(who, Identity::User(u) if self.admins.contains(u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_groups_defaults_and_anonymous() {
        let mut a = AuthConfig {
            anonymous_pull: vec!["public/*".into()],
            ..AuthConfig::default()
        };
        a.groups.insert("team".into(), vec!["bob".into()]);
        a.rules = vec![
            Rule {
                repos: "team/*".into(),
                users: vec!["alice".into()],
                groups: vec![],
                actions: vec![Action::Pull, Action::Push, Action::Delete],
            },
            Rule {
                repos: "team/*".into(),
                users: vec![],
                groups: vec!["team".into()],
                actions: vec![Action::Pull],
            },
        ];
        let alice = Identity::User("alice".into());
        let bob = Identity::User("bob".into());
        let carol = Identity::User("carol".into());
        assert!(a.may(&alice, "team/app", Action::Delete));
        assert!(a.may(&bob, "team/app", Action::Pull));
        assert!(!a.may(&bob, "team/app", Action::Push));
        assert!(!a.may(&carol, "team/app", Action::Pull));
        // no rule: the default (pull and push)
        assert!(a.may(&carol, "misc", Action::Push));
        assert!(!a.may(&carol, "misc", Action::Delete));
        assert!(a.may(&Identity::Anonymous, "public/x", Action::Pull));
        assert!(!a.may(&Identity::Anonymous, "public/x", Action::Push));
        assert!(!a.may(&Identity::Anonymous, "misc", Action::Pull));
        // a rule for others on a public repository takes nothing from a user
        a.rules.push(Rule {
            repos: "public/*".into(),
            users: vec!["bob".into()],
            groups: vec![],
            actions: vec![Action::Pull, Action::Push],
        });
        assert!(a.may(&carol, "public/x", Action::Pull));
        assert!(!a.may(&carol, "public/x", Action::Push));
        assert!(a.may(&bob, "public/x", Action::Push));
    }
}
