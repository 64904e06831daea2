-- Outbound lifecycle hooks (the hooks role).
--
-- What each person's hooks last saw: the version and lifecycle state of the
-- newest directory change read, and a digest of what a move changes
-- (attributes, groups, apps), so that each change yields the events it
-- means (joined, moved, left, leave started or ended) exactly once; and the
-- person as a hook's condition reads them (JSON: employee id, attributes,
-- groups, apps), for the events of their accounts.
CREATE TABLE hook_person (
    person_id       TEXT   PRIMARY KEY,
    version         BIGINT NOT NULL,
    lifecycle_state TEXT   NOT NULL,
    digest          TEXT   NOT NULL,
    profile         TEXT   NOT NULL
);

-- Every delivery owed to a hook endpoint, recorded before the change's
-- offset is committed and sent afterwards (an outbox): pending until the
-- endpoint answers 2xx (delivered) or the attempts run out (dead, the
-- hooks' dead letters, until redriven). One (hook, person)'s deliveries go
-- in `seq` order; a priority one (a termination or leave) does not wait
-- behind them.
CREATE TABLE hook_delivery (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id     TEXT     NOT NULL UNIQUE, -- the webhook-id header
    hook            TEXT     NOT NULL,
    person_id       TEXT     NOT NULL,
    employee_id     TEXT     NOT NULL,
    version         BIGINT   NOT NULL,
    event_type      TEXT     NOT NULL,
    priority        BIGINT   NOT NULL,
    body            TEXT     NOT NULL, -- the JSON sent, signed as is
    trace_id        TEXT,
    created_at_ms   BIGINT   NOT NULL,
    status          TEXT     NOT NULL DEFAULT 'pending', -- pending, delivered, dead
    attempts        BIGINT   NOT NULL DEFAULT 0,
    next_at_ms      BIGINT   NOT NULL,
    http_status     BIGINT,
    last_error      TEXT,
    done_at_ms      BIGINT
);
-- The senders read each lane's pending deliveries in seq order.
CREATE INDEX hook_delivery_pending ON hook_delivery (priority, seq) WHERE status = 'pending';
CREATE INDEX hook_delivery_person ON hook_delivery (hook, person_id, seq);
