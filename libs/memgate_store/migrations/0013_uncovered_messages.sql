-- A thread's raw tail (its messages no observation covers yet), read without the rest of the
-- thread. The observer sums its tokens after every batch to decide on activation; through
-- messages_by_thread the sum visited every message of the thread, covered or not, so each
-- batch cost more the longer the thread grew (under a benchmark's load: 0.7 ms a batch at
-- first, 3.6 ms five saturation runs later; 1.2 ms then with this index).
-- The tail is bounded by the activation threshold. Keyed by `txid` like
-- messages_by_thread_txid, so that a view's refresh (new raw messages by transaction) finds
-- its few rows by range in either index.
CREATE INDEX messages_uncovered ON messages (tenant, thread_id, txid) INCLUDE (tokens) WHERE NOT covered;
