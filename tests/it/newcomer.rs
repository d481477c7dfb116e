//! What a newcomer with only the README trips on, answered by the binary itself.

use std::process::Command;

/// `tokenbridge worker` (or `serve`) run where there is no settings file says that none was
/// found and where it looked, not only that a setting is missing.
#[test]
fn a_missing_settings_file_is_named_when_a_setting_is_required() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["worker", "serve"] {
        let out = Command::new(env!("CARGO_BIN_EXE_tokenbridge"))
            .current_dir(dir.path())
            .arg(command)
            .env_clear()
            .envs(std::env::var("PATH").map(|p| ("PATH".to_owned(), p)))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let looked = dir.path().join("settings.toml");
        assert!(
            stderr.contains("identity.client_id")
                && stderr.contains(&format!(
                    "no settings file was found at {}",
                    looked.display()
                ))
                && stderr.contains("--config"),
            "{command}: {stderr}"
        );
    }
}
