//! The `openidconnect` types tokenbridge uses: Entra ID's extra claims and token-response
//! fields (other providers simply leave them out), and the end-session endpoint in metadata.

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreClaimName, CoreClaimType, CoreClientAuthMethod,
    CoreGenderClaim, CoreGrantType, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreSubjectIdentifierType,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AdditionalProviderMetadata, EndpointNotSet, EndpointSet, ExtraTokenFields,
    IdTokenFields, ProviderMetadata, StandardTokenResponse,
};
use serde::{Deserialize, Serialize};

/// Claims Entra ID adds to ID tokens (other providers simply leave them out).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EntraClaims {
    pub oid: Option<String>,
    pub tid: Option<String>,
    pub upn: Option<String>,
}
impl AdditionalClaims for EntraClaims {}

/// Fields Entra ID adds to token responses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EntraTokenFields {
    pub client_info: Option<String>,
    pub ext_expires_in: Option<serde_json::Value>,
    pub refresh_in: Option<serde_json::Value>,
    pub foci: Option<String>,
}
impl ExtraTokenFields for EntraTokenFields {}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogoutMetadata {
    pub end_session_endpoint: Option<String>,
}
impl AdditionalProviderMetadata for LogoutMetadata {}

pub type IdFields = IdTokenFields<
    EntraClaims,
    EntraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
pub type ProviderTokenResponse = StandardTokenResponse<IdFields, CoreTokenType>;
pub type IdTokenClaimsOf = openidconnect::IdTokenClaims<EntraClaims, CoreGenderClaim>;
pub type Metadata = ProviderMetadata<
    LogoutMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;
pub type ClientWith<Auth, Token> = openidconnect::Client<
    EntraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    super::error::ProviderError,
    ProviderTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    Auth,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    Token,
    EndpointNotSet,
>;
pub type OidcClient = ClientWith<EndpointSet, EndpointSet>;
