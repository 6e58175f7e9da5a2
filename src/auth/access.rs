//! Who may do what on which repository.
//!
//! Rules name repositories by glob and users or groups, and grant actions.
//! Where any rule's pattern matches a repository, a user has exactly the
//! actions of the matching rules that name them (or a group of theirs,
//! from the config or the directory); where none matches, a valid user has
//! `default_access`. Anonymous clients may pull where `anonymous_pull`
//! matches, nothing else. A caller holding a token or a robot's secret has
//! exactly the rights it carries (decided when it was issued or created),
//! plus what anonymous clients may.

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
    /// The URL clients reach this registry at (`https://registry.example`),
    /// for the token realm; empty = from each request's Host and scheme.
    pub external_url: String,
    /// Issuing and accepting Bearer tokens.
    pub token: super::token::TokenConfig,
    /// Logins against an LDAP directory or Active Directory.
    pub ldap: super::ldap::LdapConfig,
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
            external_url: String::new(),
            token: Default::default(),
            ldap: Default::default(),
        }
    }
}

/// Who a caller says they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    User(String),
}

/// How a caller proved who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    None,
    /// An htpasswd or directory password.
    Password,
    /// A client certificate.
    Certificate,
    /// A robot account's secret.
    Robot,
    /// A Bearer token this registry issued (`own`) or a trusted issuer did.
    Token {
        own: bool,
    },
}

/// Rights on the repositories a glob (or, for a token, one exact name)
/// matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub repos: String,
    pub glob: bool,
    pub actions: Vec<Action>,
}

impl Grant {
    fn covers(&self, repo: &str) -> bool {
        match self.glob {
            true => glob_match(&self.repos, repo),
            false => self.repos == repo,
        }
    }
}

/// The caller of a request: who, how they proved it, and what decides
/// their rights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub who: Identity,
    pub proof: Proof,
    /// Groups the directory puts the user in, beside the config's `groups`.
    pub groups: Vec<String>,
    /// Exactly these rights (a token's access claim, a robot's scope),
    /// instead of the rules.
    pub only: Option<Vec<Grant>>,
}

impl Caller {
    pub fn anonymous() -> Caller {
        Caller {
            who: Identity::Anonymous,
            proof: Proof::None,
            groups: Vec::new(),
            only: None,
        }
    }

    /// A user whose rights the rules decide.
    pub fn user(name: &str, proof: Proof, groups: Vec<String>) -> Caller {
        Caller {
            who: Identity::User(name.to_string()),
            proof,
            groups,
            only: None,
        }
    }

    /// The user's name, if any.
    pub fn name(&self) -> Option<&str> {
        match &self.who {
            Identity::User(u) => Some(u),
            Identity::Anonymous => None,
        }
    }
}

impl AuthConfig {
    /// May `who` do `action` on `repo`? A user may always do what an
    /// anonymous client may: logging in never takes a right away.
    pub fn may(&self, who: &Caller, repo: &str, action: Action) -> bool {
        if action == Action::Pull && self.anonymous_pull.iter().any(|g| glob_match(g, repo)) {
            return true;
        }
        if let Some(only) = &who.only {
            return only
                .iter()
                .any(|g| g.actions.contains(&action) && g.covers(repo));
        }
        let Identity::User(user) = &who.who else {
            return false;
        };
        let matching: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| glob_match(&r.repos, repo))
            .collect();
        if matching.is_empty() {
            return self.default_access.contains(&action);
        }
        let in_group = |g: &String| {
            who.groups.contains(g) || self.groups.get(g).is_some_and(|m| m.contains(user))
        };
        matching.iter().any(|r| {
            r.actions.contains(&action)
                && (r.users.iter().any(|u| u == user) || r.groups.iter().any(in_group))
        })
    }

    /// Admins are named users who proved it with a password, a
    /// certificate, or a token this registry issued: never a robot, never
    /// another issuer's token.
    pub fn is_admin(&self, who: &Caller) -> bool {
        let proven = matches!(
            who.proof,
            Proof::Password | Proof::Certificate | Proof::Token { own: true }
        );
        proven
            && who
                .name()
                .is_some_and(|u| self.admins.iter().any(|a| a == u))
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
        let alice = Caller::user("alice", Proof::Password, vec![]);
        let bob = Caller::user("bob", Proof::Password, vec![]);
        let carol = Caller::user("carol", Proof::Password, vec![]);
        let anonymous = Caller::anonymous();
        assert!(a.may(&alice, "team/app", Action::Delete));
        assert!(a.may(&bob, "team/app", Action::Pull));
        assert!(!a.may(&bob, "team/app", Action::Push));
        assert!(!a.may(&carol, "team/app", Action::Pull));
        // no rule: the default (pull and push)
        assert!(a.may(&carol, "misc", Action::Push));
        assert!(!a.may(&carol, "misc", Action::Delete));
        assert!(a.may(&anonymous, "public/x", Action::Pull));
        assert!(!a.may(&anonymous, "public/x", Action::Push));
        assert!(!a.may(&anonymous, "misc", Action::Pull));
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
        // a directory group counts as a config group
        let dave = Caller::user("dave", Proof::Password, vec!["team".into()]);
        assert!(a.may(&dave, "team/app", Action::Pull));
        assert!(!a.may(&dave, "team/app", Action::Push));
    }

    #[test]
    fn carried_rights_replace_the_rules() {
        let a = AuthConfig {
            anonymous_pull: vec!["public/*".into()],
            admins: vec!["ops".into()],
            ..AuthConfig::default()
        };
        let mut robot = Caller::user("robot$ci", Proof::Robot, vec![]);
        robot.only = Some(vec![Grant {
            repos: "ci/*".into(),
            glob: true,
            actions: vec![Action::Pull, Action::Push],
        }]);
        assert!(a.may(&robot, "ci/app", Action::Push));
        assert!(!a.may(&robot, "ci/app", Action::Delete));
        assert!(!a.may(&robot, "other", Action::Pull)); // default_access does not apply
        assert!(a.may(&robot, "public/x", Action::Pull));
        let mut token = Caller::user("ops", Proof::Token { own: true }, vec![]);
        token.only = Some(vec![Grant {
            repos: "ci/*".into(),
            glob: false,
            actions: vec![Action::Pull],
        }]);
        assert!(!a.may(&token, "ci/app", Action::Pull)); // a token's names are exact
        assert!(a.is_admin(&token));
        token.proof = Proof::Token { own: false };
        assert!(!a.is_admin(&token));
        let ops_robot = Caller::user("ops", Proof::Robot, vec![]);
        assert!(!a.is_admin(&ops_robot));
    }
}
