//! Encryption at rest for cache rows: AES-256-GCM with a random 96-bit nonce, the key id in the
//! envelope, and the row id as associated data, so a blob copied into another user's row does
//! not open. Several keys may be configured for rotation: the first seals, all open.
//!
//! Envelope: `MAGIC | key-id length (1 byte) | key id | nonce (12 bytes) | ciphertext+tag`.
//! A plain (unsealed) value is MSAL-format JSON, which starts with `{`, never with `MAGIC`.

use crate::secret::Secret;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hmac::{Hmac, Mac};
use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

const MAGIC: &[u8; 4] = b"TBs1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// What a key's check value authenticates: a fixed label, so the value says nothing of the key
/// but whether two processes hold the same one.
const CHECK_LABEL: &[u8] = b"tokenbridge cache key check v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error(
        "expected one or more `ID=BASE64KEY` entries separated by commas or new lines \
         (entry {0} has no `=`)"
    )]
    Syntax(usize),
    #[error("no keys given")]
    Empty,
    #[error("key id in entry {0} must be 1 to 64 characters of A-Z a-z 0-9 . _ -")]
    BadId(usize),
    #[error("key `{0}` is listed twice")]
    DuplicateId(String),
    #[error("key `{0}` is not valid base64")]
    NotBase64(String),
    #[error(
        "key `{id}` is {len} bytes long; AES-256 needs exactly 32 (e.g. `openssl rand -base64 32`)"
    )]
    WrongLength { id: String, len: usize },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the value is sealed with key `{0}`, which is not configured")]
    UnknownKey(String),
    #[error("the value is sealed but no cache keys are configured (set TOKENBRIDGE_CACHE__KEYS)")]
    NoKeys,
    #[error("the sealed value is truncated")]
    Truncated,
    #[error("the sealed value does not open: wrong key, tampered bytes, or another row's value")]
    Tampered,
    /// The key under this id is not the one the stored check value was made with: a typo, a
    /// truncated copy, or a regenerated key. A configuration error, never the user's.
    #[error(
        "cache key `{0}` is not the key that id stands for in the token cache store (its check \
         value differs: a typo, a truncated copy or a regenerated key?); give every process \
         the same value for `{0}`"
    )]
    KeyDiffers(String),
    /// The key under this id has not been compared with the store's check value yet (the store
    /// did not answer): nothing is opened as corrupt or sealed with it until it has.
    #[error("cache key `{0}` has not been checked against the token cache store yet")]
    KeyUnchecked(String),
    #[error("the value is not sealed, and cache.read_plaintext is off")]
    PlaintextRefused,
    #[error("sealing failed")]
    Encrypt,
}

struct SealKey {
    id: String,
    cipher: Aes256Gcm,
    /// HMAC-SHA256 of [`CHECK_LABEL`] under the key, base64: see [`KeyCheck`].
    check: String,
}

/// The configured sealing keys; the first one seals.
#[derive(Clone)]
pub struct SealKeys(std::sync::Arc<Vec<SealKey>>);

impl fmt::Debug for SealKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.0.iter().map(|k| k.id.as_str()).collect();
        f.debug_tuple("SealKeys").field(&ids).finish()
    }
}

impl SealKeys {
    /// Parses `id=base64key` entries separated by commas, spaces or new lines.
    pub fn parse(secret: &Secret) -> Result<Self, KeyError> {
        let mut keys: Vec<SealKey> = Vec::new();
        let entries = secret
            .expose()
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty());
        for (n, entry) in entries.enumerate() {
            let position = n + 1;
            let (id, material) = entry.split_once('=').ok_or(KeyError::Syntax(position))?;
            let valid_id = (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !valid_id {
                return Err(KeyError::BadId(position));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(KeyError::DuplicateId(id.to_owned()));
            }
            let bytes =
                decode_base64(material).ok_or_else(|| KeyError::NotBase64(id.to_owned()))?;
            let wrong_length = || KeyError::WrongLength {
                id: id.to_owned(),
                len: bytes.len(),
            };
            let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| wrong_length())?;
            let check = check_value(&bytes).ok_or_else(wrong_length)?;
            keys.push(SealKey {
                id: id.to_owned(),
                cipher,
                check,
            });
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self(std::sync::Arc::new(keys)))
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|k| k.id.as_str())
    }
}

/// A key's check value: HMAC-SHA256 of a fixed label under the key, base64. It tells whether
/// two processes hold the same key under one id without revealing anything of the key.
/// (`None` only if HMAC refused the key, which it does for no length.)
fn check_value(key: &[u8]) -> Option<String> {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).ok()?;
    mac.update(CHECK_LABEL);
    Some(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// A new key entry `id=BASE64` (32 random bytes from the operating system), as
/// `TOKENBRIDGE_CACHE__KEYS` and key files hold them.
pub fn new_key_entry(id: &str) -> Secret {
    let key = Aes256Gcm::generate_key(&mut OsRng);
    Secret::new(format!(
        "{id}={}",
        base64::engine::general_purpose::STANDARD.encode(key)
    ))
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .ok()
}

/// Where a configured key stands against the check value the store holds for its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Not compared yet (the store has not answered): a row that fails to open under it is a
    /// key problem, not a corrupt row, and nothing is sealed with it.
    Unchecked = 0,
    /// The store's check value for the id is this key's.
    Matches = 1,
    /// The store's check value for the id is another key's.
    Differs = 2,
}

impl KeyState {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Matches,
            2 => Self::Differs,
            _ => Self::Unchecked,
        }
    }
}

/// A configured key's id and check value, for the store to compare with the one it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCheck {
    pub id: String,
    pub value: String,
}

/// Seals and opens cache values according to the configuration, and knows which of its keys
/// have been checked against the store (clones share that knowledge).
#[derive(Debug, Clone)]
pub struct Sealer {
    keys: Option<SealKeys>,
    read_plaintext: bool,
    /// One [`KeyState`] per key, in the keys' order.
    states: Arc<[AtomicU8]>,
}

impl Sealer {
    pub fn new(keys: Option<SealKeys>, read_plaintext: bool) -> Self {
        let count = keys.as_ref().map_or(0, |k| k.0.len());
        Self {
            keys,
            read_plaintext,
            states: (0..count).map(|_| AtomicU8::new(0)).collect(),
        }
    }

    /// No encryption: values are stored as plain JSON.
    pub fn plaintext() -> Self {
        Self::new(None, true)
    }

    pub fn is_sealing(&self) -> bool {
        self.keys.is_some()
    }

    /// The id of the key new writes are sealed with (the first); None: rows are written plain.
    pub fn writing_key(&self) -> Option<&str> {
        self.keys
            .as_ref()
            .and_then(|k| k.0.first())
            .map(|k| k.id.as_str())
    }

    /// Each configured key's id and check value.
    pub fn key_checks(&self) -> Vec<KeyCheck> {
        self.keys
            .iter()
            .flat_map(|k| k.0.iter())
            .map(|k| KeyCheck {
                id: k.id.clone(),
                value: k.check.clone(),
            })
            .collect()
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.keys.as_ref()?.0.iter().position(|k| k.id == id)
    }

    /// Records what the store's check value for `id` said of this process's key.
    pub fn record_check(&self, id: &str, state: KeyState) {
        if let Some(n) = self.position(id) {
            self.states[n].store(state as u8, Ordering::Release);
        }
    }

    pub fn key_state(&self, id: &str) -> Option<KeyState> {
        let n = self.position(id)?;
        Some(KeyState::from_u8(self.states[n].load(Ordering::Acquire)))
    }

    /// Some key has not been compared with the store's check value yet.
    pub fn keys_unchecked(&self) -> bool {
        self.states
            .iter()
            .any(|s| s.load(Ordering::Acquire) == KeyState::Unchecked as u8)
    }

    /// Every key matches the store's check value (true without keys).
    pub fn keys_checked(&self) -> bool {
        self.states
            .iter()
            .all(|s| s.load(Ordering::Acquire) == KeyState::Matches as u8)
    }

    /// Why this process may not trust its keys yet: a key that differs from the store's (first),
    /// else one not checked yet; `None` when every key matches.
    pub fn key_problem(&self) -> Option<SealError> {
        let keys = self.keys.as_ref()?;
        let state = |n: usize| KeyState::from_u8(self.states[n].load(Ordering::Acquire));
        let with = |wanted: KeyState| {
            (0..keys.0.len())
                .find(|&n| state(n) == wanted)
                .map(|n| keys.0[n].id.clone())
        };
        with(KeyState::Differs)
            .map(SealError::KeyDiffers)
            .or_else(|| with(KeyState::Unchecked).map(SealError::KeyUnchecked))
    }

    /// Sealing is allowed only with a first key that matches the store's check value: a row
    /// sealed with a mistaken key would not open on the correctly keyed replicas.
    pub fn may_seal(&self) -> Result<(), SealError> {
        let Some(keys) = &self.keys else {
            return Ok(());
        };
        let first = keys.0.first().ok_or(SealError::NoKeys)?;
        match KeyState::from_u8(self.states[0].load(Ordering::Acquire)) {
            KeyState::Matches => Ok(()),
            KeyState::Differs => Err(SealError::KeyDiffers(first.id.clone())),
            KeyState::Unchecked => Err(SealError::KeyUnchecked(first.id.clone())),
        }
    }

    /// Seals `plaintext` for the row `row_id` with the first key. Callers that store the value
    /// check [`Self::may_seal`] first.
    pub fn seal(&self, row_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let Some(keys) = &self.keys else {
            return Ok(plaintext.to_vec());
        };
        let key = keys.0.first().ok_or(SealError::NoKeys)?;
        let header = header(&key.id)?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = associated_data(&header, row_id);
        let ciphertext = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Encrypt)?;
        let mut out = header;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Opens a stored value. A sealed value that fails authentication is [`SealError::Tampered`]
    /// only under a key that matches the store's check value; under one that differs or was
    /// not checked, it is that key's problem, not the row's.
    pub fn open<'a>(&self, row_id: &str, stored: &'a [u8]) -> Result<Cow<'a, [u8]>, SealError> {
        if !stored.starts_with(MAGIC) {
            // Unsealed JSON: accepted when no keys are configured, or while migrating to keys.
            return if self.keys.is_none() || self.read_plaintext {
                Ok(Cow::Borrowed(stored))
            } else {
                Err(SealError::PlaintextRefused)
            };
        }
        let keys = self.keys.as_ref().ok_or(SealError::NoKeys)?;
        let id_len = usize::from(*stored.get(MAGIC.len()).ok_or(SealError::Truncated)?);
        let header_len = MAGIC.len() + 1 + id_len;
        let header = stored.get(..header_len).ok_or(SealError::Truncated)?;
        let id =
            std::str::from_utf8(&header[MAGIC.len() + 1..]).map_err(|_| SealError::Tampered)?;
        let n = keys
            .0
            .iter()
            .position(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let key = &keys.0[n];
        let rest = &stored[header_len..];
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Truncated);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let aad = associated_data(header, row_id);
        key.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Cow::Owned)
            .map_err(
                |_| match KeyState::from_u8(self.states[n].load(Ordering::Acquire)) {
                    KeyState::Matches => SealError::Tampered,
                    KeyState::Differs => SealError::KeyDiffers(key.id.clone()),
                    KeyState::Unchecked => SealError::KeyUnchecked(key.id.clone()),
                },
            )
    }
}

/// The id of the key a stored value is sealed with (`None`: a plain or truncated value).
pub fn sealed_with(stored: &[u8]) -> Option<&str> {
    let rest = stored.strip_prefix(MAGIC)?;
    let (&len, rest) = rest.split_first()?;
    std::str::from_utf8(rest.get(..usize::from(len))?).ok()
}

/// The first bytes of every value sealed with `key_id` (to find such rows in the store).
pub fn sealed_prefix(key_id: &str) -> Option<Vec<u8>> {
    header(key_id).ok()
}

fn header(key_id: &str) -> Result<Vec<u8>, SealError> {
    let len = u8::try_from(key_id.len()).map_err(|_| SealError::Encrypt)?;
    let mut header = Vec::with_capacity(MAGIC.len() + 1 + key_id.len() + NONCE_LEN);
    header.extend_from_slice(MAGIC);
    header.push(len);
    header.extend_from_slice(key_id.as_bytes());
    Ok(header)
}

/// The header and the row id are authenticated: neither can be changed without detection.
fn associated_data(header: &[u8], row_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + row_id.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(row_id.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
    const K2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="; // 32 bytes

    /// A sealer whose keys all match the store's check values.
    fn sealer(spec: &str) -> Sealer {
        let sealer = Sealer::new(Some(SealKeys::parse(&Secret::new(spec)).unwrap()), false);
        for check in sealer.key_checks() {
            sealer.record_check(&check.id, KeyState::Matches);
        }
        sealer
    }

    #[test]
    fn round_trips_and_hides_the_plaintext() {
        let s = sealer(&format!("k1={K1}"));
        let sealed = s.seal("uid.utid", br#"{"AccessToken":{}}"#).unwrap();
        assert!(sealed.starts_with(MAGIC));
        assert!(!sealed.windows(11).any(|w| w == b"AccessToken"));
        assert_eq!(
            &*s.open("uid.utid", &sealed).unwrap(),
            br#"{"AccessToken":{}}"#
        );
    }

    #[test]
    fn nonces_are_random() {
        let s = sealer(&format!("k1={K1}"));
        assert_ne!(s.seal("a", b"{}").unwrap(), s.seal("a", b"{}").unwrap());
    }

    #[test]
    fn a_value_moved_to_another_row_does_not_open() {
        let s = sealer(&format!("k1={K1}"));
        let sealed = s.seal("alice", b"{}").unwrap();
        assert_eq!(s.open("bob", &sealed), Err(SealError::Tampered));
    }

    #[test]
    fn tampering_anywhere_is_detected() {
        let s = sealer(&format!("k1={K1}"));
        let sealed = s.seal("alice", b"{\"a\":1}").unwrap();
        for i in MAGIC.len() + 3..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(s.open("alice", &bad), Err(SealError::Tampered), "byte {i}");
        }
    }

    #[test]
    fn truncated_values_are_errors_not_panics() {
        let s = sealer(&format!("k1={K1}"));
        let sealed = s.seal("alice", b"{}").unwrap();
        for len in MAGIC.len()..sealed.len() {
            let err = s.open("alice", &sealed[..len]).unwrap_err();
            assert!(
                matches!(
                    err,
                    SealError::Truncated | SealError::Tampered | SealError::UnknownKey(_)
                ),
                "length {len}: {err:?}"
            );
        }
    }

    #[test]
    fn rotation_first_key_seals_all_keys_open() {
        let old = sealer(&format!("old={K1}"));
        let sealed_with_old = old.seal("alice", b"{}").unwrap();
        let rotated = sealer(&format!("new={K2}, old={K1}"));
        assert_eq!(&*rotated.open("alice", &sealed_with_old).unwrap(), b"{}");
        let sealed_with_new = rotated.seal("alice", b"{}").unwrap();
        assert_eq!(sealed_with_new[MAGIC.len() + 1..MAGIC.len() + 4], *b"new");
        assert_eq!(
            old.open("alice", &sealed_with_new),
            Err(SealError::UnknownKey("new".into()))
        );
    }

    #[test]
    fn wrong_key_under_the_same_id_is_tampered() {
        let a = sealer(&format!("k={K1}"));
        let b = sealer(&format!("k={K2}"));
        let sealed = a.seal("alice", b"{}").unwrap();
        assert_eq!(b.open("alice", &sealed), Err(SealError::Tampered));
    }

    #[test]
    fn a_failure_to_open_is_the_key_s_problem_until_the_key_is_checked() {
        let sealed = sealer(&format!("k={K1}")).seal("alice", b"{}").unwrap();
        let other = Sealer::new(
            Some(SealKeys::parse(&Secret::new(format!("k={K2}"))).unwrap()),
            false,
        );
        assert_eq!(other.key_state("k"), Some(KeyState::Unchecked));
        assert_eq!(
            other.open("alice", &sealed),
            Err(SealError::KeyUnchecked("k".into()))
        );
        assert_eq!(other.may_seal(), Err(SealError::KeyUnchecked("k".into())));
        assert_eq!(
            other.key_problem(),
            Some(SealError::KeyUnchecked("k".into()))
        );
        other.record_check("k", KeyState::Differs);
        assert_eq!(
            other.open("alice", &sealed),
            Err(SealError::KeyDiffers("k".into()))
        );
        assert_eq!(other.may_seal(), Err(SealError::KeyDiffers("k".into())));
        assert!(!other.keys_checked());
        let message = other.key_problem().unwrap().to_string();
        assert!(
            message.contains("`k`") && !message.contains(K2),
            "{message}"
        );
        other.record_check("k", KeyState::Matches);
        assert_eq!(other.open("alice", &sealed), Err(SealError::Tampered));
        assert_eq!(other.may_seal(), Ok(()));
        assert!(other.keys_checked() && other.key_problem().is_none());
        assert!(Sealer::plaintext().keys_checked());
    }

    #[test]
    fn check_values_say_whether_keys_are_equal_and_nothing_more() {
        let a = sealer(&format!("k={K1},old={K2}")).key_checks();
        let b = sealer(&format!("k={K1}")).key_checks();
        let c = sealer(&format!("k={K2}")).key_checks();
        assert_eq!(a[0], b[0]);
        assert_ne!(a[0].value, c[0].value);
        assert_eq!(
            a[1].value, c[0].value,
            "the value is the key's, not the id's"
        );
        assert!(a
            .iter()
            .all(|k| !k.value.contains(K1) && !k.value.contains(K2)));
        assert_eq!(a[0].value.len(), 44, "base64 of 32 bytes");
    }

    #[test]
    fn the_key_a_value_is_sealed_with_is_read_from_its_header() {
        let sealed = sealer(&format!("new={K1}")).seal("a", b"{}").unwrap();
        assert_eq!(sealed_with(&sealed), Some("new"));
        assert!(sealed.starts_with(&sealed_prefix("new").unwrap()));
        assert_eq!(sealed_with(b"{}"), None);
        assert_eq!(sealed_with(&sealed[..5]), None);
    }

    #[test]
    fn new_keys_are_random_and_parse() {
        let (a, b) = (new_key_entry("k1"), new_key_entry("k1"));
        assert_ne!(a.expose(), b.expose());
        let keys = SealKeys::parse(&a).unwrap();
        assert_eq!(keys.ids().collect::<Vec<_>>(), ["k1"]);
    }

    #[test]
    fn plaintext_rules() {
        let none = Sealer::plaintext();
        assert_eq!(none.seal("a", b"{}").unwrap(), b"{}");
        assert_eq!(&*none.open("a", b"{}").unwrap(), b"{}");
        let sealed = sealer(&format!("k1={K1}")).seal("a", b"{}").unwrap();
        assert_eq!(none.open("a", &sealed), Err(SealError::NoKeys));
        assert_eq!(
            sealer(&format!("k1={K1}")).open("a", b"{}"),
            Err(SealError::PlaintextRefused)
        );
        let migrating = Sealer {
            read_plaintext: true,
            ..sealer(&format!("k1={K1}"))
        };
        assert_eq!(&*migrating.open("a", b"{}").unwrap(), b"{}");
    }

    #[test]
    fn key_parsing_errors_never_echo_key_material() {
        let cases = [
            ("", KeyError::Empty),
            ("nokey", KeyError::Syntax(1)),
            (
                &format!("a={K1},a={K2}") as &str,
                KeyError::DuplicateId("a".into()),
            ),
            ("bad id=abcd", KeyError::Syntax(1)),
            ("k=%%%%", KeyError::NotBase64("k".into())),
            (
                "k=c2hvcnQ=",
                KeyError::WrongLength {
                    id: "k".into(),
                    len: 5,
                },
            ),
        ];
        for (spec, expected) in cases {
            let err = SealKeys::parse(&Secret::new(spec)).unwrap_err();
            assert_eq!(err, expected, "{spec:?}");
            assert!(!err.to_string().contains(K1));
        }
        let keys = SealKeys::parse(&Secret::new(format!("a={K1}\nb={K2}"))).unwrap();
        assert_eq!(keys.ids().collect::<Vec<_>>(), ["a", "b"]);
        assert!(!format!("{keys:?}").contains(K1));
    }
}
