//! Values as settings take them: durations, sizes, URLs (and whether one may carry secrets),
//! secrets from the environment or a file, Redis key prefixes. Each error names the key.

use super::{env_var_for, invalid, is_loopback, SettingsError};
use crate::secret::Secret;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) fn parse_duration(key: &str, value: &str) -> Result<Duration, SettingsError> {
    humantime::parse_duration(value).map_err(|e| {
        invalid(
            key.to_owned(),
            format!("expected a duration such as \"5s\" or \"90d\" ({e})"),
        )
    })
}

/// `cache.key_prefix`: printable, no spaces, no braces (the store puts the user id between
/// braces after it).
pub(crate) fn check_key_prefix(prefix: String) -> Result<String, SettingsError> {
    let prefix = prefix.trim().to_owned();
    let fine = (1..=64).contains(&prefix.len())
        && prefix
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '{' | '}'));
    if fine {
        Ok(prefix)
    } else {
        Err(invalid(
            "cache.key_prefix",
            "expected 1 to 64 printable characters without spaces or braces, such as \"tokenbridge\"",
        ))
    }
}

/// An absolute http(s) URL.
pub(crate) fn parse_url(key: &str, value: &str) -> Result<url::Url, SettingsError> {
    let url = url::Url::parse(value)
        .map_err(|e| invalid(key.to_owned(), format!("expected an absolute URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(
            key.to_owned(),
            "expected an http:// or https:// URL",
        ));
    }
    Ok(url)
}

/// A size in bytes: a number, or one with `KiB` or `MiB` ("1MiB"), from 1 KiB to 1 GiB.
pub(crate) fn parse_size(key: &str, value: &str) -> Result<usize, SettingsError> {
    let value = value.trim();
    let (number, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => value.split_at(at),
        None => (value, ""),
    };
    let unit = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        _ => 0,
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| (1 << 10..=1 << 30).contains(n))
        .ok_or_else(|| {
            invalid(
                key.to_owned(),
                "expected a size from 1KiB to 1024MiB, such as \"1MiB\" or \"512KiB\"",
            )
        })
}

/// Why `url` may not carry secrets (client secrets, codes, tokens), if it may not: plain http
/// to another machine, unless the operator allowed it with `allowed`. https, and http to this
/// machine's loopback (the development provider), are fine.
pub fn insecure_transport(url: &url::Url, allowed: bool) -> Option<String> {
    let fine = match url.scheme() {
        "https" => true,
        "http" => allowed || is_loopback_url(url),
        _ => false,
    };
    if fine {
        return None;
    }
    Some(if url.scheme() == "http" {
        format!(
            "{} is plain http to another machine: client secrets, codes and tokens would cross \
             the network in clear; use https (or set allow_insecure_http = true where the \
             network itself is trusted)",
            url_without_credentials(url)
        )
    } else {
        format!("{} is not an https URL", url_without_credentials(url))
    })
}

/// A URL whose host is 127.0.0.0/8, ::1 or `localhost`.
pub fn is_loopback_url(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => is_loopback(ip.into()),
        Some(url::Host::Ipv6(ip)) => is_loopback(ip.into()),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn url_without_credentials(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.to_string()
}

/// A duration longer than zero.
pub(crate) fn positive(key: &str, value: &str) -> Result<Duration, SettingsError> {
    let d = parse_duration(key, value)?;
    if d.is_zero() {
        return Err(invalid(key.to_owned(), "must be longer than 0s"));
    }
    Ok(d)
}

/// Reads a secret from the environment-provided value or from a file, never both.
pub(crate) fn secret_from(
    key: &str,
    value: Option<Secret>,
    file: Option<PathBuf>,
) -> Result<Option<Secret>, SettingsError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(invalid(
            key.to_owned(),
            format!("set either {} or `{key}_file`, not both", env_var_for(key)),
        )),
        (Some(value), None) if value.expose().trim().is_empty() => Ok(None),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                invalid(
                    key.to_owned(),
                    format!("cannot read `{key}_file` {}: {e}", path.display()),
                )
            })?;
            Ok(Some(Secret::new(text.trim().to_owned())))
        }
        (None, None) => Ok(None),
    }
}
