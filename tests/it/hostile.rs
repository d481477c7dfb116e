//! A local server that answers as a hostile or broken provider or API might: a body of any
//! size streamed without a length, or a huge header. It counts what it managed to send, so a
//! test can tell that the client stopped reading.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What every request gets.
#[derive(Clone)]
pub struct Answer {
    pub status: &'static str,
    /// Extra header lines, each without its line end.
    pub headers: Vec<String>,
    /// Body bytes, streamed in 64 KiB chunks (chunked encoding: no length announced).
    pub body_size: u64,
}

/// A server that answers every request with `json` (200), its `{base}` replaced by its own
/// address: a provider's discovery document, say; `/keys` gets an empty JWKS.
pub fn serve_json(json: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let body = json.replace("{base}", &base);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 16 * 1024];
            let n = stream.read(&mut request).unwrap_or(0);
            let keys = String::from_utf8_lossy(&request[..n]).contains("/keys ");
            let body = if keys { r#"{"keys":[]}"# } else { &body };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    base
}

pub struct Hostile {
    pub base: String,
    sent: Arc<AtomicU64>,
}

impl Hostile {
    /// Body bytes written to clients so far (until they closed the connection).
    pub fn body_bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

pub fn serve(answer: Answer) -> Hostile {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let counted = sent.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let (answer, sent) = (answer.clone(), counted.clone());
            std::thread::spawn(move || {
                let mut request = [0u8; 16 * 1024];
                let _ = stream.read(&mut request);
                let mut head = format!(
                    "HTTP/1.1 {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n",
                    answer.status
                );
                for header in &answer.headers {
                    head.push_str(header);
                    head.push_str("\r\n");
                }
                head.push_str("\r\n");
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                let mut left = answer.body_size;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    let framed = [format!("{n:x}\r\n").as_bytes(), &chunk[..n], b"\r\n"].concat();
                    if stream.write_all(&framed).is_err() {
                        return;
                    }
                    sent.fetch_add(n as u64, Ordering::Relaxed);
                    left -= n as u64;
                }
                let _ = stream.write_all(b"0\r\n\r\n");
            });
        }
    });
    Hostile { base, sent }
}

/// The peak resident memory of a running process, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The provider's answers (discovery, keys, token, revocation all go through this client) are
/// read no further than `identity.max_response_size`: a larger one is a clear error that says
/// which setting, and the rest is never read.
#[tokio::test]
async fn provider_answers_are_read_no_further_than_the_cap() {
    use tokenbridge::identity::http::{HttpError, ProviderHttp};
    let huge = serve(Answer {
        status: "200 OK",
        headers: Vec::new(),
        body_size: 200 << 20,
    });
    let http = ProviderHttp::new(std::time::Duration::from_secs(10), 1 << 20).unwrap();
    let request = openidconnect::http::Request::builder()
        .method("GET")
        .uri(format!("{}/.well-known/openid-configuration", huge.base))
        .body(Vec::new())
        .unwrap();
    let err = http.send(request).await.unwrap_err();
    assert!(
        matches!(err, HttpError::TooLarge { limit } if limit == 1 << 20),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("identity.max_response_size"),
        "{err}"
    );
    // Give the server a moment to notice the closed connection.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        huge.body_bytes_sent() < 32 << 20,
        "{} bytes sent: the client went on reading",
        huge.body_bytes_sent()
    );
}

/// A provider whose metadata names a token endpoint in plain http on another machine is
/// refused as a configuration error before any secret is sent there; likewise an end-session
/// endpoint that is not http(s), which would be sent to browsers as a `Location`.
#[tokio::test]
async fn metadata_naming_insecure_endpoints_is_refused() {
    use tokenbridge::identity::{AcquireError, OidcProvider};
    for (token, end_session) in [
        ("http://login.example.com/token", "{base}/logout"),
        ("{base}/token", "javascript:alert(document.cookie)"),
    ] {
        let json = format!(
            r#"{{"issuer":"{{base}}","authorization_endpoint":"{{base}}/authorize",
            "token_endpoint":"{token}","jwks_uri":"{{base}}/keys",
            "end_session_endpoint":"{end_session}","response_types_supported":["code"],
            "subject_types_supported":["public"],
            "id_token_signing_alg_values_supported":["RS256"]}}"#
        );
        let base = serve_json(&json);
        let mut settings =
            tokenbridge::settings::Settings::from_sources("", "t", &Default::default()).unwrap();
        settings.identity.provider = tokenbridge::settings::ProviderKind::Oidc;
        settings.identity.issuer = Some(base.clone());
        settings.identity.client_id = "app".into();
        settings.identity.client_secret = Some(tokenbridge::secret::Secret::new("s3cret"));
        let provider =
            OidcProvider::new(&settings.identity, "http://127.0.0.1:8080/signin-oidc").unwrap();
        let Err(err) = provider.metadata().await else {
            panic!("{token} {end_session}: metadata accepted");
        };
        assert!(
            matches!(&err, AcquireError::Configuration(m) if m.contains("endpoint that is refused")),
            "{token} {end_session}: {err:?}"
        );
    }
}
