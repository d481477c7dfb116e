//! The database URL: its scheme picks the backend. Parsed once at start; its `Display` and
//! `Debug` hide any password so the URL can be logged.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error(
        "expected sqlite://PATH, postgres://USER@HOST/DB or mysql://USER@HOST/DB, got a URL \
         with scheme `{0}`"
    )]
    UnknownScheme(String),
    #[error("expected sqlite://PATH, postgres://USER@HOST/DB or mysql://USER@HOST/DB")]
    NoScheme,
    #[error("sqlite:// needs a file path, e.g. sqlite://tokenbridge.db")]
    EmptySqlitePath,
    #[error(
        "an in-memory SQLite database would be private to each pooled connection; use a file path"
    )]
    SqliteInMemory,
    #[error("not a valid {backend} URL: {reason}")]
    Malformed {
        backend: &'static str,
        reason: String,
    },
}

/// A validated database URL.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    backend: Backend,
    /// What the driver is given: a file path for SQLite, a URL otherwise.
    target: String,
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, UrlError> {
        let raw = raw.trim();
        let Some((scheme, rest)) = raw.split_once("://") else {
            return Err(UrlError::NoScheme);
        };
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                if rest.is_empty() {
                    return Err(UrlError::EmptySqlitePath);
                }
                if rest.starts_with(":memory:") || rest.contains("mode=memory") {
                    return Err(UrlError::SqliteInMemory);
                }
                Ok(Self {
                    backend: Backend::Sqlite,
                    target: rest.to_owned(),
                })
            }
            "postgres" | "postgresql" => Self::server(Backend::Postgres, raw.to_owned()),
            // Diesel's MySQL client only takes mysql://; MariaDB speaks the same protocol.
            "mysql" | "mariadb" => Self::server(Backend::Mysql, format!("mysql://{rest}")),
            other => Err(UrlError::UnknownScheme(other.to_owned())),
        }
    }

    fn server(backend: Backend, target: String) -> Result<Self, UrlError> {
        let parsed = url::Url::parse(&target).map_err(|e| UrlError::Malformed {
            backend: backend.name(),
            reason: e.to_string(),
        })?;
        if parsed.host_str().unwrap_or_default().is_empty() {
            return Err(UrlError::Malformed {
                backend: backend.name(),
                reason: "it names no host".into(),
            });
        }
        if backend == Backend::Mysql && parsed.path().trim_matches('/').is_empty() {
            return Err(UrlError::Malformed {
                backend: backend.name(),
                reason: "it names no database (mysql://USER@HOST/DATABASE)".into(),
            });
        }
        Ok(Self { backend, target })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The string handed to the driver. It may hold a password: never log it.
    pub fn connection_string(&self) -> &str {
        &self.target
    }

    /// The whole URL with its scheme, as it could be given in settings. It may hold a password:
    /// never log it (use `Display`).
    pub fn full_url(&self) -> String {
        match self.backend {
            Backend::Sqlite => format!("sqlite://{}", self.target),
            _ => self.target.clone(),
        }
    }

    /// The SQLite file path, for SQLite URLs.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        (self.backend == Backend::Sqlite).then(|| PathBuf::from(&self.target))
    }

    /// The same server with another database name (tests create one database per test).
    pub fn with_database(&self, name: &str) -> Result<Self, UrlError> {
        match self.backend {
            Backend::Sqlite => Err(UrlError::Malformed {
                backend: "sqlite",
                reason: "SQLite URLs name files, not databases".into(),
            }),
            backend => {
                let mut parsed =
                    url::Url::parse(&self.target).map_err(|e| UrlError::Malformed {
                        backend: backend.name(),
                        reason: e.to_string(),
                    })?;
                parsed.set_path(&format!("/{name}"));
                Ok(Self {
                    backend,
                    target: parsed.to_string(),
                })
            }
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.backend {
            Backend::Sqlite => write!(f, "sqlite://{}", self.target),
            _ => match url::Url::parse(&self.target) {
                Ok(mut parsed) => {
                    if parsed.password().is_some() {
                        let _ = parsed.set_password(Some("***"));
                    }
                    parsed.set_query(None);
                    f.write_str(parsed.as_str())
                }
                Err(_) => write!(f, "{}://***", self.backend),
            },
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_picks_the_backend() {
        let cases = [
            ("sqlite://tokenbridge.db", Backend::Sqlite, "tokenbridge.db"),
            ("sqlite:///var/lib/tb.db", Backend::Sqlite, "/var/lib/tb.db"),
            ("postgres://u@h/db", Backend::Postgres, "postgres://u@h/db"),
            (
                "postgresql://u@h/db",
                Backend::Postgres,
                "postgresql://u@h/db",
            ),
            (
                "mysql://root@127.0.0.1/test",
                Backend::Mysql,
                "mysql://root@127.0.0.1/test",
            ),
            (
                "mariadb://root@127.0.0.1/test",
                Backend::Mysql,
                "mysql://root@127.0.0.1/test",
            ),
        ];
        for (raw, backend, target) in cases {
            let url = DatabaseUrl::parse(raw).unwrap();
            assert_eq!(url.backend(), backend, "{raw}");
            assert_eq!(url.connection_string(), target, "{raw}");
        }
    }

    #[test]
    fn malformed_urls_are_refused_with_a_reason() {
        assert_eq!(
            DatabaseUrl::parse("tokenbridge.db"),
            Err(UrlError::NoScheme)
        );
        assert_eq!(
            DatabaseUrl::parse("redis://127.0.0.1"),
            Err(UrlError::UnknownScheme("redis".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://"),
            Err(UrlError::EmptySqlitePath)
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://:memory:"),
            Err(UrlError::SqliteInMemory)
        );
        assert!(matches!(
            DatabaseUrl::parse("postgres://"),
            Err(UrlError::Malformed { .. })
        ));
        assert!(matches!(
            DatabaseUrl::parse("mysql://root@localhost"),
            Err(UrlError::Malformed { .. })
        ));
    }

    #[test]
    fn display_and_debug_hide_the_password() {
        let url = DatabaseUrl::parse("postgres://app:s3cret@db.internal:5432/tokens").unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://app:***@db.internal:5432/tokens"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
    }

    #[test]
    fn with_database_swaps_only_the_database_name() {
        let url = DatabaseUrl::parse("postgres://postgres@127.0.0.1:5432/test").unwrap();
        let other = url.with_database("tb_1").unwrap();
        assert_eq!(
            other.connection_string(),
            "postgres://postgres@127.0.0.1:5432/tb_1"
        );
    }
}
