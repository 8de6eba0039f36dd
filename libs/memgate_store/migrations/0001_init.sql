-- memgate schema v1. Postgres is the source of truth; Qdrant holds only vectors.

CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    tenant      text NOT NULL,
    key_hash    bytea NOT NULL UNIQUE,   -- sha256 of the key; the key itself is never stored
    prefix      text NOT NULL,           -- first characters, to recognise a key in listings
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE threads (
    tenant       text NOT NULL,
    thread_id    text NOT NULL,
    resource_id  text NOT NULL,          -- a thread is bound to the resource that created it
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- Bumped on every change, so the context service can tell in one cheap read whether
    -- its cached view of the thread is current (messages appended vs. anything else).
    messages_version      bigint NOT NULL DEFAULT 0,
    observations_version  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, thread_id)
);
CREATE INDEX threads_by_resource ON threads (tenant, resource_id, updated_at DESC);

CREATE TABLE messages (
    id           text PRIMARY KEY,
    tenant       text NOT NULL,
    thread_id    text NOT NULL,
    exchange_id  text NOT NULL,
    role         text NOT NULL,
    content      text NOT NULL,
    tokens       integer NOT NULL,
    created_at   timestamptz NOT NULL,
    interrupted  boolean NOT NULL DEFAULT false,
    covered      boolean NOT NULL DEFAULT false,  -- replaced in context by active observations
    FOREIGN KEY (tenant, thread_id) REFERENCES threads ON DELETE CASCADE
);
CREATE INDEX messages_by_thread ON messages (tenant, thread_id, created_at, id);

CREATE TABLE observations (
    id                 text PRIMARY KEY,  -- deterministic per (exchange, position): redelivery is a no-op
    tenant             text NOT NULL,
    thread_id          text NOT NULL,
    resource_id        text NOT NULL,
    exchange_id        text NOT NULL,
    text               text NOT NULL,
    priority           text NOT NULL CHECK (priority IN ('high', 'medium', 'low', 'completed')),
    observed_on        date NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    tokens             integer NOT NULL,
    active             boolean NOT NULL DEFAULT false,  -- active: replaces the raw messages it covers
    generation         integer NOT NULL DEFAULT 0,
    source_message_ids text[] NOT NULL,                  -- provenance
    FOREIGN KEY (tenant, thread_id) REFERENCES threads ON DELETE CASCADE
);
CREATE INDEX observations_by_thread ON observations (tenant, thread_id, created_at, id);
CREATE INDEX observations_by_resource ON observations (tenant, resource_id);

-- One row per exchange the observer finished: the idempotency marker for redeliveries.
CREATE TABLE observed_exchanges (
    tenant       text NOT NULL,
    exchange_id  text NOT NULL,
    thread_id    text NOT NULL,
    observer     text NOT NULL,
    observed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, exchange_id)
);

CREATE TABLE dashboard_sessions (
    token_hash  bytea PRIMARY KEY,
    tenant      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
