-- Group memberships requested of an app, applied by the app's group writer
-- (one writer per (app, group), batched PATCH requests). One row per
-- (app, group, member): the newest request wins. `pending` is 1 until the
-- app has applied it, 0 once applied (kept for joins; a leave that was
-- applied is deleted), 2 when the app refused it (`last_error` says why).
-- `seq` orders requests and tells the writer whether a row changed while
-- its request was in flight. `trace_parent` is the W3C trace context of the
-- change that requested it: the request that applies it joins that trace.
CREATE TABLE provisioner_member (
    app           TEXT   NOT NULL,
    group_name    TEXT   NOT NULL,
    member_id     TEXT   NOT NULL, -- the member's SCIM user id in the app
    person_id     TEXT   NOT NULL,
    member        BIGINT NOT NULL, -- 1 join, 0 leave
    pending       BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    last_error    TEXT,
    trace_parent  TEXT,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (app, group_name, member_id)
);
CREATE INDEX provisioner_member_pending ON provisioner_member (app, group_name, seq) WHERE pending = 1;
