-- Read tables of the roster service: division lists, compiled rosters and their decisions,
-- coverage gaps, presence. Built from roster's own events (and, for leave, from its inbox).

-- Each division's current list per working day (the latest submission for that day).
CREATE TABLE IF NOT EXISTS roster_lists (
    tenant        text NOT NULL,
    day           date NOT NULL,
    division_id   text NOT NULL,
    submission_id uuid NOT NULL,
    revision      integer NOT NULL,
    submitted_by  text NOT NULL,
    submitted_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, day, division_id)
);

-- One row per person and day: where the current lists put them.
CREATE TABLE IF NOT EXISTS roster_entries (
    tenant        text NOT NULL,
    day           date NOT NULL,
    person_id     text NOT NULL,
    division_id   text NOT NULL,
    location      text NOT NULL,
    work_place    text,
    duty          text,
    submission_id uuid NOT NULL,
    PRIMARY KEY (tenant, day, person_id)
);
CREATE INDEX IF NOT EXISTS roster_entries_division ON roster_entries (tenant, day, division_id);

CREATE TABLE IF NOT EXISTS roster_rosters (
    tenant          text NOT NULL,
    roster_id       uuid NOT NULL,
    start_day       date NOT NULL,
    end_day         date NOT NULL,
    days            date[] NOT NULL,
    status          text NOT NULL,
    compiled_by     text NOT NULL,
    compiled_at     timestamptz NOT NULL,
    lists           jsonb NOT NULL,
    missing         jsonb NOT NULL,
    violations      jsonb NOT NULL,
    superseded_by   uuid,
    decided_by      text,
    decided_at      timestamptz,
    delegated_by    text,
    decision_reason text,
    overridden      jsonb,
    PRIMARY KEY (tenant, roster_id)
);

-- Where each working day stands: the latest roster compiled for it.
CREATE TABLE IF NOT EXISTS roster_days (
    tenant    text NOT NULL,
    day       date NOT NULL,
    roster_id uuid NOT NULL,
    status    text NOT NULL,
    PRIMARY KEY (tenant, day)
);

CREATE TABLE IF NOT EXISTS roster_delegations (
    tenant       text NOT NULL,
    person_id    text NOT NULL,
    valid_from   date NOT NULL,
    valid_until  date NOT NULL,
    delegated_by text NOT NULL,
    PRIMARY KEY (tenant, person_id, valid_from)
);

CREATE TABLE IF NOT EXISTS roster_coverage_gaps (
    tenant         text NOT NULL,
    gap_id         uuid NOT NULL,
    roster_id      uuid NOT NULL,
    day            date NOT NULL,
    division_id    text NOT NULL,
    rule           text NOT NULL,
    person_id      text NOT NULL,
    application_id uuid NOT NULL,
    message        text NOT NULL,
    recorded_at    timestamptz NOT NULL,
    closed_at      timestamptz,
    PRIMARY KEY (tenant, gap_id)
);
CREATE INDEX IF NOT EXISTS roster_coverage_gaps_application ON roster_coverage_gaps (tenant, application_id);

CREATE TABLE IF NOT EXISTS roster_presence (
    tenant              text NOT NULL,
    day                 date NOT NULL,
    person_id           text NOT NULL,
    session             integer NOT NULL,
    division_id         text NOT NULL,
    checked_in_at       timestamptz,
    place               text,
    at_registered_place boolean,
    late                boolean,
    missed_deadline     timestamptz,
    PRIMARY KEY (tenant, day, person_id, session)
);

CREATE TABLE IF NOT EXISTS roster_health (
    tenant      text NOT NULL,
    day         date NOT NULL,
    person_id   text NOT NULL,
    status      text NOT NULL,
    note        text NOT NULL,
    declared_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, day, person_id)
);

-- Approved leave, from leave's events (the consumed `leave` projection).
CREATE TABLE IF NOT EXISTS roster_leave_days (
    tenant         text NOT NULL,
    application_id uuid NOT NULL,
    person_id      text NOT NULL,
    day            date NOT NULL,
    PRIMARY KEY (tenant, application_id, day)
);
CREATE INDEX IF NOT EXISTS roster_leave_days_day ON roster_leave_days (tenant, day);

-- Not projection tables: a rebuild never empties them.
-- Which leave events have had their coverage check: the check runs once, when the event is
-- first consumed, never again when the `leave` projection is rebuilt from the inbox.
CREATE TABLE IF NOT EXISTS roster_leave_checks (
    event_id   uuid PRIMARY KEY,
    tenant     text NOT NULL,
    checked_at timestamptz NOT NULL DEFAULT now()
);
-- How far the missing check-in detection has got, per department.
CREATE TABLE IF NOT EXISTS roster_presence_schedule (
    tenant        text PRIMARY KEY,
    checked_until timestamptz NOT NULL
);
