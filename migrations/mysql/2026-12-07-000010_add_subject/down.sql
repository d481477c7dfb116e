DROP INDEX account_activities_subject ON account_activities;
ALTER TABLE account_activities DROP COLUMN subject;
