//! `/readyz` sees writes that fail after start: not the answer of a write rolled back (which
//! never reaches the disk) but of real writes, and a committed heartbeat when none was made
//! lately. An SQLite database on a small filesystem that fills up is `not_writable` while
//! sign-ins fail, and ready again once there is room.

use crate::support;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokenbridge::db::{migrate, Backend, DatabaseUrl, DbConnection};

/// A tmpfs mounted for the test, unmounted at the end (even when it fails).
struct SmallFilesystem(PathBuf);

impl SmallFilesystem {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output();
        mounted
            .is_ok_and(|out| out.status.success())
            .then(|| Self(at.to_owned()))
    }

    /// Writes a file until the filesystem is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn readyz_sees_a_full_disk_and_room_again() {
    let test = "serve::readiness::full_disk";
    let dir = tempfile::tempdir().unwrap();
    let Some(small) = SmallFilesystem::mount(&dir.path().join("small"), "4m") else {
        support::skip(test, "a small tmpfs mount (mount(8), run as root)");
        return;
    };
    let url = DatabaseUrl::parse(&format!("sqlite://{}", small.0.join("t.db").display())).unwrap();
    migrate::run_pending(&mut DbConnection::open(&url, Duration::from_secs(1)).unwrap()).unwrap();
    let app = super::spawn_app_with(
        test,
        Backend::Sqlite,
        |_| {},
        |s| {
            s.database.url = url.clone();
            s.database.busy_timeout = Duration::from_millis(500);
        },
    )
    .await
    .unwrap();
    let readyz = || async {
        let response = app.get("/readyz").await;
        let status = response.status().as_u16();
        (status, response.json::<serde_json::Value>().await.unwrap())
    };
    app.sign_in("ada").await;
    assert_eq!(readyz().await.0, 200);

    let filler = small.fill();
    // No real write since ada's, long enough ago: the probe's committed heartbeat finds out.
    tokio::time::sleep(Duration::from_millis(5100)).await;
    let (status, body) = readyz().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"], "not_writable", "{body}");
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let refused = app.sign_in_with(&browser, "/signin", "grace").await;
    assert_eq!(refused.status(), 503, "a sign-in on a full disk");

    std::fs::remove_file(filler).unwrap();
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (status, body) = readyz().await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still not ready with room on the disk: {body}"
        );
    }
    let signed_in = app.sign_in_with(&browser, "/signin", "grace").await;
    assert_eq!(signed_in.status(), 303, "a sign-in with room again");
}
