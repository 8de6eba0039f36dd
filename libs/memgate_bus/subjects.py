"""Stream, subject and consumer names: the NATS topology in one place."""

EXCHANGE_STREAM = "MEMGATE_EXCHANGES"
EXCHANGE_SUBJECT = "memgate.exchanges.v2.recorded"
EXCHANGE_SUBJECTS = ["memgate.exchanges.>"]
OBSERVER_DURABLE = "memgate-observer-v2"

CONTEXT_LOOKUP_SUBJECT = "memgate.context.v1.lookup"
CONTEXT_QUEUE = "memgate-context"

# Core NATS (not stored): caches that hold something of a thread drop it when it is deleted.
THREADS_DELETED_SUBJECT = "memgate.threads.v1.deleted"
