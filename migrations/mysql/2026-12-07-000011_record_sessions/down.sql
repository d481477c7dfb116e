ALTER TABLE sign_ins DROP COLUMN session_id;
DROP TABLE provider_sessions;
