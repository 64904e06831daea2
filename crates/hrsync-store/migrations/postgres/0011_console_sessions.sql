-- The admin console's sign-ins under way and signed-in sessions, shared by
-- every admin process on this store: a sign-in started at one may come
-- back to another, and a session opened by one is found by all. A session
-- is found by the SHA-256 of its cookie (hex), so what is stored cannot be
-- replayed as a cookie; no token is stored (the console acts with the
-- principal its access token was verified as at sign-in).
CREATE TABLE console_login (
    state         TEXT   PRIMARY KEY,
    verifier      TEXT   NOT NULL,
    nonce         TEXT   NOT NULL,
    return_to     TEXT   NOT NULL,
    started_at_ms BIGINT NOT NULL
);
CREATE INDEX console_login_started ON console_login (started_at_ms);

CREATE TABLE console_session (
    digest     TEXT   PRIMARY KEY,
    session    TEXT   NOT NULL, -- JSON: principal, identity, CSRF token
    expires_at BIGINT NOT NULL  -- seconds since the epoch
);
CREATE INDEX console_session_expires ON console_session (expires_at);
