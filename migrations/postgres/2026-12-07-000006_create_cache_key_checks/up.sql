-- One check value per cache key id: a MAC of a fixed label under the key, written by the first
-- process that uses the key. A process whose key under that id has another value (a typo, a
-- truncated copy, a regenerated key) is refused before it opens or writes any row, so a key
-- mistake is a configuration error and never a user's "sign in again".
CREATE TABLE cache_key_checks (
    key_id      VARCHAR(64) NOT NULL PRIMARY KEY,
    check_value VARCHAR(64) NOT NULL,
    created_at  TIMESTAMP   NOT NULL
);
