-- The hooks role: each person's account in each app, by its SCIM id, as
-- the provisioner's audit reports creating or linking it. A session-revoked
-- SET to a receiver that names its app (`[[hooks.ssf.receivers]] app`)
-- identifies the person by that account as well as by e-mail.
CREATE TABLE hook_account (
    person_id   TEXT NOT NULL,
    app         TEXT NOT NULL,
    scim_id     TEXT NOT NULL,
    PRIMARY KEY (person_id, app)
);
