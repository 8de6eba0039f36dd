-- The request log: what the dashboard's Logs page shows of each proxied request, beside its
-- usage (one row in usage_events), and the memory block it was given (request_memory).
ALTER TABLE usage_events
    ADD COLUMN request_id text,
    ADD COLUMN thread_id text,
    ADD COLUMN resource_id text,
    ADD COLUMN ttft_ms real,             -- streams: time to the first byte sent to the client
    ADD COLUMN memory_tokens integer,    -- tokens of the injected block (NULL: no memory asked)
    ADD COLUMN lookup_ms real,
    ADD COLUMN memory_degraded text,     -- why the request went without memory (NULL: it did not)
    ADD COLUMN trace_id text;
CREATE INDEX usage_events_by_request ON usage_events (tenant, request_id) WHERE request_id IS NOT NULL;

-- The block injected into one request, and why: how many of its items are the thread's own
-- (observations, recent messages) and, one by one, what recall added from where with what
-- score. Deleting a thread, or a message of it, deletes every block of that thread and every
-- block that recalled something of it: memory that is forgotten is not kept in the log
-- either. Pruned after MEMGATE_REQUEST_LOG_DAYS.
CREATE TABLE request_memory (
    request_id           text PRIMARY KEY,
    tenant               text NOT NULL,
    created_at           timestamptz NOT NULL,
    thread_ids           text[] NOT NULL,   -- the request's thread first, then those recall drew on
    block                text NOT NULL,
    thread_observations  integer NOT NULL,
    recent_messages      integer NOT NULL,
    recalled             jsonb NOT NULL
);
CREATE INDEX request_memory_by_thread ON request_memory USING gin (thread_ids);
CREATE INDEX request_memory_by_time ON request_memory USING brin (created_at);
