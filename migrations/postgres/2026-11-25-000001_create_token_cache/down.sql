DROP TABLE token_cache;
