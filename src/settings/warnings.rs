//! What works but an operator should hear about at start: no cache keys, files others can
//! read, metrics or an app URL in the wrong place; and the settings derived from others (the
//! development provider's redirect URIs follow `web.public_url`).

use super::{is_loopback, is_loopback_url, Settings};
use std::path::Path;

impl Settings {
    /// Things that work but that an operator should hear about, logged at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.cache.keys.is_none() {
            warnings.push(format!(
                "token caches are stored UNENCRYPTED: set {} (or cache.keys_file) to seal them",
                super::env_var_for("cache.keys")
            ));
        } else if self.cache.read_plaintext {
            warnings.push(
                "cache.read_plaintext is on: unencrypted cache rows are accepted; turn it off once \
                 every row has been rewritten"
                    .to_owned(),
            );
        }
        for (key, address) in [
            ("web.metrics_listen", self.web.metrics_listen),
            ("worker.metrics_listen", self.worker.metrics_listen),
        ] {
            if let Some(address) = address.filter(|a| !is_loopback(a.ip())) {
                warnings.push(format!(
                    "{key} = {address} is not a loopback address: anyone who can reach it reads \
                     the metrics (request and acquisition counts, pool state); keep it on \
                     127.0.0.1 or behind a firewall"
                ));
            }
        }
        // On this machine, the URL people open must reach the port serve listens on.
        let public = &self.web.public_url;
        let listen = self.web.listen.port();
        if is_loopback_url(public) && listen != 0 && public.port_or_known_default() != Some(listen)
        {
            warnings.push(format!(
                "web.public_url {public} is not where serve listens (web.listen {}): sign-in \
                 sends browsers to the URL; set web.public_url = \"http://127.0.0.1:{listen}\"",
                self.web.listen
            ));
        }
        for (api, missing) in self.scopes_not_asked_for() {
            warnings.push(format!(
                "API {api} needs {} which a sign-in does not ask for (identity.scopes): users \
                 who never consented to them get \"interaction required\" for it; add them to \
                 identity.scopes or leave it unset to ask for every API's",
                missing.join(" ")
            ));
        }
        let database = self.database.url.sqlite_path().map(|p| ("database.url", p));
        // A key directory (identity.client_key_file): the files in it.
        let files =
            self.secret_files.iter().cloned().flat_map(|(key, path)| {
                match std::fs::read_dir(&path) {
                    Ok(entries) => entries
                        .filter_map(Result::ok)
                        .map(|e| (key, e.path()))
                        .filter(|(_, p)| p.is_file())
                        .collect(),
                    Err(_) => vec![(key, path)],
                }
            });
        for (key, path) in files.chain(database) {
            if let Some(mode) = readable_by_others(&path) {
                warnings.push(format!(
                    "{} ({key}) can be read by other users of this machine (mode {mode:04o}): \
                     `chmod 600 {}`",
                    path.display(),
                    path.display()
                ));
            }
        }
        warnings
    }
}

/// The file's permission bits when group or others may read or write it.
fn readable_by_others(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o066 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

impl Settings {
    /// The development provider's first client (the app as `serve` runs it) accepts the
    /// redirect URIs of `web.public_url`, so moving the app to another port takes one setting.
    pub(super) fn with_app_registered(mut self) -> Self {
        let (signed_in, signed_out) =
            (self.web.redirect_uri(), self.web.post_logout_redirect_uri());
        if let Some(client) = self.dev_idp.clients.first_mut() {
            if !client.redirect_uris.contains(&signed_in) {
                client.redirect_uris.push(signed_in);
            }
            if !client.post_logout_redirect_uris.contains(&signed_out) {
                client.post_logout_redirect_uris.push(signed_out);
            }
            if client.backchannel_logout_uri.is_none() {
                client.backchannel_logout_uri = Some(self.web.backchannel_logout_uri());
            }
            if client.frontchannel_logout_uri.is_none() {
                client.frontchannel_logout_uri = Some(self.web.frontchannel_logout_uri());
            }
        }
        self
    }
}
