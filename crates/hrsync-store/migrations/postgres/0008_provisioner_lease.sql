-- Many provisioner processes on one store: one person's changes are applied
-- by one process at a time, whichever consumer (main topic or priority lane)
-- and process received them. A process holds a person's lease while it
-- applies a change of theirs, renewing it; a lease whose process died
-- expires, and another process takes it over.
--
-- Unlogged: a lease lives seconds, and two writes per change must not cost
-- two WAL flushes. A database crash empties the table, as it ends every
-- statement in flight: the processes' applies fail and are tried again,
-- each taking its lease anew.
CREATE UNLOGGED TABLE provisioner_lease (
    person_id       TEXT    PRIMARY KEY,
    holder          TEXT    NOT NULL,
    expires_at_ms   BIGINT  NOT NULL
);
