-- The manager lookup's index led with `app`, so a cached generic plan for
-- the link lookup (`person_id = $1 AND app = $2`, the primary key) could
-- pick it instead, with `app` as its only condition, and read every link of
-- the app per lookup (seen on PostgreSQL with no statistics gathered: 8
-- million rows read for 24,000 lookups, most of the database's CPU). Led by
-- `employee_id`, it can only serve the manager lookup.
DROP INDEX provisioner_link_employee;
CREATE INDEX provisioner_link_employee ON provisioner_link (employee_id, app);
