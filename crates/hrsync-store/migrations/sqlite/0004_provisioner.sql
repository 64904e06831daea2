-- Provisioner: per (person, app) the account it manages in the app.
CREATE TABLE provisioner_link (
    person_id       TEXT   NOT NULL,
    app             TEXT   NOT NULL,
    scim_id         TEXT   NOT NULL,
    applied_version BIGINT NOT NULL, -- last directory change version applied
    applied         TEXT   NOT NULL, -- the SCIM user as last sent, JSON
    active          BIGINT NOT NULL,
    groups          TEXT   NOT NULL DEFAULT '[]', -- groups pushed with this account, JSON
    status          TEXT   NOT NULL, -- 'ok' | 'failed'
    last_error      TEXT,
    updated_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (person_id, app)
);

-- Groups pushed to an app: its SCIM id per group name.
CREATE TABLE provisioner_group (
    app           TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    scim_id       TEXT   NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (app, name)
);
