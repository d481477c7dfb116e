//! `cache.url`: where the token caches live when they are in Redis. `Display` and `Debug` hide
//! the password, so the URL can be logged.

use crate::secret::Secret;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RedisUrlError(String);

/// A `redis://` or `rediss://` (TLS) URL, with an optional password and database number.
#[derive(Clone)]
pub struct RedisUrl {
    /// The URL as given; it may hold a password.
    full: Secret,
    /// The same URL with the password replaced by `***`.
    shown: String,
}

impl RedisUrl {
    pub fn parse(text: &str) -> Result<Self, RedisUrlError> {
        let text = text.trim();
        let parsed = url::Url::parse(text).map_err(|e| {
            RedisUrlError(format!(
                "expected redis://[:PASSWORD@]HOST[:6379][/DB] or rediss://... ({e})"
            ))
        })?;
        if !matches!(parsed.scheme(), "redis" | "rediss") {
            return Err(RedisUrlError(format!(
                "unsupported scheme {:?}: expected redis:// or rediss:// (TLS)",
                parsed.scheme()
            )));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(RedisUrlError(
                "it names no host (redis://HOST:6379/0)".into(),
            ));
        }
        let db = parsed.path().trim_start_matches('/');
        if !db.is_empty() && db.parse::<u16>().is_err() {
            return Err(RedisUrlError(format!(
                "the path must be a database number such as /0, not /{db}"
            )));
        }
        let mut shown = parsed.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        shown.set_query(None);
        Ok(Self {
            full: Secret::new(text),
            shown: shown.to_string(),
        })
    }

    /// Whether the URL carries a password (it must then not be written in the settings file).
    pub fn has_password(&self) -> bool {
        url::Url::parse(self.full.expose()).is_ok_and(|u| u.password().is_some())
    }

    /// The URL handed to the client. It may hold a password: never log it.
    pub fn expose(&self) -> &str {
        self.full.expose()
    }

    /// The same server with database number `db` (tests take one each).
    pub fn with_database(&self, db: u16) -> Result<Self, RedisUrlError> {
        let mut parsed =
            url::Url::parse(self.full.expose()).map_err(|e| RedisUrlError(e.to_string()))?;
        parsed.set_path(&format!("/{db}"));
        Self::parse(parsed.as_str())
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", self.shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_debug_hide_the_password() {
        let url = RedisUrl::parse("redis://:s3cret-pw@cache.internal:6380/2").unwrap();
        assert_eq!(url.to_string(), "redis://:***@cache.internal:6380/2");
        assert!(!format!("{url:?}").contains("s3cret-pw"));
        assert!(url.has_password());
        assert_eq!(url.expose(), "redis://:s3cret-pw@cache.internal:6380/2");
        let tls = RedisUrl::parse("rediss://user:pw@cache.internal").unwrap();
        assert_eq!(tls.to_string(), "rediss://user:***@cache.internal");
        assert!(!RedisUrl::parse("redis://127.0.0.1:6379/0")
            .unwrap()
            .has_password());
    }

    #[test]
    fn other_schemes_and_paths_are_refused() {
        for bad in [
            "http://127.0.0.1:6379",
            "127.0.0.1:6379",
            "redis://",
            "redis://host/cache",
        ] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn a_database_number_can_be_chosen() {
        let url = RedisUrl::parse("redis://:pw@127.0.0.1:6379/0").unwrap();
        let other = url.with_database(7).unwrap();
        assert_eq!(other.expose(), "redis://:pw@127.0.0.1:6379/7");
    }
}
