-- The push API's rate of acceptance, shared by every push API process on
-- one store: how many events each client (the token's subject) had
-- accepted in each minute. A request past `ingest.push.rate_per_minute`
-- in its minute is answered 429 and counts nothing; rows of past minutes
-- are dropped as new minutes begin.
CREATE TABLE ingest_push_rate (
    subject          TEXT    NOT NULL,
    window_start_ms  BIGINT  NOT NULL,
    accepted         BIGINT  NOT NULL,
    PRIMARY KEY (subject, window_start_ms)
);
