//! `tokenbridge dev-idp`; in a build without the `dev-idp` feature, it says how to get it.

use crate::cli::DevIdpArgs;
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

#[cfg(not(feature = "dev-idp"))]
pub fn run(settings: Settings, args: &DevIdpArgs) -> anyhow::Result<()> {
    effective_settings(settings, args)?;
    Err(crate::Failure::configuration(
        "this tokenbridge was built without the development provider (cargo feature `dev-idp`, \
         on by default): build it with `cargo build --release --features dev-idp`, or run the \
         tokenbridge of a default build",
    )
    .into())
}

#[cfg(feature = "dev-idp")]
pub fn run(settings: Settings, args: &DevIdpArgs) -> anyhow::Result<()> {
    use crate::devidp::DevIdp;
    let settings = effective_settings(settings, args)?;
    actix_web::rt::System::new().block_on(async move {
        let idp = DevIdp::build(&settings)?;
        println!("{}", idp.banner(&settings));
        idp.run_until_stopped().await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use std::time::Duration;

    fn args(flags: &[&str]) -> DevIdpArgs {
        let argv = ["tokenbridge", "dev-idp"].iter().chain(flags).copied();
        match Cli::try_parse_from(argv).unwrap().command {
            Command::DevIdp(args) => args,
            other => panic!("{other:?}"),
        }
    }

    fn defaults() -> Settings {
        Settings::from_sources("", "test", &std::collections::HashMap::new()).unwrap()
    }

    /// A production build (`--no-default-features`) has no provider, and says how to get one
    /// (CI runs this with `cargo test --no-default-features --lib`).
    #[cfg(not(feature = "dev-idp"))]
    #[test]
    fn without_the_feature_the_command_says_how_to_get_it() {
        let error = run(defaults(), &args(&[])).unwrap_err();
        let failure = error.downcast_ref::<crate::Failure>().unwrap();
        assert_eq!(failure.exit_code, 2);
        assert!(error.to_string().contains("--features dev-idp"), "{error}");
    }

    #[test]
    fn flags_override_the_settings() {
        let s = effective_settings(
            defaults(),
            &args(&[
                "--listen",
                "127.0.0.1:7000",
                "--access-token-ttl",
                "60s",
                "--refresh-token-ttl",
                "1d",
                "--rotation",
                "strict",
                "--token-latency",
                "50ms",
                "--api-latency",
                "5ms",
                "--user",
                "bob",
            ]),
        )
        .unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:7000");
        assert_eq!(s.access_token_ttl, Duration::from_secs(60));
        assert_eq!(s.refresh_token_ttl, Duration::from_secs(86_400));
        assert_eq!(s.rotation, crate::settings::Rotation::Strict);
        assert_eq!(
            (s.token_latency, s.api_latency),
            (Duration::from_millis(50), Duration::from_millis(5))
        );
        assert_eq!(s.users, ["bob"]);
        let untouched = effective_settings(defaults(), &args(&[])).unwrap();
        assert_eq!(untouched.users, ["ada", "grace"]);
        assert_eq!(untouched.listen.to_string(), "127.0.0.1:5556");
    }

    #[test]
    fn a_listen_flag_off_loopback_is_refused_by_name() {
        let err = effective_settings(defaults(), &args(&["--listen", "0.0.0.0:5556"])).unwrap_err();
        assert!(
            err.to_string().starts_with("--listen:") && err.to_string().contains("loopback"),
            "{err}"
        );
    }
}
