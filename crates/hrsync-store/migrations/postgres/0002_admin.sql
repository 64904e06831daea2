-- The admin API reads the audit of SCIM operations newest first across
-- persons and apps.
CREATE INDEX provisioner_audit_at ON provisioner_audit (at_ms);
CREATE INDEX provisioner_audit_app ON provisioner_audit (app, at_ms);

-- Every admin action, from the admin API or the CLI: who (the token's
-- subject and client, or the operating-system user of a CLI command),
-- what, on what, when, and how it ended.
CREATE TABLE admin_action (
    action_id TEXT   PRIMARY KEY,
    at_ms     BIGINT NOT NULL,
    subject   TEXT   NOT NULL,
    client_id TEXT,
    via       TEXT   NOT NULL, -- 'api' | 'cli'
    action    TEXT   NOT NULL, -- e.g. 'guard.release', 'dlq.redrive', 'provision_now'
    target    TEXT   NOT NULL, -- the app, person or source acted on
    outcome   TEXT   NOT NULL, -- 'ok' | 'failed'
    detail    TEXT   NOT NULL  -- JSON: what the action did, or why it failed
);
CREATE INDEX admin_action_at ON admin_action (at_ms);
