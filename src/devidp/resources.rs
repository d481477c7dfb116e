//! The APIs the development provider issues access tokens for, as Entra ID's resources: Graph
//! (bare scopes such as `User.Read`) and a second API of one's own, `api://tokenbridge-tasks`
//! (`api://tokenbridge-tasks/Tasks.Read`), and tokenbridge's own API for its web API mode
//! (`api://tokenbridge-dev/access_as_user`). One access token is for one resource; a sign-in may
//! consent to scopes of several, and a refresh token gets each resource's token in turn.

use super::OIDC_SCOPES;

/// One API: the audience of its tokens and the scope its endpoint requires.
#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    pub audience: &'static str,
    /// What a scope of this resource starts with ("" for Graph, whose scopes are bare).
    pub prefix: &'static str,
    /// The scope the resource's endpoint requires (in the token's `scp`, without the prefix).
    pub scope: &'static str,
    /// Whether a token answer names its scopes with the prefix (Entra ID does for APIs of
    /// one's own, not for Graph).
    pub full_scope_names: bool,
}

/// Microsoft Graph's application id is its tokens' audience, as Entra ID issues them.
pub const GRAPH: Resource = Resource {
    audience: "00000003-0000-0000-c000-000000000000",
    prefix: "",
    scope: "User.Read",
    full_scope_names: false,
};

/// An API of one's own, exposed with one scope.
pub const TASKS: Resource = Resource {
    audience: "api://tokenbridge-tasks",
    prefix: "api://tokenbridge-tasks/",
    scope: "Tasks.Read",
    full_scope_names: true,
};

/// tokenbridge's own API in its web API mode (`api://tokenbridge-dev/access_as_user`, exposed
/// by the default client's registration): the audience is that client's id, as Entra ID v2
/// tokens name it, and its tokens are signed with the published keys, which the API checks.
pub const WEB_API: Resource = Resource {
    audience: crate::settings::DEFAULT_CLIENT_ID,
    prefix: "api://tokenbridge-dev/",
    scope: "access_as_user",
    full_scope_names: true,
};

/// The resource a scope is for: none for the sign-in's own scopes (openid, ...).
pub fn resource_of(scope: &str) -> Option<&'static Resource> {
    if OIDC_SCOPES.contains(&scope) {
        None
    } else if scope.starts_with(TASKS.prefix) {
        Some(&TASKS)
    } else if scope.starts_with(WEB_API.prefix) {
        Some(&WEB_API)
    } else {
        Some(&GRAPH)
    }
}

/// What one access token is issued for.
#[derive(Debug, PartialEq, Eq)]
pub struct ForOne {
    pub resource: &'static Resource,
    /// The resource's scopes among those asked, as asked (the answer's `scope`).
    pub scopes: Vec<String>,
}

impl ForOne {
    /// The token's `scp` claim: the scopes without the resource's prefix.
    pub fn scp(&self) -> String {
        self.scopes
            .iter()
            .map(|s| s.strip_prefix(self.resource.prefix).unwrap_or(s))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The resource of the token for `scopes`: the one their API scopes name (Graph when they name
/// none). Scopes of several resources are refused unless `first_wins` (a code redeemed without
/// `scope` after a sign-in that consented to several: Entra ID issues the first one's).
pub fn one_resource(scopes: &[String], first_wins: bool) -> Result<ForOne, String> {
    let mut resources = scopes.iter().filter_map(|s| resource_of(s));
    let resource = resources.next().unwrap_or(&GRAPH);
    if !first_wins && resources.any(|other| other != resource) {
        return Err(
            "AADSTS28000: Provide value for the input parameter scope: the scopes asked for \
             must all be for one resource"
                .into(),
        );
    }
    Ok(ForOne {
        resource,
        scopes: scopes
            .iter()
            .filter(|s| resource_of(s) == Some(resource))
            .cloned()
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(scopes: &[&str]) -> Vec<String> {
        scopes.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_token_is_for_one_resource() {
        let graph = one_resource(&strings(&["openid", "User.Read"]), false).unwrap();
        assert_eq!(graph.resource, &GRAPH);
        assert_eq!(graph.scp(), "User.Read");
        let tasks = one_resource(
            &strings(&["openid", "api://tokenbridge-tasks/Tasks.Read"]),
            false,
        )
        .unwrap();
        assert_eq!(tasks.resource, &TASKS);
        assert_eq!(tasks.scp(), "Tasks.Read");
        assert_eq!(tasks.scopes, ["api://tokenbridge-tasks/Tasks.Read"]);
        let both = strings(&["User.Read", "api://tokenbridge-tasks/Tasks.Read"]);
        assert!(one_resource(&both, false)
            .unwrap_err()
            .contains("AADSTS28000"));
        assert_eq!(one_resource(&both, true).unwrap().resource, &GRAPH);
        assert_eq!(
            one_resource(&strings(&["openid"]), false).unwrap().scp(),
            ""
        );
    }
}
