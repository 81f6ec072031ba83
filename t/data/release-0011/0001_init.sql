-- 0001_init: the chat schema and the migration ledger.
-- Every migration must be safe to re-run: `make run` and the tests apply
-- all of sql/*.sql in name order each time.

CREATE SCHEMA IF NOT EXISTS chat;

CREATE TABLE IF NOT EXISTS chat.schema_migrations (
    version     int         PRIMARY KEY,
    name        text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO chat.schema_migrations (version, name)
VALUES (1, '0001_init')
ON CONFLICT DO NOTHING;
