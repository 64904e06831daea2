-- Projector: ids are compared byte by byte. Under the database's default
-- collation (a libc locale such as en_US.UTF-8, or even C.UTF-8) every
-- B-tree comparison of an id went through strcoll, a visible share of
-- PostgreSQL's CPU per event (perf: varstr_cmp, strcoll, the locale
-- lookup). "C" compares bytes; no query of the projector orders ids for
-- people to read. Rewrites the tables and their indexes once.
ALTER TABLE projector_person
    ALTER COLUMN employee_id TYPE TEXT COLLATE "C",
    ALTER COLUMN person_id TYPE TEXT COLLATE "C",
    ALTER COLUMN manager_id TYPE TEXT COLLATE "C";
ALTER TABLE projector_event
    ALTER COLUMN event_id TYPE TEXT COLLATE "C",
    ALTER COLUMN employee_id TYPE TEXT COLLATE "C";
ALTER TABLE projector_reports
    ALTER COLUMN manager_id TYPE TEXT COLLATE "C";
ALTER TABLE projector_version_floor
    ALTER COLUMN employee_id TYPE TEXT COLLATE "C";
