-- Deleted threads, remembered for as long as their exchange events may still be in flight
-- (the exchange stream keeps events for 7 days): an event produced before a thread's
-- deletion must not bring the thread back when the observer finally handles it.
CREATE TABLE thread_tombstones (
    tenant      text NOT NULL,
    thread_id   text NOT NULL,
    deleted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, thread_id)
);
