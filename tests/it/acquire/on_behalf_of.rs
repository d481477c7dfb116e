//! On-behalf-of against the development provider: a single-page app's token for tokenbridge's
//! API passes the resource-server checks and is exchanged for Graph tokens for that user (with
//! a refresh token), with a client secret or with private_key_jwt; a token that is not one
//! for this API is refused as the user's business (interaction required), never as ours.

use super::Rig;
use crate::dev_idp::web_api::{spa_token, with_spa};
use crate::serve::private_key_jwt::{with_key, FIXTURE_CERT, FIXTURE_KEY};
use tokenbridge::db::Backend;
use tokenbridge::identity::provider::BearerRules;
use tokenbridge::identity::AcquireError;
use tokenbridge::secret::Secret;
use tokenbridge::settings::Exchange;

fn rules() -> BearerRules {
    BearerRules {
        audiences: vec![crate::dev_idp::CLIENT_ID.into()],
        scopes: vec!["access_as_user".into()],
    }
}

#[tokio::test]
async fn a_spa_s_token_is_checked_and_exchanged_for_the_user() {
    let Some(rig) = Rig::new("acquire::on_behalf_of", Backend::Sqlite, with_spa).await else {
        return;
    };
    let user_token = spa_token(&rig.idp).await;
    for key in [false, true] {
        let acquirer = if key {
            rig.acquirer_with(&rig.clock, |s| {
                with_key(s, std::path::Path::new(FIXTURE_KEY));
                s.identity.client_certificate_file = Some(FIXTURE_CERT.into());
            })
        } else {
            rig.acquirer(&rig.clock)
        };
        let provider = acquirer.provider();
        let caller = provider
            .validate_access_token(&user_token, &rules())
            .await
            .unwrap();
        assert_eq!(caller.scopes, ["access_as_user"]);
        let loaded = provider.metadata().await.unwrap();
        let redeemed = provider
            .redeem_on_behalf_of(&loaded, &caller.raw, &["User.Read"], Exchange::OnBehalfOf)
            .await
            .unwrap();
        let id_token = provider.validate_id_token(&redeemed).await.unwrap();
        assert!(id_token.is_some(), "openid asked for, as MSAL asks");
        let tokens = redeemed.tokens(id_token);
        assert!(tokens.refresh_token.is_some(), "offline_access asked for");
        assert!(
            tokens.client_info.is_some(),
            "the account, as Entra ID names it"
        );
        let me = rig.idp.me(tokens.access_token.expose()).await;
        assert_eq!(me.status(), 200);
    }
    assert_eq!(rig.idp.counters().await["on_behalf_of"], 2);

    // Not a token for this API: the user's to fix (sign in again), not a configuration error.
    let acquirer = rig.acquirer(&rig.clock);
    let loaded = acquirer.provider().metadata().await.unwrap();
    let refused = acquirer
        .provider()
        .redeem_on_behalf_of(
            &loaded,
            &Secret::new("not-a-token"),
            &["User.Read"],
            Exchange::OnBehalfOf,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, AcquireError::InteractionRequired { reason } if reason.contains("AADSTS50013")),
        "{refused:?}"
    );
    assert!(acquirer.config_problem().is_none());
}
