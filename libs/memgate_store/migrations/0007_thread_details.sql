-- What an application says about a thread (the memory API's create and update): a title,
-- its own key-value metadata, and thresholds of its own for observational memory (NULL:
-- the tenant's, else the process defaults).
ALTER TABLE threads
    ADD COLUMN title text,
    ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN activation_tokens integer,
    ADD COLUMN observation_budget_tokens integer;
