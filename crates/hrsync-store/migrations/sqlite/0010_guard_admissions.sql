-- The deprovision guard decides across processes: a deactivation is
-- recorded when the guard admits it (done = 0, with the admission's
-- ticket), not only once done, so every process sharing the store counts
-- the ones under way in the others. Done, it is marked so (done = 1); if it
-- fails, its row is deleted. Rows written before this migration were done.
ALTER TABLE provisioner_deactivation ADD COLUMN ticket TEXT;
ALTER TABLE provisioner_deactivation ADD COLUMN done BIGINT NOT NULL DEFAULT 1;
CREATE INDEX provisioner_deactivation_ticket ON provisioner_deactivation (ticket);
