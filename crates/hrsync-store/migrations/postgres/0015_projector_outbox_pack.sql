-- Projector outbox: the main-topic-only changes of a chunk of persons are
-- stored as one row (a pack; see hrsync-projector's outbox module), not one
-- row per change; priority changes keep a row each. Rows written before
-- are single changes (packed 0, changes 1) and are read as such.
ALTER TABLE projector_outbox ADD COLUMN packed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE projector_outbox ADD COLUMN changes BIGINT NOT NULL DEFAULT 1;
-- A pack is tens to hundreds of kilobytes, stored out of line: without
-- compression (pglz would cost more CPU than the bytes it saves here; the
-- row is deleted once published).
ALTER TABLE projector_outbox ALTER COLUMN payload SET STORAGE EXTERNAL;
