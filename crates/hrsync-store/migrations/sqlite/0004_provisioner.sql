-- Provisioner: per (person, app) the account it manages in the app.
CREATE TABLE provisioner_link (
    person_id       TEXT   NOT NULL,
    app             TEXT   NOT NULL,
    scim_id         TEXT   NOT NULL,
    applied_version BIGINT NOT NULL, -- last directory change version applied
    applied         TEXT   NOT NULL, -- the SCIM user as last sent, JSON
    active          BIGINT NOT NULL,
    status          TEXT   NOT NULL, -- 'ok' | 'failed'
    last_error      TEXT,
    updated_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (person_id, app)
);
