-- The trace each lifecycle event was produced in (the W3C trace id of its
-- record's `traceparent` header, 32 hex digits), so the admin API's person
-- timeline can lead to the event's trace; NULL when it came without one.
ALTER TABLE projector_event ADD COLUMN trace_id TEXT;
