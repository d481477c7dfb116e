-- Sign-in responses already acted on, so that each is redeemed once across every replica: a
-- callback claims its state (by hash) before redeeming the code. The outcome is kept for a
-- repeated callback from the same browser, which is then signed in without redeeming again.
-- outcome: 'pending' while the first callback redeems, then 'signed_in' or 'failed'.
-- Rows live as long as a sign-in may take (10 minutes).
CREATE TABLE sign_ins (
    state_hash      VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    started_at      DATETIME(6)  NOT NULL,
    outcome         VARCHAR(16)  NOT NULL,
    home_account_id VARCHAR(449) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    display_name    VARCHAR(400),
    session_epoch   BIGINT
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
CREATE INDEX sign_ins_started_at ON sign_ins (started_at);
