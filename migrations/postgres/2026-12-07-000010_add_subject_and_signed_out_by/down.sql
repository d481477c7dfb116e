DROP INDEX account_activities_subject;
ALTER TABLE account_activities DROP COLUMN subject;
ALTER TABLE account_activities DROP COLUMN signed_out_by;
