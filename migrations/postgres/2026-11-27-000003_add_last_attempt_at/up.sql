-- When a worker last recorded an outcome for the account: an account a worker acted for
-- within `older_than` is not due again, so workers sharing a pass never do one twice.
ALTER TABLE account_activities ADD COLUMN last_attempt_at TIMESTAMP;
