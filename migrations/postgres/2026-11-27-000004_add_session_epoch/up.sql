-- Which sign-ins this row's sessions belong to: chosen at random when the row is created (at
-- sign-in) and kept while it lives. A session cookie carries it and is honoured only while it
-- matches, so sign-out (which deletes the row) ends every copy of every session of the user.
ALTER TABLE token_cache ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;
