//! Form and query parameters, parsed with the `url` crate. RFC 6749 forbids sending a
//! parameter twice, so a repeated name is an error rather than "last one wins".

#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: &[u8]) -> Result<Self, String> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in url::form_urlencoded::parse(raw) {
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(format!("parameter {name} is repeated"));
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(Self(pairs))
    }

    /// A parameter's value; an empty value counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

/// Splits a `scope` value and maps Graph's long form (`https://graph.microsoft.com/User.Read`)
/// to the short one, keeping the first occurrence of each.
pub fn scopes(raw: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for scope in raw.split_whitespace() {
        let short = scope
            .strip_prefix("https://graph.microsoft.com/")
            .unwrap_or(scope)
            .to_owned();
        if !out.contains(&short) {
            out.push(short);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused() {
        assert!(Params::parse(b"a=1&b=2").is_ok());
        assert_eq!(
            Params::parse(b"a=1&a=2").unwrap_err(),
            "parameter a is repeated"
        );
        let p = Params::parse(b"a=&b=x%20y").unwrap();
        assert_eq!((p.get("a"), p.get("b")), (None, Some("x y")));
    }

    #[test]
    fn scopes_are_split_shortened_and_deduplicated() {
        assert_eq!(
            scopes("openid  https://graph.microsoft.com/User.Read User.Read offline_access"),
            ["openid", "User.Read", "offline_access"]
        );
    }
}
