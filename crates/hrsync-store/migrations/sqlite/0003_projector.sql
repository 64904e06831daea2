-- Projector: every person's folded state, the events it was folded from,
-- the consumed offsets (written in the same transaction as the state) and
-- the outbox of directory changes.

CREATE TABLE projector_person (
    employee_id      TEXT   PRIMARY KEY,
    person_id        TEXT   NOT NULL UNIQUE,
    revision         BIGINT NOT NULL, -- optimistic concurrency: +1 per write
    version          BIGINT NOT NULL, -- last emitted directory change version
    state            TEXT   NOT NULL, -- folded state, JSON
    lifecycle        TEXT   NOT NULL, -- PENDING | ACTIVE | SUSPENDED | DEPROVISIONED | NONE
    manager_id       TEXT,
    next_check_at_ms BIGINT,          -- durable timer: next time-driven transition
    emitted          TEXT   NOT NULL, -- digest and summary of the last emitted state, JSON
    updated_at_ms    BIGINT NOT NULL
);
CREATE INDEX projector_person_timer ON projector_person (next_check_at_ms);
CREATE INDEX projector_person_manager ON projector_person (manager_id);

CREATE TABLE projector_event (
    event_id        TEXT   PRIMARY KEY,
    employee_id     TEXT   NOT NULL,
    effective_at_ms BIGINT NOT NULL,
    payload         BLOB  NOT NULL, -- Avro single-object encoded LifecycleEvent
    received_at_ms  BIGINT NOT NULL
);
CREATE INDEX projector_event_person ON projector_event (employee_id);

CREATE TABLE projector_offset (
    consumer        TEXT   NOT NULL,
    topic           TEXT   NOT NULL,
    kafka_partition BIGINT NOT NULL,
    next_offset     BIGINT NOT NULL,
    PRIMARY KEY (consumer, topic, kafka_partition)
);

CREATE TABLE projector_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    person_id     TEXT   NOT NULL,
    payload       BLOB  NOT NULL, -- Avro single-object encoded DirectoryChange
    priority      BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE projector_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- During `projector rebuild`: each person's last emitted version, so the
-- rebuilt store continues above it (consumers drop versions they have seen).
CREATE TABLE projector_version_floor (
    employee_id TEXT   PRIMARY KEY,
    version     BIGINT NOT NULL
);
