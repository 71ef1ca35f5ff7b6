-- The audit log: security events (sign-ins, failed sign-ins of existing
-- accounts, changes of password, email or second factors, admin actions).
-- Mirrors store/sqlite/migrations/0009_audit.sql. Rows are appended and,
-- past the retention period, deleted; nothing ever changes one, and the
-- trigger below refuses any UPDATE outright.

-- id comes from a sequence, so it orders the log and pages it without
-- depending on the clocks of the instances that wrote it. user_id has no
-- foreign key: an account's history outlives changes to the account.
-- detail is a small JSON object of whitelisted, non-secret facts.
CREATE TABLE audit_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time       timestamptz NOT NULL,
    type       text NOT NULL,
    user_id    text COLLATE "C" NOT NULL DEFAULT '',
    session_id text NOT NULL DEFAULT '',
    ip         text NOT NULL DEFAULT '',
    user_agent text NOT NULL DEFAULT '',
    outcome    text NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}'
);

-- One account's events, newest first (GET /auth/activity, the admin
-- listing filtered by user); one type's events; and the retention delete.
CREATE INDEX audit_events_user ON audit_events (user_id, id);
CREATE INDEX audit_events_type ON audit_events (type, id);
CREATE INDEX audit_events_time ON audit_events (time);

CREATE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END;
$$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
