-- Who signed in, when, and whether the worker can still act for them.
CREATE TABLE account_activities (
    account_cache_key       VARCHAR(449) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    account_identifier      VARCHAR(449) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    account_object_id       VARCHAR(128),
    account_tenant_id       VARCHAR(128),
    user_principal_name     VARCHAR(449),
    last_activity           DATETIME(6)  NOT NULL,
    failed_to_acquire_token BOOLEAN      NOT NULL DEFAULT FALSE,
    last_error              TEXT,
    consecutive_failures    INTEGER      NOT NULL DEFAULT 0,
    last_success_at         DATETIME(6),
    next_attempt_at         DATETIME(6),
    signed_out_at           DATETIME(6),
    lease_owner             VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    lease_until             DATETIME(6)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
CREATE INDEX account_activities_last_activity ON account_activities (last_activity);
CREATE INDEX account_activities_upn ON account_activities (user_principal_name);
