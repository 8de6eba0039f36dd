-- memgate schema v3: observational memory in depth.
-- The thread's current task; observation times, dedupe keys and reflection generations;
-- observer failures (shown in the dashboard, never stored as memory); per-tenant limits.

ALTER TABLE threads
    ADD COLUMN current_task             text,          -- the Observer's one-line summary of what the user is doing
    ADD COLUMN current_task_updated_at  timestamptz;

ALTER TABLE observations
    ADD COLUMN observed_time  time,                    -- time of day (UTC) it refers to, when known
    ADD COLUMN text_key       text,                    -- md5 of the normalised text: dedupe within a thread
    ADD COLUMN observer       text,                    -- the observer or reflector that wrote it
    ADD COLUMN derived_from   text[] NOT NULL DEFAULT '{}',  -- reflected: the observations it replaced
    ADD COLUMN superseded_at  timestamptz;             -- replaced by a newer generation: kept for audit, never injected
CREATE INDEX observations_by_text_key ON observations (tenant, thread_id, text_key);
-- What the context service injects: active and current.
CREATE INDEX observations_current ON observations (tenant, thread_id) WHERE active AND superseded_at IS NULL;

-- An exchange whose observation failed is marked done (its delivery is acked) but its
-- messages are never covered by activation: they stay raw instead of vanishing.
ALTER TABLE observed_exchanges ADD COLUMN failed boolean NOT NULL DEFAULT false;

CREATE TABLE observer_failures (
    id                    bigserial PRIMARY KEY,
    tenant                text NOT NULL,
    thread_id             text NOT NULL,
    kind                  text NOT NULL CHECK (kind IN ('observer', 'reflector')),
    exchange_ids          text[] NOT NULL DEFAULT '{}',
    observer              text NOT NULL,           -- e.g. llm:google/gemini-2.5-flash, local
    error                 text NOT NULL,
    raw_output            text,                    -- the model's answer, truncated
    observations_version  bigint,                  -- reflector: the input it failed on (no retry loop on it)
    at                    timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant, thread_id) REFERENCES threads ON DELETE CASCADE
);
CREATE INDEX observer_failures_by_thread ON observer_failures (tenant, thread_id, at DESC);

-- Per-tenant overrides of MEMGATE_ACTIVATION_TOKENS and MEMGATE_OBSERVATION_BUDGET_TOKENS
-- (NULL: the process default applies).
CREATE TABLE tenant_settings (
    tenant                     text PRIMARY KEY,
    activation_tokens          integer CHECK (activation_tokens > 0),
    observation_budget_tokens  integer CHECK (observation_budget_tokens > 0),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);
