-- One MSAL-format token cache per user, keyed by home account id.
CREATE TABLE token_cache (
    id          VARCHAR(449) NOT NULL PRIMARY KEY,
    value       BLOB         NOT NULL,
    version     BIGINT       NOT NULL,
    expires_at  TIMESTAMP    NOT NULL,
    lease_owner VARCHAR(200),
    lease_until TIMESTAMP,
    updated_at  TIMESTAMP    NOT NULL
);
CREATE INDEX token_cache_expires_at ON token_cache (expires_at);
