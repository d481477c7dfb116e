ALTER TABLE token_cache DROP COLUMN session_epoch;
