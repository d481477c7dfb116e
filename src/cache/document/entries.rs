//! The five entry kinds. Every field is a JSON string; fields we do not know are kept in
//! `extra` and written back unchanged. Missing fields read as empty (such an entry simply never
//! matches), and so do fields written as `null`, so one odd entry does not make a user's whole
//! cache unreadable.

use crate::secret::Secret;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

pub type Extra = Map<String, Value>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccessTokenEntry {
    #[serde(deserialize_with = "nullable")]
    pub credential_type: String,
    pub secret: Secret,
    #[serde(deserialize_with = "nullable")]
    pub home_account_id: String,
    #[serde(deserialize_with = "nullable")]
    pub environment: String,
    #[serde(deserialize_with = "nullable")]
    pub client_id: String,
    #[serde(deserialize_with = "nullable")]
    pub realm: String,
    #[serde(deserialize_with = "nullable")]
    pub target: String,
    #[serde(deserialize_with = "nullable")]
    pub token_type: String,
    #[serde(deserialize_with = "string_or_number")]
    pub cached_at: String,
    #[serde(deserialize_with = "string_or_number")]
    pub expires_on: String,
    #[serde(deserialize_with = "string_or_number")]
    pub extended_expires_on: String,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_string_or_number"
    )]
    pub refresh_on: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl AccessTokenEntry {
    /// Expiry in Unix seconds; an unreadable value counts as already expired.
    pub fn expires_on(&self) -> i64 {
        self.expires_on.trim().parse().unwrap_or(i64::MIN)
    }

    /// Seconds before expiry at which this token is no longer handed out: `margin`, but never
    /// more than half the token's lifetime (`cached_at` to `expires_on`).
    pub fn refresh_margin(&self, margin: i64) -> i64 {
        let cached_at: i64 = self.cached_at.trim().parse().unwrap_or(i64::MIN);
        let lifetime = self.expires_on().saturating_sub(cached_at).max(0);
        margin.min(lifetime / 2)
    }

    /// When the provider suggests refreshing early (`refresh_in`), if it did.
    pub fn refresh_on(&self) -> Option<i64> {
        self.refresh_on
            .as_deref()
            .and_then(|v| v.trim().parse().ok())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RefreshTokenEntry {
    #[serde(deserialize_with = "nullable")]
    pub credential_type: String,
    pub secret: Secret,
    #[serde(deserialize_with = "nullable")]
    pub home_account_id: String,
    #[serde(deserialize_with = "nullable")]
    pub environment: String,
    #[serde(deserialize_with = "nullable")]
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_id: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_string_or_number"
    )]
    pub last_modification_time: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdTokenEntry {
    #[serde(deserialize_with = "nullable")]
    pub credential_type: String,
    pub secret: Secret,
    #[serde(deserialize_with = "nullable")]
    pub home_account_id: String,
    #[serde(deserialize_with = "nullable")]
    pub environment: String,
    #[serde(deserialize_with = "nullable")]
    pub realm: String,
    #[serde(deserialize_with = "nullable")]
    pub client_id: String,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccountEntry {
    #[serde(deserialize_with = "nullable")]
    pub home_account_id: String,
    #[serde(deserialize_with = "nullable")]
    pub environment: String,
    #[serde(deserialize_with = "nullable")]
    pub realm: String,
    #[serde(deserialize_with = "nullable")]
    pub local_account_id: String,
    #[serde(deserialize_with = "nullable")]
    pub username: String,
    #[serde(deserialize_with = "nullable")]
    pub authority_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppMetadataEntry {
    #[serde(deserialize_with = "nullable")]
    pub client_id: String,
    #[serde(deserialize_with = "nullable")]
    pub environment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_id: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A string field written as `null` reads as empty: MSAL Python writes an account's
/// `local_account_id` as null after a refresh that brought no ID token.
fn nullable<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// Timestamps are strings in the schema; some writers emit numbers. Read both, write strings.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(optional_string_or_number(d)?.unwrap_or_default())
}

fn optional_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a timestamp string, got {other}"
        ))),
    }
}
