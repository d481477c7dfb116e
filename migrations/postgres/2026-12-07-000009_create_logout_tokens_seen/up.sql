-- Back-Channel Logout tokens already acted on, by a hash of their issuer and jti, until they
-- expire: a replayed token is refused by every replica (the caches in Redis keep these there).
CREATE TABLE logout_tokens_seen (
    token_key  VARCHAR(64) NOT NULL PRIMARY KEY,
    expires_at TIMESTAMP NOT NULL
);
