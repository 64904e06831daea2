-- Provisioner: per (person, app) the account it manages in the app.
CREATE TABLE provisioner_link (
    person_id       TEXT   NOT NULL,
    app             TEXT   NOT NULL,
    scim_id         TEXT   NOT NULL,
    applied_version BIGINT NOT NULL, -- last directory change version applied
    applied         TEXT   NOT NULL, -- the SCIM user as last sent, JSON
    active          BIGINT NOT NULL,
    groups          TEXT   NOT NULL DEFAULT '[]', -- groups pushed with this account, JSON
    status          TEXT   NOT NULL, -- 'ok' | 'failed'
    last_error      TEXT,
    updated_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (person_id, app)
);

-- Groups pushed to an app: its SCIM id per group name.
CREATE TABLE provisioner_group (
    app           TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    scim_id       TEXT   NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (app, name)
);

-- Deprovision guard: deactivations done per app (the window is counted
-- from here), whether the guard is tripped, and the changes held: by the
-- guard (reason 'guard', until released) or while the app is quarantined
-- (reason 'quarantine', until it answers again).
CREATE TABLE provisioner_deactivation (
    app   TEXT   NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX provisioner_deactivation_app ON provisioner_deactivation (app, at_ms);

CREATE TABLE provisioner_guard (
    app           TEXT   PRIMARY KEY,
    tripped_at_ms BIGINT NOT NULL
);

CREATE TABLE provisioner_held (
    app          TEXT   NOT NULL,
    person_id    TEXT   NOT NULL,
    version      BIGINT NOT NULL,
    payload      BYTEA     NOT NULL, -- Avro single-object encoded DirectoryChange
    held_at_ms   BIGINT NOT NULL,
    reason       TEXT   NOT NULL DEFAULT 'guard',
    PRIMARY KEY (app, person_id, version)
);

-- Every SCIM operation, as also published to provisioning.audit.v1.
CREATE TABLE provisioner_audit (
    audit_id    TEXT   PRIMARY KEY,
    person_id   TEXT   NOT NULL,
    app         TEXT   NOT NULL,
    operation   TEXT   NOT NULL,
    outcome     TEXT   NOT NULL,
    http_status BIGINT,
    latency_ms  BIGINT NOT NULL,
    attempt     BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    scim_id     TEXT,
    error       TEXT,
    trace_id    TEXT,
    at_ms       BIGINT NOT NULL
);
CREATE INDEX provisioner_audit_person ON provisioner_audit (person_id, at_ms);
