-- The ID token's `sub` of the account's last sign-in: how a Back-Channel Logout token, which
-- names the user by `sub` (at Entra ID a per-client pairwise value, not the object id), finds
-- the account it ends.
ALTER TABLE account_activities ADD COLUMN subject VARCHAR(255);
CREATE INDEX account_activities_subject ON account_activities (subject);
