-- The W3C trace context of the HR event that caused a directory change, so
-- the change is published in the same trace (one trace per change, from the
-- HR system to each app).
ALTER TABLE projector_outbox ADD COLUMN traceparent TEXT;
