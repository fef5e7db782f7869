-- Reporting's store: every consumed event as a fact with its own time, upcast to its current
-- schema, with the days it is about. Reports read this table only (never another service's
-- database). It is a projection of the inbox (`wfh rebuild reporting`); when the database
-- itself is lost, the services republish their stores (RepublishEvents) and it fills again.
CREATE TABLE IF NOT EXISTS report_events (
    event_id       uuid        PRIMARY KEY,
    tenant         text        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    source         text        NOT NULL,
    stream_id      text        NOT NULL,
    stream_version integer     NOT NULL,
    event_type     text        NOT NULL,
    -- The days an event is about (a check-in's day, the days of a list, a delivery's local
    -- date); NULL for state that lasts (the directory, leave, documents, tasks).
    day_from       date,
    day_to         date,
    payload        jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS report_events_days ON report_events (tenant, event_type, day_to, day_from);
CREATE INDEX IF NOT EXISTS report_events_time ON report_events (tenant, occurred_at);

-- Published reports (own events, ReportPublished): what the daily loop has already sent.
CREATE TABLE IF NOT EXISTS report_publications (
    tenant       text        NOT NULL,
    kind         text        NOT NULL,
    day          date        NOT NULL,
    report_id    uuid        NOT NULL,
    title        text        NOT NULL,
    html_path    text        NOT NULL,
    pdf_path     text        NOT NULL,
    pdf_sha256   text        NOT NULL,
    published_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, kind, day)
);
