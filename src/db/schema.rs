// One portable schema for all three backends, written by hand (print-schema differs per
// backend). Keep it in step with migrations/{sqlite,postgres,mysql}/; the migration test checks.

diesel::table! {
    token_cache (id) {
        id -> Varchar,
        value -> Binary,
        version -> BigInt,
        expires_at -> Timestamp,
        lease_owner -> Nullable<Varchar>,
        lease_until -> Nullable<Timestamp>,
        updated_at -> Timestamp,
        session_epoch -> BigInt,
    }
}

diesel::table! {
    account_activities (account_cache_key) {
        account_cache_key -> Varchar,
        account_identifier -> Varchar,
        account_object_id -> Nullable<Varchar>,
        account_tenant_id -> Nullable<Varchar>,
        user_principal_name -> Nullable<Varchar>,
        last_activity -> Timestamp,
        failed_to_acquire_token -> Bool,
        last_error -> Nullable<Text>,
        consecutive_failures -> Integer,
        last_success_at -> Nullable<Timestamp>,
        next_attempt_at -> Nullable<Timestamp>,
        signed_out_at -> Nullable<Timestamp>,
        lease_owner -> Nullable<Varchar>,
        lease_until -> Nullable<Timestamp>,
        last_attempt_at -> Nullable<Timestamp>,
        subject -> Nullable<Varchar>,
        signed_out_by -> Nullable<Varchar>,
    }
}

diesel::table! {
    sign_ins (state_hash) {
        state_hash -> Varchar,
        started_at -> Timestamp,
        outcome -> Varchar,
        home_account_id -> Nullable<Varchar>,
        display_name -> Nullable<Varchar>,
        session_epoch -> Nullable<BigInt>,
        session_id -> Nullable<Varchar>,
    }
}

diesel::table! {
    cache_key_checks (key_id) {
        key_id -> Varchar,
        check_value -> Varchar,
        created_at -> Timestamp,
    }
}

diesel::table! {
    readiness_heartbeat (id) {
        id -> Integer,
        beat_at -> Timestamp,
        beats -> BigInt,
    }
}

diesel::table! {
    worker_passes (pass_id) {
        pass_id -> Varchar,
        started_at -> Timestamp,
        alive_until -> Timestamp,
    }
}

diesel::table! {
    logout_tokens_seen (token_key) {
        token_key -> Varchar,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    provider_sessions (sid_key, account_cache_key) {
        sid_key -> Varchar,
        account_cache_key -> Varchar,
        expires_at -> Timestamp,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    token_cache,
    account_activities,
    sign_ins,
    cache_key_checks,
    readiness_heartbeat,
    worker_passes,
    logout_tokens_seen,
    provider_sessions
);
