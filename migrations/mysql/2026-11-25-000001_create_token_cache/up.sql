-- One MSAL-format token cache per user, keyed by home account id (case-sensitive).
CREATE TABLE token_cache (
    id          VARCHAR(449) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    value       LONGBLOB     NOT NULL,
    version     BIGINT       NOT NULL,
    expires_at  DATETIME(6)  NOT NULL,
    lease_owner VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    lease_until DATETIME(6),
    updated_at  DATETIME(6)  NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
CREATE INDEX token_cache_expires_at ON token_cache (expires_at);
