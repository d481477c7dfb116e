-- Which accounts signed in through which provider session: a hash of the issuer and the ID
-- token's `sid`, so a Back- or Front-Channel Logout naming a `sid` finds the sign-ins it ends.
-- Kept until the app's sessions that began then have ended (web.session_absolute).
CREATE TABLE provider_sessions (
    sid_key           VARCHAR(64) NOT NULL,
    account_cache_key VARCHAR(449) NOT NULL,
    expires_at        TIMESTAMP NOT NULL,
    PRIMARY KEY (sid_key, account_cache_key)
);
CREATE INDEX provider_sessions_expires_at ON provider_sessions (expires_at);
-- A repeated sign-in callback signs its browser in to the same app session as the first.
ALTER TABLE sign_ins ADD COLUMN session_id VARCHAR(64);
