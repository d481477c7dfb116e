-- Back-Channel Logout tokens already acted on, by a hash of their issuer and jti, until they
-- expire: a replayed token is refused by every replica (the caches in Redis keep these there).
CREATE TABLE logout_tokens_seen (
    token_key  VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    expires_at DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
