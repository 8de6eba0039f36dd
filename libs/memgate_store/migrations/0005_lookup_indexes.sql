-- "Does this resource have observations in another thread?" is asked on every lookup:
-- with thread_id in the index it is two short range probes (thread_id < x, thread_id > x)
-- instead of a scan over every observation of the resource.
CREATE INDEX observations_by_resource_thread ON observations (tenant, resource_id, thread_id);
DROP INDEX observations_by_resource;
