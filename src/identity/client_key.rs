//! `private_key_jwt` (OpenID Connect Core 9, RFC 7523): the client proves who it is with a JWT
//! signed by a key of its own instead of a shared secret.
//!
//! The keys are read from `identity.client_key_file`: a PEM file (PKCS#8 RSA or EC P-256, with
//! or without its X.509 certificate beside it), or a directory of such files, read in name order
//! (names starting with `.` skipped, as Kubernetes' `..data` links are). The first usable key
//! signs; a key whose certificate has expired or is not yet valid is skipped, with a WARN. A
//! certificate is paired with its key by checking a signature, never by position alone, and
//! gives the assertion's `x5t` and `x5t#S256` headers (what Entra ID finds an uploaded
//! certificate by). The files are looked at again before each assertion (a `stat` each): a key
//! that rotation wrote is used from the next request on, with no restart. A rewrite that does
//! not parse keeps the keys read before, with a WARN. Keys never appear in logs, errors or
//! `Debug`.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pem_files::{blocks, certificate_of};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// How long an assertion is valid: the request it goes with, with room for clock skew.
const LIFETIME_SECS: i64 = 300;
/// RFC 7523 section 2.2's `client_assertion_type`.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Signed with a key to find its certificate (never sent anywhere).
const PROBE: &[u8] = b"tokenbridge: which certificate is this key's";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    Ec,
}

struct Certificate {
    /// SHA-1 of the DER, base64url: Entra ID's `x5t`.
    x5t: String,
    /// SHA-256 of the DER, base64url.
    x5t_s256: String,
    not_before: i64,
    not_after: i64,
}

struct ClientKey {
    /// The file it came from and its place there (`key.pem#1`): never the key.
    source: String,
    key: EncodingKey,
    family: Family,
    certificate: Option<Certificate>,
    /// Whether its skipping has been logged already.
    warned: AtomicBool,
}

/// What the files held when they were read, and how they looked then.
struct KeySet {
    stamp: Vec<(PathBuf, Option<SystemTime>, u64)>,
    keys: Vec<ClientKey>,
}

/// The client's keys (see the module documentation).
pub struct ClientKeys {
    key_path: PathBuf,
    certificate_path: Option<PathBuf>,
    loaded: Mutex<Arc<KeySet>>,
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKeys")
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

/// A signed client assertion, and what it was, for an error message (no secret in it).
pub struct Assertion {
    pub jwt: String,
    pub described: String,
}

impl Assertion {
    /// The form parameters that carry it (RFC 7523 section 2.2).
    pub fn params(&self) -> [(&'static str, String); 2] {
        [
            ("client_assertion_type", ASSERTION_TYPE.to_owned()),
            ("client_assertion", self.jwt.clone()),
        ]
    }
}

impl std::fmt::Debug for Assertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assertion")
            .field("described", &self.described)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: i64,
    nbf: i64,
    exp: i64,
}

impl ClientKeys {
    /// Reads the keys; an error says which file and why (never what is in it).
    pub fn open(key_path: &Path, certificate_path: Option<&Path>) -> Result<Self, String> {
        let set = read(key_path, certificate_path)?;
        Ok(Self {
            key_path: key_path.to_owned(),
            certificate_path: certificate_path.map(Path::to_owned),
            loaded: Mutex::new(Arc::new(set)),
        })
    }

    /// The keys as the files hold them now: read again when a file changed since.
    fn current(&self) -> Arc<KeySet> {
        let held = crate::sync::lock(&self.loaded).clone();
        let now = stamp(&files(&self.key_path), self.certificate_path.as_deref());
        if now == held.stamp {
            return held;
        }
        match read(&self.key_path, self.certificate_path.as_deref()) {
            Ok(set) => {
                tracing::info!(path = %self.key_path.display(), keys = set.keys.len(), "client keys read again");
                let set = Arc::new(set);
                *crate::sync::lock(&self.loaded) = set.clone();
                set
            }
            Err(e) => {
                tracing::warn!(error = %e, "the client key files changed but cannot be read; signing with the keys read before");
                held
            }
        }
    }

    /// A client assertion for `client_id` to `audience`, valid from `now` (Unix seconds),
    /// signed by the first usable key with an algorithm the provider accepts (`accepted`: its
    /// `token_endpoint_auth_signing_alg_values_supported`, None when it does not say).
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        accepted: Option<&[String]>,
        now: i64,
    ) -> Result<Assertion, String> {
        let set = self.current();
        let key = usable(&set, now).ok_or_else(|| {
            format!(
                "private_key_jwt: no usable key in {}: every key's certificate has expired or is \
                 not valid yet",
                self.key_path.display()
            )
        })?;
        let algorithm = algorithm(key.family, accepted)?;
        let mut header = Header::new(algorithm);
        header.typ = Some("JWT".into());
        if let Some(certificate) = &key.certificate {
            header.x5t = Some(certificate.x5t.clone());
            header.x5t_s256 = Some(certificate.x5t_s256.clone());
        }
        let claims = Claims {
            iss: client_id,
            sub: client_id,
            aud: audience,
            jti: crate::secret::random_token(),
            iat: now,
            nbf: now,
            exp: now + LIFETIME_SECS,
        };
        let described = format!(
            "private_key_jwt signed {algorithm:?} with {}{}, aud {audience}",
            key.source,
            key.certificate.as_ref().map_or(String::new(), |c| format!(
                " (certificate x5t#S256 {})",
                c.x5t_s256
            )),
        );
        let jwt = jsonwebtoken::encode(&header, &claims, &key.key)
            .map_err(|e| format!("{described}: cannot sign: {e}"))?;
        Ok(Assertion { jwt, described })
    }
}

/// The first key whose certificate (if any) is valid at `now`; each skipped one logged once.
fn usable(set: &KeySet, now: i64) -> Option<&ClientKey> {
    set.keys.iter().find(|key| match &key.certificate {
        Some(c) if now < c.not_before || now >= c.not_after => {
            if !key.warned.swap(true, Ordering::Relaxed) {
                let why = if now < c.not_before {
                    "is not valid yet"
                } else {
                    "has expired"
                };
                tracing::warn!(key = %key.source, x5t_s256 = %c.x5t_s256, "private_key_jwt: skipping a key whose certificate {why}");
            }
            false
        }
        _ => true,
    })
}

/// RS256 where the provider takes it (Entra ID does; PS256 otherwise), ES256 for P-256.
fn algorithm(family: Family, accepted: Option<&[String]>) -> Result<Algorithm, String> {
    let takes = |alg: &str| accepted.is_none_or(|list| list.iter().any(|a| a == alg));
    let candidates: &[(Algorithm, &str)] = match family {
        Family::Rsa => &[(Algorithm::RS256, "RS256"), (Algorithm::PS256, "PS256")],
        Family::Ec => &[(Algorithm::ES256, "ES256")],
    };
    candidates
        .iter()
        .find(|(_, name)| takes(name))
        .map(|(alg, _)| *alg)
        .ok_or_else(|| {
            format!(
                "private_key_jwt: the provider accepts none of {:?} for this key (it lists {:?})",
                candidates.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
                accepted.unwrap_or_default()
            )
        })
}

/// The key files: the file, or the directory's files in name order.
fn files(path: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(path) else {
        return vec![path.to_owned()];
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn stamp(files: &[PathBuf], certificate: Option<&Path>) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    files
        .iter()
        .map(PathBuf::as_path)
        .chain(certificate)
        .map(|path| {
            let meta = std::fs::metadata(path).ok();
            (
                path.to_owned(),
                meta.as_ref().and_then(|m| m.modified().ok()),
                meta.map_or(0, |m| m.len()),
            )
        })
        .collect()
}

fn read(key_path: &Path, certificate_path: Option<&Path>) -> Result<KeySet, String> {
    let files = files(key_path);
    let stamp = stamp(&files, certificate_path);
    let mut shared_certificates = Vec::new();
    if let Some(path) = certificate_path {
        let (keys, certificates) = blocks(path)?;
        if !keys.is_empty() {
            return Err(format!(
                "{}: identity.client_certificate_file holds a private key; it takes certificates only",
                path.display()
            ));
        }
        shared_certificates = certificates;
    }
    let mut keys = Vec::new();
    for file in &files {
        let (file_keys, certificates) = blocks(file)?;
        for (n, (key, family)) in file_keys.into_iter().enumerate() {
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            let source = format!("{name}#{}", n + 1);
            let candidates: Vec<&pem::Pem> =
                certificates.iter().chain(&shared_certificates).collect();
            let certificate = certificate_of(&key, family, &candidates, &source)?;
            keys.push(ClientKey {
                source,
                key,
                family,
                certificate,
                warned: AtomicBool::new(false),
            });
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "{}: no private key found (expected PEM \"PRIVATE KEY\" blocks: PKCS#8 RSA or EC P-256)",
            key_path.display()
        ));
    }
    Ok(KeySet { stamp, keys })
}

mod pem_files;
#[cfg(test)]
mod tests;
