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
