-- Projector outbox: the main-topic-only changes of a chunk of persons are
-- stored as one row (a pack); see the PostgreSQL migration of the same name.
ALTER TABLE projector_outbox ADD COLUMN packed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE projector_outbox ADD COLUMN changes BIGINT NOT NULL DEFAULT 1;
