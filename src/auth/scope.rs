//! The vocabulary of the Docker/OCI token protocol: scopes a client asks
//! for (`repository:team/app:pull,push`) and the `access` claim a token
//! grants (`[{"type":"repository","name":"team/app","actions":["pull"]}]`).

use serde::{Deserialize, Serialize};

use super::Action;

/// One entry of a token's `access` claim, or one parsed `scope`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceActions {
    /// `repository`, or `registry` for `registry:catalog:*`.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl ResourceActions {
    /// Parse one scope. The name may hold `:` (a registry host with a
    /// port): the type ends at the first colon, the actions start after
    /// the last. A resource class (`repository(plugin)`) is dropped.
    pub fn parse(scope: &str) -> Option<ResourceActions> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let kind = kind.split('(').next().unwrap_or(kind);
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(ResourceActions {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }

    /// Every scope of a request's `scope` parameters (each may list several,
    /// space-separated, as OAuth2 does).
    pub fn parse_all<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Vec<ResourceActions> {
        scopes
            .into_iter()
            .flat_map(|s| s.split(' '))
            .filter_map(ResourceActions::parse)
            .collect()
    }

    /// Back to the `type:name:actions` form.
    pub fn to_scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }

    pub fn is_repository(&self) -> bool {
        self.kind == "repository"
    }

    /// The actions this entry names that Berth knows (`*` is all of them).
    pub fn berth_actions(&self) -> Vec<Action> {
        let mut out = Vec::new();
        for a in &self.actions {
            let named: &[Action] = match a.as_str() {
                "pull" => &[Action::Pull],
                "push" => &[Action::Push],
                "delete" => &[Action::Delete],
                "*" => &[Action::Pull, Action::Push, Action::Delete],
                _ => &[],
            };
            for n in named {
                if !out.contains(n) {
                    out.push(*n);
                }
            }
        }
        out
    }
}

/// The name of an action in scopes and claims.
pub fn action_name(a: Action) -> &'static str {
    match a {
        Action::Pull => "pull",
        Action::Push => "push",
        Action::Delete => "delete",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_as_distribution_reads_them() {
        let s = ResourceActions::parse("repository:team/app:pull,push").unwrap();
        assert_eq!(
            (s.kind.as_str(), s.name.as_str()),
            ("repository", "team/app")
        );
        assert_eq!(s.berth_actions(), vec![Action::Pull, Action::Push]);
        let s = ResourceActions::parse("repository:localhost:5000/app:pull").unwrap();
        assert_eq!(s.name, "localhost:5000/app");
        let s = ResourceActions::parse("repository(plugin):x:*").unwrap();
        assert_eq!(
            (s.kind.as_str(), s.berth_actions().len()),
            ("repository", 3)
        );
        assert_eq!(s.to_scope(), "repository:x:*");
        assert!(ResourceActions::parse("repository").is_none());
        assert!(ResourceActions::parse("repository::pull").is_none());
        let all = ResourceActions::parse_all(["registry:catalog:* repository:a:pull", "bogus"]);
        assert_eq!(all.len(), 2);
    }
}
