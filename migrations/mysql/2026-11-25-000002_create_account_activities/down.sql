DROP TABLE account_activities;
