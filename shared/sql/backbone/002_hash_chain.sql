-- Tamper evidence: each event's hash chains it to the previous one; signed checkpoints of the
-- chain head are kept beside the events. Events stored before this migration stay unchained.
ALTER TABLE events ADD COLUMN IF NOT EXISTS chain_hash text;

CREATE TABLE IF NOT EXISTS chain_checkpoints (
    position   bigint PRIMARY KEY,
    chain_hash text NOT NULL,
    signature  text NOT NULL,
    key_id     text NOT NULL,
    public_key text NOT NULL,
    signed_at  timestamptz NOT NULL DEFAULT now()
);
