-- memgate schema v2: admin keys, per-key rate limits, the shared rate-limit state, usage.

ALTER TABLE api_keys
    ADD COLUMN is_admin   boolean NOT NULL DEFAULT false,              -- operator scope: manages every tenant's keys
    ADD COLUMN rpm_limit  integer CHECK (rpm_limit >= 0),              -- NULL: MEMGATE_DEFAULT_RPM applies; 0: unlimited
    ADD COLUMN burst      integer CHECK (burst >= 1);                  -- NULL: burst = rpm_limit

-- GCRA state, one row per limited key, shared by every edge replica. Losing it (crash,
-- failover) only resets the limits, so it skips the WAL: an update costs ~0.1 ms.
-- fillfactor leaves room for HOT updates of these few, very hot rows.
CREATE UNLOGGED TABLE rate_limit_buckets (
    bucket   text PRIMARY KEY,
    tat      bigint NOT NULL,   -- theoretical arrival time, epoch microseconds (integers: exact math)
    allowed  boolean NOT NULL,  -- outcome of the latest check (for RETURNING)
    seen_at  bigint NOT NULL    -- clock of the latest check, epoch microseconds
) WITH (fillfactor = 50);

-- One row per proxied request, written in batches off the request path.
CREATE TABLE usage_events (
    created_at     timestamptz NOT NULL,
    tenant         text NOT NULL,
    key_id         text,
    model          text NOT NULL,
    provider       text NOT NULL,
    status         smallint NOT NULL,
    stream         boolean NOT NULL,
    memory         boolean NOT NULL,
    input_tokens   integer NOT NULL DEFAULT 0,
    output_tokens  integer NOT NULL DEFAULT 0,
    latency_ms     real NOT NULL
);
CREATE INDEX usage_events_by_time ON usage_events USING brin (created_at);
CREATE INDEX usage_events_by_tenant ON usage_events (tenant, created_at);
