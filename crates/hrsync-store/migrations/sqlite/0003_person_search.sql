-- What the admin API's person search matches: the employee id, names and
-- e-mail addresses of each person, lower-cased, written with the state.
ALTER TABLE projector_person ADD COLUMN search TEXT NOT NULL DEFAULT '';
