-- Plans carry the grace after a session's start before a missing check-in is recorded;
-- the department's holiday calendar applies to every plan.
ALTER TABLE dir_plans ADD COLUMN IF NOT EXISTS check_in_grace_minutes integer NOT NULL DEFAULT 30;
CREATE TABLE IF NOT EXISTS dir_holidays (
    tenant text NOT NULL,
    day    date NOT NULL,
    name   text NOT NULL,
    PRIMARY KEY (tenant, day)
);
