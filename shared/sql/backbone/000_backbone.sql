-- The backbone tables every service database holds: event store, relay checkpoint,
-- command replies (idempotent commands), inbox (idempotent consumers), projection checkpoints.

CREATE TABLE IF NOT EXISTS events (
    global_position bigint PRIMARY KEY,
    stream_id       text        NOT NULL,
    stream_version  integer     NOT NULL CHECK (stream_version >= 1),
    event_id        uuid        NOT NULL UNIQUE,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    tenant          text        NOT NULL,
    occurred_at     timestamptz NOT NULL,
    actor           text        NOT NULL,
    correlation_id  uuid        NOT NULL,
    causation_id    uuid,
    trace_context   jsonb       NOT NULL DEFAULT '{}',
    payload         jsonb       NOT NULL,
    UNIQUE (stream_id, stream_version)
);

CREATE OR REPLACE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'stored events are immutable: % refused on events', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

DROP TRIGGER IF EXISTS events_no_update_delete ON events;
CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_immutable();
DROP TRIGGER IF EXISTS events_no_truncate ON events;
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable();

CREATE TABLE IF NOT EXISTS relay_checkpoint (
    relay    text PRIMARY KEY,
    position bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS command_replies (
    command_id   uuid PRIMARY KEY,
    tenant       text NOT NULL,
    command_type text NOT NULL,
    actor        text NOT NULL,
    reply        jsonb NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);

-- The inbox keeps each consumed event whole: it is this service's own copy of other
-- services' streams, so projections built from them can be rebuilt without asking anyone.
CREATE TABLE IF NOT EXISTS inbox (
    consumer       text   NOT NULL,
    event_id       uuid   NOT NULL,
    seq            bigserial,
    stream_id      text   NOT NULL,
    stream_version integer NOT NULL,
    envelope       jsonb  NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX IF NOT EXISTS inbox_consumer_seq ON inbox (consumer, seq);

CREATE TABLE IF NOT EXISTS inbox_streams (
    consumer  text    NOT NULL,
    stream_id text    NOT NULL,
    version   integer NOT NULL,
    PRIMARY KEY (consumer, stream_id)
);

CREATE TABLE IF NOT EXISTS projection_checkpoints (
    projection text PRIMARY KEY,
    position   bigint NOT NULL
);
