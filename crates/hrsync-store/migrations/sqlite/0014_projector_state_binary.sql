-- Projector: a person's folded state is stored in a compact binary form;
-- see the PostgreSQL migration of the same name. SQLite cannot change a
-- column's type in place: the table is copied, earlier JSON states as
-- their bytes.
CREATE TABLE projector_person_binary (
    employee_id      TEXT   PRIMARY KEY,
    person_id        TEXT   NOT NULL UNIQUE,
    revision         BIGINT NOT NULL, -- optimistic concurrency: +1 per write
    version          BIGINT NOT NULL, -- last emitted directory change version
    state            BLOB   NOT NULL, -- folded state (binary; JSON if written before this migration)
    lifecycle        TEXT   NOT NULL, -- PENDING | ACTIVE | SUSPENDED | DEPROVISIONED | NONE
    manager_id       TEXT,
    next_check_at_ms BIGINT,          -- durable timer: next time-driven transition
    emitted          TEXT   NOT NULL, -- digest and summary of the last emitted state, JSON
    updated_at_ms    BIGINT NOT NULL
);
INSERT INTO projector_person_binary (employee_id, person_id, revision, version, state, lifecycle,
    manager_id, next_check_at_ms, emitted, updated_at_ms)
SELECT employee_id, person_id, revision, version, CAST(state AS BLOB), lifecycle,
    manager_id, next_check_at_ms, emitted, updated_at_ms FROM projector_person;
DROP TABLE projector_person;
ALTER TABLE projector_person_binary RENAME TO projector_person;
CREATE INDEX projector_person_timer ON projector_person (next_check_at_ms);
CREATE INDEX projector_person_manager ON projector_person (manager_id);
