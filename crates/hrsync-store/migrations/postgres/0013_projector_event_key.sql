-- Projector: events are keyed by (employee_id, event_id). The primary key
-- on event_id alone and the index on employee_id (a person's events, for a
-- refold and `hrsync user show`) were two B-tree inserts per stored event;
-- one index now serves both the duplicate check and the person's events.
-- An event id repeated for the same person is still a duplicate; one
-- reused for another person (a producer's bug) is no longer dropped as a
-- duplicate of someone else's event.
ALTER TABLE projector_event DROP CONSTRAINT projector_event_pkey;
DROP INDEX projector_event_person;
ALTER TABLE projector_event ADD PRIMARY KEY (employee_id, event_id);
