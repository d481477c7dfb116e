-- Which accounts signed in through which provider session: a hash of the issuer and the ID
-- token's `sid`, so a Back- or Front-Channel Logout naming a `sid` finds the sign-ins it ends.
-- Kept until the app's sessions that began then have ended (web.session_absolute).
CREATE TABLE provider_sessions (
    sid_key           VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    account_cache_key VARCHAR(449) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    expires_at        DATETIME(6) NOT NULL,
    PRIMARY KEY (sid_key, account_cache_key),
    INDEX provider_sessions_expires_at (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
-- A repeated sign-in callback signs its browser in to the same app session as the first.
ALTER TABLE sign_ins ADD COLUMN session_id VARCHAR(64);
