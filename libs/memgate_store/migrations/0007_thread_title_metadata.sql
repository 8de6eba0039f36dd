-- What an application says about a thread (the memory API's create and update): a title,
-- and its own key-value metadata.
ALTER TABLE threads ADD COLUMN title text, ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'::jsonb;
