-- Projector: every manager's number of direct reports (persons whose
-- manager_id it is and whose lifecycle is neither DEPROVISIONED nor NONE),
-- kept up to date as persons are written instead of counted from
-- projector_person for every batch. A manager id may be here before (or
-- without) a person of that id.
CREATE TABLE projector_reports (
    manager_id TEXT   PRIMARY KEY,
    reports    BIGINT NOT NULL
);

INSERT INTO projector_reports (manager_id, reports)
SELECT manager_id, COUNT(*) FROM projector_person
WHERE manager_id IS NOT NULL AND lifecycle <> 'DEPROVISIONED' AND lifecycle <> 'NONE'
GROUP BY manager_id;
