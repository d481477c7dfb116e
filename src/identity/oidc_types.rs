//! The `openidconnect` types tokenbridge uses: Entra ID's extra claims and token-response
//! fields (other providers simply leave them out), and the extra metadata tokenbridge reads.

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreClaimName, CoreClaimType, CoreClientAuthMethod,
    CoreGenderClaim, CoreGrantType, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreSubjectIdentifierType,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AdditionalProviderMetadata, EndpointNotSet, EndpointSet, ExtraTokenFields,
    IdTokenFields, ProviderMetadata, StandardTokenResponse,
};
use serde::{Deserialize, Serialize};

/// Claims Entra ID adds to ID tokens (other providers simply leave them out), and the session
/// id (`sid`) of Front- and Back-Channel Logout, which Entra ID and many others send.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EntraClaims {
    pub oid: Option<String>,
    pub tid: Option<String>,
    pub upn: Option<String>,
    pub sid: Option<String>,
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

/// Metadata beyond OpenID Discovery's core that tokenbridge uses: RP-initiated logout, RFC 7009
/// token revocation and RFC 9207's authorization response `iss`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraMetadata {
    pub end_session_endpoint: Option<String>,
    pub revocation_endpoint: Option<String>,
    pub authorization_response_iss_parameter_supported: Option<bool>,
}
impl AdditionalProviderMetadata for ExtraMetadata {}

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
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    super::jwk::Jwk,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;
pub type ClientWith<Auth, Token> = openidconnect::Client<
    EntraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    super::jwk::Jwk,
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
