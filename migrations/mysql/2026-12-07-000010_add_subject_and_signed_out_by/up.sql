-- The ID token's `sub` of the account's last sign-in: how a Back-Channel Logout token, which
-- names the user by `sub` (at Entra ID a per-client pairwise value, not the object id), finds
-- the account it ends.
ALTER TABLE account_activities ADD COLUMN subject VARCHAR(255);
CREATE INDEX account_activities_subject ON account_activities (subject);
-- Who ended the sign-in a sign-out mark records: "app" (POST /signout) or "provider" (a
-- Back- or Front-Channel Logout), so a worker pass can say which.
ALTER TABLE account_activities ADD COLUMN signed_out_by VARCHAR(16);
