-- Many provisioner processes on one store: one person's changes are applied
-- by one process at a time, whichever consumer (main topic or priority lane)
-- and process received them. A process holds a person's lease while it
-- applies a change of theirs, renewing it; a lease whose process died
-- expires, and another process takes it over.
CREATE TABLE provisioner_lease (
    person_id       TEXT    PRIMARY KEY,
    holder          TEXT    NOT NULL,
    expires_at_ms   BIGINT  NOT NULL
);
