-- Second factors: one authenticator-app (TOTP) factor per user and the
-- user's recovery codes. Both go with their user. Mirrors
-- store/sqlite/migrations/0004_mfa.sql.

-- The TOTP secret is sealed by the caller before it gets here. A row with
-- confirmed_at NULL is an enrolment waiting for its first code. last_step is
-- the newest RFC 6238 step accepted: a code is accepted only for a newer
-- step, so the same code is never accepted twice, even inside its window.
CREATE TABLE mfa_totp (
    user_id      text COLLATE "C" PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    sealed       bytea NOT NULL,
    created_at   timestamptz NOT NULL,
    confirmed_at timestamptz, -- NULL while enrolment is pending
    last_step    bigint NOT NULL DEFAULT 0
);

-- Only a MAC of each recovery code is stored. The primary key is also the
-- lookup of UseRecoveryCode, and keeps a user's codes distinct.
CREATE TABLE recovery_codes (
    user_id  text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_mac bytea NOT NULL,
    used_at  timestamptz, -- NULL while unused
    PRIMARY KEY (user_id, code_mac)
);
