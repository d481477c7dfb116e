//! The provider's own sign-in sessions: the browser's cookie names one, and each has a public
//! session id (`sid`, in the ID tokens it leads to) and the clients signed in through it, so
//! that ending it can tell those clients (Back- and Front-Channel Logout).

use super::keys::random_token;
use std::collections::{BTreeSet, HashMap};

/// One session at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub username: String,
    /// The session id clients see (`sid`); never the cookie's value.
    pub sid: String,
    /// The clients that signed the user in through this session.
    pub clients: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub struct Sessions {
    by_cookie: HashMap<String, Session>,
}

impl Sessions {
    /// A new session for `username`: the cookie's value and the session id.
    pub fn start(&mut self, username: &str) -> (String, String) {
        let (cookie, sid) = (random_token(), random_token());
        self.by_cookie.insert(
            cookie.clone(),
            Session {
                username: username.to_owned(),
                sid: sid.clone(),
                clients: BTreeSet::new(),
            },
        );
        (cookie, sid)
    }

    /// The session the cookie names.
    pub fn get(&self, cookie: &str) -> Option<&Session> {
        self.by_cookie.get(cookie)
    }

    /// `client_id` signed the user in through the session with this `sid`.
    pub fn joined(&mut self, sid: &str, client_id: &str) {
        if let Some(session) = self.by_cookie.values_mut().find(|s| s.sid == sid) {
            session.clients.insert(client_id.to_owned());
        }
    }

    /// Ends the session the cookie names; it, if there was one.
    pub fn end(&mut self, cookie: &str) -> Option<Session> {
        self.by_cookie.remove(cookie)
    }

    /// Ends every session of `username`; them.
    pub fn end_user(&mut self, username: &str) -> Vec<Session> {
        let cookies: Vec<String> = self
            .by_cookie
            .iter()
            .filter(|(_, s)| s.username == username)
            .map(|(cookie, _)| cookie.clone())
            .collect();
        cookies
            .iter()
            .filter_map(|cookie| self.by_cookie.remove(cookie))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_remember_their_clients_and_end_by_cookie_or_by_user() {
        let mut sessions = Sessions::default();
        let (ada1, sid1) = sessions.start("ada");
        let (_ada2, _) = sessions.start("ada");
        let (grace, _) = sessions.start("grace");
        assert_ne!(ada1, sid1, "the sid is not the cookie");
        sessions.joined(&sid1, "app");
        assert_eq!(sessions.get(&ada1).unwrap().clients.len(), 1);
        let ended = sessions.end(&ada1).unwrap();
        assert_eq!((ended.sid, ended.clients.len()), (sid1, 1));
        assert_eq!(sessions.end_user("ada").len(), 1);
        assert!(sessions.get(&grace).is_some());
    }
}
