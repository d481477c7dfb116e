DROP TABLE logout_tokens_seen;
