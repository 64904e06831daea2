-- Provisioner: the HR employee id of each link, so a report's account can
-- name its manager's account (enterprise `manager`) in the same app.
ALTER TABLE provisioner_link ADD COLUMN employee_id TEXT;
CREATE INDEX provisioner_link_employee ON provisioner_link (app, employee_id);

-- The newest directory change seen per person, so `hrsync provision-now`
-- can apply a person's current desired state on demand.
CREATE TABLE provisioner_person (
    person_id   TEXT   PRIMARY KEY,
    employee_id TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    payload     BYTEA NOT NULL, -- Avro single-object encoded DirectoryChange
    seen_at_ms  BIGINT NOT NULL
);
CREATE INDEX provisioner_person_employee ON provisioner_person (employee_id);
