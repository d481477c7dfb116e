//! Reading the client's PEM files: keys (checked to sign), certificates paired with their key
//! by a signature check, never by position, and their validity and thumbprints.

use super::{Certificate, Family, PROBE};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The keys and certificates of one PEM file.
pub(super) type Blocks = (Vec<(EncodingKey, Family)>, Vec<pem::Pem>);

pub(super) fn blocks(path: &Path) -> Result<Blocks, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let parsed =
        pem::parse_many(&text).map_err(|_| format!("{}: not a PEM file", path.display()))?;
    let mut keys = Vec::new();
    let mut certificates = Vec::new();
    for block in parsed {
        let encoded = pem::encode(&block);
        match block.tag() {
            "CERTIFICATE" => certificates.push(block),
            "PRIVATE KEY" | "RSA PRIVATE KEY" => {
                let key = if let Ok(key) = EncodingKey::from_rsa_pem(encoded.as_bytes()) {
                    (key, Family::Rsa)
                } else if let Ok(key) = EncodingKey::from_ec_pem(encoded.as_bytes()) {
                    (key, Family::Ec)
                } else {
                    return Err(format!(
                        "{}: a private key that is neither RSA nor EC (PKCS#8)",
                        path.display()
                    ));
                };
                // An EC key on another curve than P-256 fails here, not at the provider.
                jsonwebtoken::crypto::sign(PROBE, &key.0, probe_algorithm(key.1)).map_err(
                    |_| {
                        format!(
                            "{}: the key cannot sign RS256 or ES256 (an EC key must be P-256)",
                            path.display()
                        )
                    },
                )?;
                keys.push(key);
            }
            "EC PRIVATE KEY" => {
                return Err(format!(
                    "{}: an EC key in SEC1 form; convert it to PKCS#8: openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8",
                    path.display()
                ))
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err(format!(
                    "{}: an encrypted key; store it decrypted in a file only tokenbridge can read",
                    path.display()
                ))
            }
            _ => {}
        }
    }
    Ok((keys, certificates))
}

pub(super) fn probe_algorithm(family: Family) -> Algorithm {
    match family {
        Family::Rsa => Algorithm::RS256,
        Family::Ec => Algorithm::ES256,
    }
}

/// The certificate among `candidates` whose public key checks the key's signature.
pub(super) fn certificate_of(
    key: &EncodingKey,
    family: Family,
    candidates: &[&pem::Pem],
    source: &str,
) -> Result<Option<Certificate>, String> {
    if candidates.is_empty() {
        return Ok(None);
    }
    let algorithm = probe_algorithm(family);
    let signature = jsonwebtoken::crypto::sign(PROBE, key, algorithm)
        .map_err(|_| format!("{source}: the key cannot sign"))?;
    for candidate in candidates {
        let encoded = pem::encode(candidate);
        let public = match family {
            Family::Rsa => DecodingKey::from_rsa_pem(encoded.as_bytes()),
            Family::Ec => DecodingKey::from_ec_pem(encoded.as_bytes()),
        };
        let Ok(public) = public else { continue };
        if jsonwebtoken::crypto::verify(&signature, PROBE, &public, algorithm).unwrap_or(false) {
            return parse_certificate(candidate.contents(), source).map(Some);
        }
    }
    Err(format!(
        "{source}: none of the certificates given is this key's"
    ))
}

fn parse_certificate(der: &[u8], source: &str) -> Result<Certificate, String> {
    use x509_cert::der::Decode;
    let parsed = x509_cert::Certificate::from_der(der)
        .map_err(|e| format!("{source}: its certificate cannot be read: {e}"))?;
    let validity = &parsed.tbs_certificate.validity;
    let seconds = |t: &x509_cert::time::Time| {
        i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
    };
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    Ok(Certificate {
        x5t: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
        x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(der)),
        not_before: seconds(&validity.not_before),
        not_after: seconds(&validity.not_after),
    })
}
