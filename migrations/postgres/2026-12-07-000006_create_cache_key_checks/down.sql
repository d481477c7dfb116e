DROP TABLE cache_key_checks;
