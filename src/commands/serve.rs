//! `tokenbridge serve`.

use crate::settings::Settings;
use crate::web::Application;
use anyhow::Context;

pub fn run(settings: &Settings) -> anyhow::Result<()> {
    crate::warn_about_settings(settings);
    settings
        .identity
        .require_client()
        .with_context(|| format!("cannot sign users in{}", settings.file_hint()))?;
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        let url = settings.web.public_url.as_str().trim_end_matches('/');
        tracing::info!(
            port = app.port(),
            "tokenbridge serve: open {url}/ (sign-in redirect URI {})",
            settings.web.redirect_uri()
        );
        println!(
            "tokenbridge serve: listening on {}:{}; open {url}/",
            settings.web.listen.ip(),
            app.port()
        );
        if let Some(address) = app.metrics_address() {
            tracing::info!(%address, "metrics: http://{address}/metrics");
        }
        app.run_until_stopped().await?;
        Ok(())
    })
}
