-- A check may take several requests at once (an edge's lease, spent locally): how many it got.
ALTER TABLE rate_limit_buckets ADD COLUMN granted integer NOT NULL DEFAULT 0;
