-- A key's own limits for the memory API, beside its chat limit (rpm_limit, burst): requests
-- per minute for memory reads and for memory writes. NULL: the gateway's default for that
-- scope; 0: unlimited.
ALTER TABLE api_keys
    ADD COLUMN memory_read_rpm  integer CHECK (memory_read_rpm >= 0),
    ADD COLUMN memory_write_rpm integer CHECK (memory_write_rpm >= 0);
