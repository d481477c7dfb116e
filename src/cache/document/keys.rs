//! Entry keys and matching rules, exactly as MSAL Python and MSAL.NET compute them.

/// `{home_account_id}-{environment}-accesstoken-{client_id}-{realm}-{target}`, lowercased.
pub fn access_token(
    home_account_id: &str,
    environment: &str,
    client_id: &str,
    realm: &str,
    target: &str,
) -> String {
    [
        home_account_id,
        environment,
        "AccessToken",
        client_id,
        realm,
        target,
    ]
    .join("-")
    .to_lowercase()
}

/// `{home_account_id}-{environment}-refreshtoken-{client_id}--`: refresh tokens are
/// cross-tenant, and no `target` is written, so MSAL Python and MSAL.NET agree on the key.
pub fn refresh_token(home_account_id: &str, environment: &str, client_id: &str) -> String {
    [
        home_account_id,
        environment,
        "RefreshToken",
        client_id,
        "",
        "",
    ]
    .join("-")
    .to_lowercase()
}

/// `{home_account_id}-{environment}-idtoken-{client_id}-{realm}-`, lowercased.
pub fn id_token(home_account_id: &str, environment: &str, client_id: &str, realm: &str) -> String {
    [
        home_account_id,
        environment,
        "IdToken",
        client_id,
        realm,
        "",
    ]
    .join("-")
    .to_lowercase()
}

/// `{home_account_id}-{environment}-{realm}`, lowercased.
pub fn account(home_account_id: &str, environment: &str, realm: &str) -> String {
    [home_account_id, environment, realm]
        .join("-")
        .to_lowercase()
}

/// `appmetadata-{environment}-{client_id}`; MSAL Python does not lowercase this one.
pub fn app_metadata(environment: &str, client_id: &str) -> String {
    format!("appmetadata-{environment}-{client_id}")
}

/// Scopes as MSAL stores them in `target`: split on spaces, de-duplicated, sorted by code
/// point, joined with one space. Case is kept.
pub fn target<'a>(scopes: impl IntoIterator<Item = &'a str>) -> String {
    let mut scopes: Vec<&str> = scopes.into_iter().flat_map(str::split_whitespace).collect();
    scopes.sort_unstable();
    scopes.dedup();
    scopes.join(" ")
}

/// True when every requested scope is in `target` (compared without case, as MSAL.NET does).
pub fn target_covers(target: &str, requested: &[&str]) -> bool {
    requested
        .iter()
        .flat_map(|s| s.split_whitespace())
        .all(|wanted| {
            target
                .split_whitespace()
                .any(|granted| granted.eq_ignore_ascii_case(wanted))
        })
}

/// Hosts that name the same Entra ID cloud; MSAL reads entries written under any alias.
const ALIASES: &[&[&str]] = &[
    &[
        "login.microsoftonline.com",
        "login.windows.net",
        "login.microsoft.com",
        "sts.windows.net",
    ],
    &["login.partner.microsoftonline.cn", "login.chinacloudapi.cn"],
    &["login.microsoftonline.us", "login.usgovcloudapi.net"],
];

/// Whether two `environment` values name the same authority host.
pub fn same_environment(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
        || ALIASES.iter().any(|group| {
            group.iter().any(|h| h.eq_ignore_ascii_case(a))
                && group.iter().any(|h| h.eq_ignore_ascii_case(b))
        })
}
