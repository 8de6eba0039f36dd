-- Deleted threads, remembered for as long as their exchange events may still be in flight
-- (the exchange stream keeps events for 7 days): an event produced before a thread's
-- deletion must not bring the thread back when the observer finally handles it.
CREATE TABLE thread_tombstones (
    tenant      text NOT NULL,
    thread_id   text NOT NULL,
    deleted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, thread_id)
);

-- Insertion order of messages: the context service appends what is new since the last
-- seq it saw (timestamps come from edges' clocks and need not arrive in order).
ALTER TABLE messages ADD COLUMN seq bigserial;
CREATE INDEX messages_by_thread_seq ON messages (tenant, thread_id, seq);

-- A dashboard session ends when the key that opened it is revoked.
ALTER TABLE dashboard_sessions ADD COLUMN key_id text;
