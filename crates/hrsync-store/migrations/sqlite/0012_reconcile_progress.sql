-- How far each running reconciliation is, written by the process running it
-- about every second and deleted when it ends, so every admin process (and
-- so the console behind any of them) shows a run started by another, or by
-- a provisioner's schedule. A row not written for a while is of a process
-- that died mid-run and is not shown.
CREATE TABLE provisioner_reconcile_progress (
    app           TEXT   PRIMARY KEY,
    progress      TEXT   NOT NULL, -- JSON: dry run, start, phase, counts
    updated_at_ms BIGINT NOT NULL
);
