-- A service's read copy of the organisation directory and plans, built from roster's events.
CREATE TABLE IF NOT EXISTS dir_departments (
    tenant text PRIMARY KEY,
    name   text NOT NULL,
    symbol text NOT NULL
);
CREATE TABLE IF NOT EXISTS dir_divisions (
    tenant      text NOT NULL,
    division_id text NOT NULL,
    name        text NOT NULL,
    kind        text NOT NULL,
    PRIMARY KEY (tenant, division_id)
);
CREATE TABLE IF NOT EXISTS dir_people (
    tenant      text NOT NULL,
    person_id   text NOT NULL,
    full_name   text NOT NULL,
    email       text NOT NULL,
    division_id text NOT NULL,
    roles       text[] NOT NULL,
    locale      text NOT NULL,
    active      boolean NOT NULL DEFAULT true,
    PRIMARY KEY (tenant, person_id)
);
CREATE INDEX IF NOT EXISTS dir_people_division ON dir_people (tenant, division_id);
CREATE TABLE IF NOT EXISTS dir_signing_keys (
    tenant     text NOT NULL,
    key_id     text NOT NULL,
    person_id  text NOT NULL,
    public_key text NOT NULL,
    PRIMARY KEY (tenant, key_id)
);
CREATE TABLE IF NOT EXISTS dir_acting_heads (
    tenant      text NOT NULL,
    division_id text NOT NULL,
    person_id   text NOT NULL,
    valid_from  date NOT NULL,
    valid_until date NOT NULL,
    PRIMARY KEY (tenant, division_id, person_id, valid_from)
);
CREATE TABLE IF NOT EXISTS dir_plans (
    tenant          text NOT NULL,
    plan_id         text NOT NULL,
    title           text NOT NULL,
    effective_from  date NOT NULL,
    effective_until date,
    sessions        jsonb NOT NULL,
    holidays        date[] NOT NULL,
    onsite_rules    jsonb NOT NULL,
    PRIMARY KEY (tenant, plan_id)
);
