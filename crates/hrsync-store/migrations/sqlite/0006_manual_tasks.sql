-- Manual-task apps (`[[provisioner.manual_apps]]`): apps without a SCIM
-- endpoint, whose accounts people make by hand.
--
-- Per (person, app), what hrsync last asked of the account: the newest
-- directory change's version it was asked at (so a stale change asks
-- nothing), the fields as asked (JSON), whether an account was asked for
-- at all, and whether it should be active.
CREATE TABLE manual_account (
    person_id       TEXT    NOT NULL,
    app             TEXT    NOT NULL,
    employee_id     TEXT    NOT NULL,
    version         BIGINT  NOT NULL,
    fields          TEXT    NOT NULL,
    asked           BIGINT  NOT NULL, -- 1 once a create was asked for
    active          BIGINT  NOT NULL,
    PRIMARY KEY (person_id, app)
);

-- Every task handed to people: what to do (create, update, disable,
-- reactivate) to whose account in which app, and why. Open until a named
-- person closes it (done), or until a newer task of the same account
-- makes it moot (superseded, naming the task that took it over).
CREATE TABLE manual_task (
    task_id         INTEGER PRIMARY KEY AUTOINCREMENT,
    app             TEXT    NOT NULL,
    person_id       TEXT    NOT NULL,
    employee_id     TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    version         BIGINT  NOT NULL,
    fields          TEXT    NOT NULL, -- JSON: the account as it should be
    changes         TEXT    NOT NULL, -- JSON: [{field, from, to}]
    priority        BIGINT  NOT NULL, -- 1: a disable (the fast lane)
    trace_id        TEXT,
    created_at_ms   BIGINT  NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'open', -- open, done, superseded
    closed_at_ms    BIGINT,
    closed_by       TEXT,
    note            TEXT,
    superseded_by   BIGINT
);
CREATE INDEX manual_task_open ON manual_task (status, app, created_at_ms);
CREATE INDEX manual_task_person ON manual_task (person_id, app, task_id);
CREATE INDEX manual_task_employee ON manual_task (employee_id, task_id);
