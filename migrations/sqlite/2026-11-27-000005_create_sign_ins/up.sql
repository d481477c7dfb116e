-- Sign-in responses already acted on, so that each is redeemed once across every replica: a
-- callback claims its state (by hash) before redeeming the code. The outcome is kept for a
-- repeated callback from the same browser, which is then signed in without redeeming again.
-- outcome: 'pending' while the first callback redeems, then 'signed_in' or 'failed'.
-- Rows live as long as a sign-in may take (10 minutes).
CREATE TABLE sign_ins (
    state_hash      VARCHAR(64)  NOT NULL PRIMARY KEY,
    started_at      TIMESTAMP    NOT NULL,
    outcome         VARCHAR(16)  NOT NULL,
    home_account_id VARCHAR(449),
    display_name    VARCHAR(400),
    session_epoch   BIGINT
);
CREATE INDEX sign_ins_started_at ON sign_ins (started_at);
