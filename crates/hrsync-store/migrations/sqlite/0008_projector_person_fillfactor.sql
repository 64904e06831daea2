-- Projector: PostgreSQL leaves room on projector_person pages for in-place
-- updates (fillfactor); SQLite has no such setting. Kept so that both
-- directories list the same migrations.
SELECT 1;
