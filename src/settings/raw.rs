//! The settings' raw shape, as the file and the environment give it, and what turns it into
//! [`Settings`]: sections a command does not use back to their defaults, relative paths, and
//! validation.

use super::*;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSettings {
    database: RawDatabase,
    cache: cache::RawCache,
    log: log::RawLog,
    identity: identity::RawIdentity,
    api: api::RawApi,
    apis: std::collections::BTreeMap<String, api::RawApi>,
    web: web::RawWeb,
    web_api: web_api::RawWebApi,
    worker: worker::RawWorker,
    dev_idp: dev_idp::RawDevIdp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDatabase {
    url: String,
    pool_size: u32,
    connect_timeout: String,
    busy_timeout: String,
}

impl Default for RawDatabase {
    fn default() -> Self {
        Self {
            url: "sqlite://tokenbridge.db".into(),
            pool_size: 8,
            connect_timeout: "5s".into(),
            busy_timeout: "5s".into(),
        }
    }
}

impl RawSettings {
    /// Every section the command does not use back to its defaults: parsed (a mistyped key
    /// was already an error), not validated, no secret read.
    pub(super) fn keep_only(&mut self, sections: Sections) {
        fn reset<T: Default>(used: bool, section: &mut T) {
            if !used {
                *section = T::default();
            }
        }
        if !sections.cache {
            // Where the caches live still counts: `migrate` says it has nothing to do in Redis.
            let cache = std::mem::take(&mut self.cache);
            self.cache = cache::RawCache::default();
            self.cache.url = cache.url;
            self.cache.url_file = cache.url_file;
            self.cache.key_prefix = cache.key_prefix;
        }
        reset(sections.identity, &mut self.identity);
        reset(sections.api, &mut self.api);
        reset(sections.api, &mut self.apis);
        if !sections.web {
            // Where the app is reached still counts: `dev-idp` registers its redirect URIs.
            let public_url = std::mem::take(&mut self.web.public_url);
            self.web = web::RawWeb::default();
            self.web.public_url = public_url;
        }
        reset(sections.web, &mut self.web_api);
        reset(sections.worker, &mut self.worker);
        reset(sections.dev_idp, &mut self.dev_idp);
    }

    /// One rule for relative paths: a relative SQLite path and relative `*_file` paths name
    /// files beside the settings file, wherever the command is run from.
    pub(super) fn resolve_paths(&mut self, base_dir: &Path) {
        let url = self.database.url.trim();
        if let Some(path) = url.strip_prefix("sqlite://") {
            let relative =
                !path.is_empty() && !path.starts_with(':') && Path::new(path).is_relative();
            if relative && !base_dir.as_os_str().is_empty() {
                self.database.url = format!("sqlite://{}", base_dir.join(path).display());
            }
        }
        for path in [
            &mut self.cache.keys_file,
            &mut self.cache.url_file,
            &mut self.identity.client_secret_file,
            &mut self.identity.client_key_file,
            &mut self.identity.client_certificate_file,
            &mut self.web.session_key_file,
        ]
        .into_iter()
        .chain(self.dev_idp.paths_mut())
        .flatten()
        {
            if path.is_relative() {
                *path = base_dir.join(&*path);
            }
        }
    }

    pub(super) fn validate(self, sections: Sections) -> Result<Settings, SettingsError> {
        let secret_files = [
            ("cache.keys_file", &self.cache.keys_file),
            ("cache.url_file", &self.cache.url_file),
            (
                "identity.client_secret_file",
                &self.identity.client_secret_file,
            ),
            ("identity.client_key_file", &self.identity.client_key_file),
            ("web.session_key_file", &self.web.session_key_file),
        ]
        .into_iter()
        .filter_map(|(key, path)| Some((key, path.clone()?)))
        .collect();
        let url = DatabaseUrl::parse(&self.database.url)
            .map_err(|e| invalid("database.url", e.to_string()))?;
        if !(1..=1024).contains(&self.database.pool_size) {
            return Err(invalid(
                "database.pool_size",
                "expected a number of connections from 1 to 1024",
            ));
        }
        let connect_timeout =
            parse_duration("database.connect_timeout", &self.database.connect_timeout)?;
        if connect_timeout.is_zero() {
            return Err(invalid(
                "database.connect_timeout",
                "must be longer than 0s",
            ));
        }
        let busy_timeout = parse_duration("database.busy_timeout", &self.database.busy_timeout)?;

        let cache = self.cache.validate(sections)?;
        let named_apis = api::validate_named(self.apis)?;
        let web = self.web.validate()?;
        let identity = self.identity.validate()?;
        let web_api = self.web_api.validate(&identity.client_id)?;
        if sections.web {
            must_name_an_api("web.profile_api", &web.profile_api, &named_apis)?;
            if web_api.enabled {
                must_name_an_api("web_api.api", &web_api.api, &named_apis)?;
            }
        }
        Ok(Settings {
            database: DatabaseSettings {
                url,
                pool_size: self.database.pool_size,
                connect_timeout,
                busy_timeout,
            },
            cache,
            log: self.log.validate()?,
            identity,
            api: self.api.validate(DEFAULT_API)?,
            named_apis,
            web,
            web_api,
            worker: self.worker.validate()?,
            dev_idp: self.dev_idp.validate()?,
            secret_files,
            missing_file: None,
        }
        .with_app_registered())
    }
}

/// `name`, the value of `key`, must name an API: `default` or one of `named`.
fn must_name_an_api(
    key: &'static str,
    name: &str,
    named: &std::collections::BTreeMap<String, ApiSettings>,
) -> Result<(), SettingsError> {
    if name == DEFAULT_API || named.contains_key(name) {
        return Ok(());
    }
    Err(invalid(
        key,
        format!(
            "names no API: expected \"default\" ([api]) or one of the [apis.NAME] sections ({})",
            named.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    ))
}
