//! tokenbridge's own section of a user's document, `TokenBridgeSession`: the app's sessions
//! signed in with this cache (by a random session id the session cookie holds), each with the
//! provider session it began in. A page is served only to a session still listed, so ending a
//! session is a write of the document (its version changes, and every replica reads it again);
//! a logout that names a provider session ends the app's sessions from it, and the user's
//! cache once none is left. MSAL ignores the section and keeps it, as any section it does not
//! know.

use super::CacheDocument;
use serde::{Deserialize, Serialize};

/// One of the app's sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppSession {
    /// The key of the provider session (`sid`) the sign-in came through; empty when the ID
    /// token named none.
    pub sid_key: String,
    /// When it began, Unix seconds.
    pub signed_in_at: i64,
}

impl CacheDocument {
    /// Lists a new session `session_id`, begun at `now` in provider session `sid_key`, and
    /// drops those begun before `ended_before` (past the longest a session lives).
    pub fn add_session(
        &mut self,
        session_id: &str,
        sid_key: Option<&str>,
        now: i64,
        ended_before: i64,
    ) {
        self.sessions
            .retain(|_, session| session.signed_in_at >= ended_before);
        self.sessions.insert(
            session_id.to_owned(),
            AppSession {
                sid_key: sid_key.unwrap_or_default().to_owned(),
                signed_in_at: now,
            },
        );
    }

    /// Whether session `session_id` is still listed.
    pub fn has_session(&self, session_id: &str) -> bool {
        self.sessions.contains_key(session_id)
    }

    /// Ends the sessions begun in provider session `sid_key`; how many there were.
    pub fn end_sessions_from(&mut self, sid_key: &str) -> usize {
        let before = self.sessions.len();
        self.sessions
            .retain(|_, session| session.sid_key != sid_key);
        before - self.sessions.len()
    }

    /// The sessions listed.
    pub fn sessions(&self) -> impl Iterator<Item = (&String, &AppSession)> {
        self.sessions.iter()
    }
}
