-- The documents service's own tables: the blob store (not a projection: file bytes are never
-- in events, so these rows are not rebuilt) and the read tables built from its events.
CREATE TABLE IF NOT EXISTS blobs (
    sha256    text PRIMARY KEY,
    bytes     bytea   NOT NULL,
    size      integer NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS doc_documents (
    tenant        text NOT NULL,
    document_id   uuid NOT NULL,
    register      text NOT NULL,          -- incoming | outgoing
    status        text NOT NULL,
    year          integer,                -- register year (outgoing: set on issue)
    number        integer,                -- number in that register
    symbol        text,                   -- outgoing: official number and symbol, e.g. 05/KH-STTTT
    original_number text,                 -- incoming: number and symbol as the sender issued it
    doc_type      text,
    summary       text,                   -- never set for secret documents
    issuing_body  text,
    document_date date,
    received_on   date,
    issued_on     date,
    urgency       text NOT NULL,
    secrecy       text NOT NULL,
    author_id     text,
    division_id   text,                   -- incoming: assigned division; outgoing: author's
    person_id     text,                   -- incoming: assigned person
    leader_id     text,                   -- secret: the leader the Office routed it to
    due_date      date,
    version       integer,
    file_sha256   text,
    file_name     text,
    recipients    text[],
    signer_id     text,
    signed_at     timestamptz,
    overdue_at    timestamptz,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant, document_id)
);
CREATE INDEX IF NOT EXISTS doc_documents_status ON doc_documents (tenant, register, status);
CREATE INDEX IF NOT EXISTS doc_documents_division ON doc_documents (tenant, division_id);
CREATE INDEX IF NOT EXISTS doc_documents_due ON doc_documents (tenant, due_date) WHERE status = 'assigned';

CREATE TABLE IF NOT EXISTS doc_register_entries (
    tenant      text    NOT NULL,
    register    text    NOT NULL,
    year        integer NOT NULL,
    number      integer NOT NULL,
    document_id uuid    NOT NULL,
    taken_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant, register, year, number),
    UNIQUE (tenant, register, document_id)
);

CREATE TABLE IF NOT EXISTS doc_tasks (
    tenant       text NOT NULL,
    task_id      uuid NOT NULL,
    title        text NOT NULL,
    description  text NOT NULL,
    assignee_id  text NOT NULL,
    division_id  text NOT NULL,
    assigned_by  text NOT NULL,
    due_date     date NOT NULL,
    document_id  uuid,
    status       text NOT NULL,
    percent      integer NOT NULL,
    last_note    text,
    assigned_at  timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    completed_at timestamptz,
    overdue_at   timestamptz,
    PRIMARY KEY (tenant, task_id)
);
CREATE INDEX IF NOT EXISTS doc_tasks_assignee ON doc_tasks (tenant, assignee_id, status);
CREATE INDEX IF NOT EXISTS doc_tasks_due ON doc_tasks (tenant, due_date) WHERE status = 'open';

CREATE TABLE IF NOT EXISTS doc_meetings (
    tenant        text NOT NULL,
    meeting_id    uuid NOT NULL,
    title         text NOT NULL,
    starts_at     timestamptz NOT NULL,
    join_at       timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    link          text NOT NULL,
    chair_id      text NOT NULL,
    organiser_id  text NOT NULL,
    status        text NOT NULL,          -- scheduled | cancelled
    cancel_reason text,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant, meeting_id)
);
CREATE TABLE IF NOT EXISTS doc_meeting_invitees (
    tenant       text NOT NULL,
    meeting_id   uuid NOT NULL,
    person_id    text NOT NULL,
    confirmed_at timestamptz,
    PRIMARY KEY (tenant, meeting_id, person_id)
);
