ALTER TABLE account_activities DROP COLUMN last_attempt_at;
