-- What each request cost (US dollars, from the price tables; NULL: no known price), the
-- upstream model it was priced by, and whether the caller brought its own provider key.
ALTER TABLE usage_events
    ADD COLUMN route_model text,
    ADD COLUMN byok boolean NOT NULL DEFAULT false,
    ADD COLUMN cost_usd double precision;
