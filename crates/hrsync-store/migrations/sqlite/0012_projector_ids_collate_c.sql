-- Projector: PostgreSQL compares ids byte by byte from here on (COLLATE
-- "C"); SQLite's default collation (BINARY) always did. Kept so that both
-- directories list the same migrations.
SELECT 1;
