-- The notify service's records: who was told what (notifications, the web feed), the
-- persisted outbox of channel deliveries, reminders due later, and the person's own settings.

-- One row per (source event, kind, recipient), written in the same transaction as the inbox
-- row of the source event. `seq` is the web stream's event id (Last-Event-ID).
CREATE TABLE IF NOT EXISTS notifications (
    seq               bigserial UNIQUE,
    notification_id   uuid PRIMARY KEY,
    tenant            text NOT NULL,
    recipient_id      text NOT NULL,
    division_id       text NOT NULL,
    source_event_id   uuid NOT NULL,
    source_event_type text NOT NULL,
    correlation_id    uuid NOT NULL,
    kind              text NOT NULL,
    category          text NOT NULL,
    urgent            boolean NOT NULL,
    locale            text NOT NULL,
    title             text NOT NULL,
    body              text NOT NULL,
    created_at        timestamptz NOT NULL,
    UNIQUE (source_event_id, kind, recipient_id)
);
CREATE INDEX IF NOT EXISTS notifications_recipient ON notifications (tenant, recipient_id, seq);

-- The outbox of channel deliveries: each (notification, channel) once, so each
-- (source event, kind, recipient, channel). `due_at` holds quiet hours and retry backoff.
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id     uuid PRIMARY KEY,
    notification_id uuid NOT NULL REFERENCES notifications (notification_id),
    tenant          text NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('bot', 'email')),
    address         text NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    due_at          timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    created_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    UNIQUE (notification_id, channel)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (due_at) WHERE status = 'pending';

-- Reminders: the source event kept whole with the moment its reminder rule fires.
CREATE TABLE IF NOT EXISTS reminders (
    reminder_id     uuid PRIMARY KEY,
    tenant          text NOT NULL,
    source_event_id uuid NOT NULL,
    kind            text NOT NULL,
    due_at          timestamptz NOT NULL,
    envelope        jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'fired', 'dropped')),
    fired_at        timestamptz,
    UNIQUE (source_event_id, kind)
);
CREATE INDEX IF NOT EXISTS reminders_due ON reminders (due_at) WHERE status = 'pending';

-- Built from notify's own events (NotificationsRead, NotificationPreferencesSet).
CREATE TABLE IF NOT EXISTS notification_reads (
    tenant          text NOT NULL,
    notification_id uuid NOT NULL,
    person_id       text NOT NULL,
    read_at         timestamptz NOT NULL,
    PRIMARY KEY (tenant, notification_id)
);
CREATE TABLE IF NOT EXISTS notify_preferences (
    tenant    text NOT NULL,
    person_id text NOT NULL,
    category  text NOT NULL,
    channels  text[] NOT NULL,
    PRIMARY KEY (tenant, person_id, category)
);

-- The latest event of each type later events refer to by id (rules.REMEMBER): a draft's
-- author for its approval, a roster's lists for its approval, a meeting's invitees.
CREATE TABLE IF NOT EXISTS remembered_events (
    tenant     text NOT NULL,
    event_type text NOT NULL,
    key        text NOT NULL,
    payload    jsonb NOT NULL,
    PRIMARY KEY (tenant, event_type, key)
);
