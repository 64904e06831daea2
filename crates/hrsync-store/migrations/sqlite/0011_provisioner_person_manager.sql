-- Provisioner: each person's manager (HR employee id) from their newest
-- change, so that when a manager's account is created (or linked) in an app,
-- the reports provisioned before it can be given the manager reference.
ALTER TABLE provisioner_person ADD COLUMN manager_id TEXT;
CREATE INDEX provisioner_person_manager ON provisioner_person (manager_id);
