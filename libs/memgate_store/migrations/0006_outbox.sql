-- The transactional outbox: an exchange's messages and the event that announces them are
-- written in one transaction; a relay publishes the event to JetStream and deletes its row.
-- `claimed_until`: a relay working on a row holds it until then (another relay, in this
-- process or another, takes it over after a crash).
CREATE TABLE outbox (
    id             bigserial PRIMARY KEY,
    exchange_id    text NOT NULL UNIQUE,
    payload        bytea NOT NULL,
    traceparent    text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    claimed_until  timestamptz NOT NULL DEFAULT '-infinity'
);
CREATE INDEX outbox_by_claim ON outbox (claimed_until, id);

-- The observer reads an exchange's messages back by its id (events carry no text).
CREATE INDEX messages_by_exchange ON messages (tenant, exchange_id);

-- A participant's name ("name" of an OpenAI message): the Observer tells speakers apart by it.
ALTER TABLE messages ADD COLUMN name text;

-- The transaction that stored each message. A reader that remembers which transactions its
-- last read could not see (those from its snapshot's xmax on, and those in progress) finds
-- exactly the messages committed since: so concurrent stores into one thread need not be
-- serialised (as they were to keep `seq` in commit order), and commit together.
ALTER TABLE messages ADD COLUMN txid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX messages_by_thread_txid ON messages (tenant, thread_id, txid);
DROP INDEX messages_by_thread_seq;  -- (what readers used before; every store paid for it)

-- Readers find new messages by `txid`; the per-thread counter that every store bumped
-- (and so serialised on) is gone.
ALTER TABLE threads DROP COLUMN messages_version;
