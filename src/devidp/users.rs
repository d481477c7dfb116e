//! Development users: any name signs in, and the same name always gets the same identity.

use super::keys::stable_guid;
use serde::Serialize;

/// The domain given to bare user names (`ada` → `ada@tokenbridge.dev`).
pub const DOMAIN: &str = "tokenbridge.dev";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub id: String,
    pub display_name: String,
    pub given_name: String,
    pub surname: String,
    pub user_principal_name: String,
    pub mail: String,
    pub job_title: String,
    pub office_location: String,
}

/// Normalises what was typed on the sign-in form into a user name, or says what is wrong.
pub fn parse_username(input: &str) -> Result<String, &'static str> {
    let name = input.trim().to_lowercase();
    if name.is_empty() {
        return Err("Type a user name.");
    }
    if name.len() > 64 {
        return Err("User names are at most 64 characters.");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-+@".contains(c);
    if !name.chars().all(allowed) || name.starts_with('@') || name.matches('@').count() > 1 {
        return Err("Use letters, digits and . _ - + (and one @ for a full address).");
    }
    Ok(name)
}

impl Profile {
    /// The profile of a (normalised) user name.
    pub fn of(username: &str) -> Self {
        let upn = if username.contains('@') {
            username.to_owned()
        } else {
            format!("{username}@{DOMAIN}")
        };
        let local = upn.split('@').next().unwrap_or_default();
        let words: Vec<String> = local
            .split(['.', '_', '-', '+'])
            .filter(|w| !w.is_empty())
            .map(capitalise)
            .collect();
        let given_name = words.first().cloned().unwrap_or_default();
        let surname = if words.len() > 1 {
            words[words.len() - 1].clone()
        } else {
            String::new()
        };
        Self {
            id: stable_guid("oid", username),
            display_name: words.join(" "),
            given_name,
            surname,
            mail: upn.clone(),
            user_principal_name: upn,
            job_title: "Developer".into(),
            office_location: "Loopback 127".into(),
        }
    }
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_checked() {
        assert_eq!(parse_username("  Ada "), Ok("ada".into()));
        assert_eq!(
            parse_username("ada.lovelace@contoso.com"),
            Ok("ada.lovelace@contoso.com".into())
        );
        assert!(parse_username("").is_err());
        assert!(parse_username("a b").is_err());
        assert!(parse_username("<script>").is_err());
        assert!(parse_username("a@b@c").is_err());
        assert!(parse_username(&"x".repeat(65)).is_err());
    }

    #[test]
    fn profiles_are_stable_and_graph_shaped() {
        let p = Profile::of("ada.lovelace");
        assert_eq!(p, Profile::of("ada.lovelace"));
        assert_eq!(p.display_name, "Ada Lovelace");
        assert_eq!(
            (p.given_name.as_str(), p.surname.as_str()),
            ("Ada", "Lovelace")
        );
        assert_eq!(p.user_principal_name, "ada.lovelace@tokenbridge.dev");
        let json = serde_json::to_value(&p).unwrap();
        for field in [
            "id",
            "displayName",
            "givenName",
            "surname",
            "userPrincipalName",
            "mail",
            "jobTitle",
            "officeLocation",
        ] {
            assert!(json.get(field).is_some(), "{field}");
        }
        assert_ne!(Profile::of("grace").id, p.id);
    }
}
