//! `tokenbridge dev-idp`.

use crate::cli::DevIdpArgs;
use crate::devidp::DevIdp;
use crate::settings::{loopback_addr, DevIdpSettings, Settings};

/// The `[dev_idp]` settings with the command line's flags applied.
pub fn effective_settings(settings: Settings, args: &DevIdpArgs) -> anyhow::Result<DevIdpSettings> {
    let mut s = settings.dev_idp;
    if let Some(listen) = &args.listen {
        s.listen = loopback_addr("--listen", listen).map_err(|e| match e {
            crate::settings::SettingsError::Invalid { message, .. } => {
                anyhow::anyhow!("--listen: {message}")
            }
            other => other.into(),
        })?;
    }
    s.access_token_ttl = args.access_token_ttl.unwrap_or(s.access_token_ttl);
    s.refresh_token_ttl = args.refresh_token_ttl.unwrap_or(s.refresh_token_ttl);
    s.rotation = args.rotation.unwrap_or(s.rotation);
    s.token_latency = args.token_latency.unwrap_or(s.token_latency);
    s.api_latency = args.api_latency.unwrap_or(s.api_latency);
    if !args.users.is_empty() {
        s.users.clone_from(&args.users);
    }
    Ok(s)
}

pub fn run(settings: Settings, args: &DevIdpArgs) -> anyhow::Result<()> {
    let settings = effective_settings(settings, args)?;
    actix_web::rt::System::new().block_on(async move {
        let idp = DevIdp::build(&settings)?;
        println!("{}", idp.banner(&settings));
        idp.run_until_stopped().await?;
        Ok(())
    })
}
