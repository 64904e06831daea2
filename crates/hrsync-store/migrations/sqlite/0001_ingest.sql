-- Ingest: the last accepted snapshot per source, the outbox of events still
-- to publish, and push-API idempotency keys.

-- One row per worker of the last accepted snapshot of a source.
CREATE TABLE ingest_baseline (
    source      TEXT   NOT NULL,
    employee_id TEXT   NOT NULL,
    record      TEXT   NOT NULL, -- the worker as accepted, JSON
    PRIMARY KEY (source, employee_id)
);

-- An import whose events are being published. Its snapshot waits in
-- ingest_staged and becomes the baseline only once every outbox row of the
-- import is acknowledged by the broker.
CREATE TABLE ingest_import (
    import_id     TEXT   PRIMARY KEY,
    source        TEXT   NOT NULL,
    file_digest   TEXT   NOT NULL,
    state         TEXT   NOT NULL, -- 'publishing' | 'accepted'
    event_count   BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    accepted_at_ms BIGINT
);
CREATE INDEX ingest_import_open ON ingest_import (source, state);

CREATE TABLE ingest_staged (
    import_id   TEXT NOT NULL REFERENCES ingest_import (import_id),
    employee_id TEXT NOT NULL,
    record      TEXT NOT NULL,
    PRIMARY KEY (import_id, employee_id)
);

-- Events recorded before publishing. seq keeps the import's order.
CREATE TABLE ingest_outbox (
    import_id       TEXT   NOT NULL REFERENCES ingest_import (import_id),
    seq             BIGINT NOT NULL,
    event_id        TEXT   NOT NULL,
    record_key      TEXT   NOT NULL,
    payload         BLOB   NOT NULL,
    priority        BIGINT NOT NULL, -- 1: also published to the fast lane
    published_at_ms BIGINT,
    PRIMARY KEY (import_id, seq)
);

-- Push API: an idempotency key answers with the event id it produced.
CREATE TABLE ingest_push (
    idempotency_key TEXT   PRIMARY KEY,
    request_digest  TEXT   NOT NULL,
    event_id        TEXT   NOT NULL,
    created_at_ms   BIGINT NOT NULL
);
