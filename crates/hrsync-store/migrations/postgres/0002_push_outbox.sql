-- Push API: a request with an Idempotency-Key is recorded with its encoded
-- event before it is published, so a retry (or a restart after a crash
-- between the two) publishes exactly the same event again.
ALTER TABLE ingest_push ADD COLUMN record_key TEXT NOT NULL DEFAULT '';
ALTER TABLE ingest_push ADD COLUMN payload BYTEA;
ALTER TABLE ingest_push ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ingest_push ADD COLUMN published_at_ms BIGINT;
