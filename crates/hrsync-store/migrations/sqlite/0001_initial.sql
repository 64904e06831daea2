-- hrsync's schema on SQLite: the stores of the three roles (each role may
-- use its own file; every table is prefixed by its role). Keep it in step
-- with migrations/postgres: the same tables, columns and keys (PostgreSQL
-- adds storage settings SQLite has no equivalent of).

---------------------------------------------------------------------------
-- Ingest: the imports and their snapshots (the last accepted one per
-- source is its baseline), the outbox of events still to publish, and
-- push-API idempotency keys.
---------------------------------------------------------------------------

-- An import of a source's snapshot. Its events are published from
-- ingest_outbox; its snapshot (ingest_snapshot) becomes the source's
-- baseline only once every outbox row of the import is acknowledged by the
-- broker, and stays it until the next import is: accepting one is a change
-- of state, not a copy.
CREATE TABLE ingest_import (
    import_id      TEXT   PRIMARY KEY,
    source         TEXT   NOT NULL,
    file_digest    TEXT   NOT NULL,
    -- 'publishing', then 'baseline' (its snapshot is the source's
    -- baseline), then 'accepted' (a later import's is; its rows are gone)
    state          TEXT   NOT NULL,
    event_count    BIGINT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    accepted_at_ms BIGINT
);
CREATE INDEX ingest_import_open ON ingest_import (source, state);

-- One row per worker of an import's snapshot (of the imports publishing or
-- the baseline).
CREATE TABLE ingest_snapshot (
    import_id   TEXT NOT NULL REFERENCES ingest_import (import_id),
    employee_id TEXT NOT NULL,
    record      TEXT NOT NULL, -- the worker, JSON
    PRIMARY KEY (import_id, employee_id)
);

-- Events recorded before publishing. seq keeps the import's order.
CREATE TABLE ingest_outbox (
    import_id       TEXT   NOT NULL REFERENCES ingest_import (import_id),
    seq             BIGINT NOT NULL,
    event_id        TEXT   NOT NULL,
    record_key      TEXT   NOT NULL,
    payload         BLOB   NOT NULL, -- Avro single-object encoded LifecycleEvent
    priority        BIGINT NOT NULL, -- 1: also published to the fast lane
    published_at_ms BIGINT,
    PRIMARY KEY (import_id, seq)
);

-- Push API: a request with an Idempotency-Key is recorded with its encoded
-- event before it is published, so a retry (or a restart after a crash
-- between the two) publishes exactly the same event again, and answers
-- with the event id it produced.
CREATE TABLE ingest_push (
    idempotency_key TEXT   PRIMARY KEY,
    request_digest  TEXT   NOT NULL,
    event_id        TEXT   NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    record_key      TEXT   NOT NULL DEFAULT '',
    payload         BLOB,
    priority        BIGINT NOT NULL DEFAULT 0,
    published_at_ms BIGINT
);

---------------------------------------------------------------------------
-- Projector: every person's folded state, the events it was folded from,
-- the consumed offsets (written in the same transaction as the state) and
-- the outbox of directory changes.
---------------------------------------------------------------------------

CREATE TABLE projector_person (
    employee_id      TEXT PRIMARY KEY,
    person_id        TEXT NOT NULL UNIQUE,
    revision         BIGINT NOT NULL, -- optimistic concurrency: +1 per write
    version          BIGINT NOT NULL, -- last emitted directory change version
    state            BLOB   NOT NULL, -- folded state, binary (PersonState::to_stored)
    lifecycle        TEXT   NOT NULL, -- PENDING | ACTIVE | SUSPENDED | DEPROVISIONED | NONE
    manager_id       TEXT,
    next_check_at_ms BIGINT,          -- durable timer: next time-driven transition
    emitted          TEXT   NOT NULL, -- digest and summary of the last emitted state, JSON
    updated_at_ms    BIGINT NOT NULL
);
CREATE INDEX projector_person_timer ON projector_person (next_check_at_ms);
CREATE INDEX projector_person_manager ON projector_person (manager_id);

-- Keyed by (employee_id, event_id): one index serves both the duplicate
-- check and a person's events (a refold, `hrsync user show`).
CREATE TABLE projector_event (
    employee_id     TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    effective_at_ms BIGINT NOT NULL,
    payload         BLOB   NOT NULL, -- Avro single-object encoded LifecycleEvent
    received_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (employee_id, event_id)
);

CREATE TABLE projector_offset (
    consumer        TEXT   NOT NULL,
    topic           TEXT   NOT NULL,
    kafka_partition BIGINT NOT NULL,
    next_offset     BIGINT NOT NULL,
    PRIMARY KEY (consumer, topic, kafka_partition)
);

-- Directory changes waiting to be published: one row per pack (the changes
-- of a chunk of persons, LZ4-compressed; see the projector's store/outbox).
-- `priority`: 0 main topic only; 1 also the priority topic, not sent there
-- yet; 2 sent there, waiting for the main topic. The publisher sends
-- priority copies ahead of the rows before them, found through the partial
-- index without reading those rows.
CREATE TABLE projector_outbox (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    payload       BLOB   NOT NULL, -- a format byte, then the LZ4-compressed pack
    priority      BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    changes       BIGINT NOT NULL  -- the changes in the pack
);
CREATE INDEX projector_outbox_unsent_priority ON projector_outbox (seq) WHERE priority = 1;

CREATE TABLE projector_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- During `projector rebuild`: each person's last emitted version, so the
-- rebuilt store continues above it (consumers drop versions they have seen).
CREATE TABLE projector_version_floor (
    employee_id TEXT PRIMARY KEY,
    version     BIGINT NOT NULL
);

-- Every manager's number of direct reports (persons whose manager_id it is
-- and whose lifecycle is neither DEPROVISIONED nor NONE), kept up to date as
-- persons are written. A manager id may be here before (or without) a
-- person of that id.
CREATE TABLE projector_reports (
    manager_id TEXT PRIMARY KEY,
    reports    BIGINT NOT NULL
);

---------------------------------------------------------------------------
-- Provisioner: the account each (person, app) is linked to, the groups and
-- memberships pushed, the deprovision guard, the audit of every operation.
---------------------------------------------------------------------------

-- Per (person, app) the account it manages in the app.
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
    employee_id     TEXT,            -- HR employee id: a report's account names its manager's
    etag            TEXT,            -- the account's version as the app last gave it (If-Match)
    PRIMARY KEY (person_id, app)
);
-- Led by employee_id, it can only serve the manager lookup: led by app, a
-- cached generic plan of the link lookup (the primary key) could pick it
-- and read every link of the app per lookup.
CREATE INDEX provisioner_link_employee ON provisioner_link (employee_id, app);

-- Groups pushed to an app: its SCIM id per group name.
CREATE TABLE provisioner_group (
    app           TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    scim_id       TEXT   NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (app, name)
);

-- Group memberships requested of an app, applied by the app's group writer
-- (one writer per (app, group), batched PATCH requests). One row per
-- (app, group, member): the newest request wins. `pending` is 1 until the
-- app has applied it, 0 once applied (kept for joins; a leave that was
-- applied is deleted), 2 when the app refused it (`last_error` says why).
-- `seq` orders requests and tells the writer whether a row changed while
-- its request was in flight. `trace_parent` is the W3C trace context of the
-- change that requested it: the request that applies it joins that trace.
CREATE TABLE provisioner_member (
    app           TEXT   NOT NULL,
    group_name    TEXT   NOT NULL,
    member_id     TEXT   NOT NULL, -- the member's SCIM user id in the app
    person_id     TEXT   NOT NULL,
    member        BIGINT NOT NULL, -- 1 join, 0 leave
    pending       BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    last_error    TEXT,
    trace_parent  TEXT,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (app, group_name, member_id)
);
CREATE INDEX provisioner_member_pending ON provisioner_member (app, group_name, seq) WHERE pending = 1;

-- Deprovision guard: deactivations done per app (the window is counted
-- from here; `allowance` 1 for one let through under the immediate
-- termination allowance while the guard was tripped), whether the guard is
-- tripped, and the changes held: by the guard (reason 'guard', until
-- released) or while the app is quarantined (reason 'quarantine', until it
-- answers again).
CREATE TABLE provisioner_deactivation (
    app       TEXT   NOT NULL,
    at_ms     BIGINT NOT NULL,
    allowance BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX provisioner_deactivation_app ON provisioner_deactivation (app, at_ms);

CREATE TABLE provisioner_guard (
    app           TEXT   PRIMARY KEY,
    tripped_at_ms BIGINT NOT NULL
);

CREATE TABLE provisioner_held (
    app        TEXT   NOT NULL,
    person_id  TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    payload    BLOB   NOT NULL, -- Avro single-object encoded DirectoryChange
    held_at_ms BIGINT NOT NULL,
    reason     TEXT   NOT NULL DEFAULT 'guard',
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

-- The newest directory change seen per person, so `hrsync provision-now`
-- can apply a person's current desired state on demand, and a manager's
-- new account can be given to the reports provisioned before it.
CREATE TABLE provisioner_person (
    person_id   TEXT   PRIMARY KEY,
    employee_id TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    payload     BLOB   NOT NULL, -- Avro single-object encoded DirectoryChange
    seen_at_ms  BIGINT NOT NULL,
    manager_id  TEXT             -- HR employee id of the person's manager
);
CREATE INDEX provisioner_person_employee ON provisioner_person (employee_id);
CREATE INDEX provisioner_person_manager ON provisioner_person (manager_id);

-- App-wide reconciliation: the last run of each app per mode ('fix' or
-- 'report'), so that a schedule holds across restarts and several
-- provisioner processes reconcile an app once per interval between them.
CREATE TABLE provisioner_reconcile_run (
    app            TEXT   NOT NULL,
    mode           TEXT   NOT NULL,
    started_at_ms  BIGINT NOT NULL,
    finished_at_ms BIGINT NOT NULL,
    counts         TEXT   NOT NULL, -- JSON: accounts per class
    failures       BIGINT NOT NULL, -- fixes that failed
    PRIMARY KEY (app, mode)
);
