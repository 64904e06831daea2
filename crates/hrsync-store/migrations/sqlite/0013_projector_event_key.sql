-- Projector: events are keyed by (employee_id, event_id); see the
-- PostgreSQL migration of the same name. SQLite cannot change a primary
-- key in place: the table is copied.
CREATE TABLE projector_event_keyed (
    employee_id     TEXT   NOT NULL,
    event_id        TEXT   NOT NULL,
    effective_at_ms BIGINT NOT NULL,
    payload         BLOB   NOT NULL, -- Avro single-object encoded LifecycleEvent
    received_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (employee_id, event_id)
);
INSERT INTO projector_event_keyed (employee_id, event_id, effective_at_ms, payload, received_at_ms)
SELECT employee_id, event_id, effective_at_ms, payload, received_at_ms FROM projector_event;
DROP TABLE projector_event;
ALTER TABLE projector_event_keyed RENAME TO projector_event;
