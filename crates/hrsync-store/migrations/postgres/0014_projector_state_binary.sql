-- Projector: a person's folded state is stored in a compact binary form
-- (a format byte, then the fields in order; see PersonState::to_stored in
-- hrsync-projector) instead of JSON: about a third of the bytes per row
-- written for every event, and much less work to read and write. States
-- written before stay JSON (their bytes begin with '{') and are read as
-- such until the person is next written.
ALTER TABLE projector_person
    ALTER COLUMN state TYPE BYTEA USING convert_to(state, 'UTF8');
