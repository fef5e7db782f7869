-- Read tables of the leave service, built from its own events.
CREATE TABLE IF NOT EXISTS leave_applications (
    tenant          text NOT NULL,
    application_id  uuid NOT NULL,
    person_id       text NOT NULL,
    division_id     text NOT NULL,
    start_date      date NOT NULL,
    end_date        date NOT NULL,
    half_day        text,
    working_dates   date[] NOT NULL,
    days            numeric(6,1) NOT NULL,
    reason          text NOT NULL,
    status          text NOT NULL,
    requested_at    timestamptz NOT NULL,
    decided_by      text,
    decided_at      timestamptz,
    decision_reason text,
    content_sha256  text,
    signature       text,
    key_id          text,
    cancelled_at    timestamptz,
    cancel_reason   text,
    PRIMARY KEY (tenant, application_id)
);
CREATE INDEX IF NOT EXISTS leave_applications_person ON leave_applications (tenant, person_id);
CREATE INDEX IF NOT EXISTS leave_applications_division ON leave_applications (tenant, division_id, status);

CREATE TABLE IF NOT EXISTS leave_entitlements (
    tenant        text NOT NULL,
    person_id     text NOT NULL,
    days_per_year numeric(5,1) NOT NULL,
    PRIMARY KEY (tenant, person_id)
);
