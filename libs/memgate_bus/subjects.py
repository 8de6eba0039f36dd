"""Stream, subject and consumer names: the NATS topology in one place."""

EXCHANGE_STREAM = "MEMGATE_EXCHANGES"
EXCHANGE_SUBJECT = "memgate.exchanges.v1.completed"
EXCHANGE_SUBJECTS = ["memgate.exchanges.>"]
OBSERVER_DURABLE = "memgate-observer"

CONTEXT_LOOKUP_SUBJECT = "memgate.context.v1.lookup"
CONTEXT_QUEUE = "memgate-context"
