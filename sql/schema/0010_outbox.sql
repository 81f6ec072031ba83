-- sql/schema/0010_outbox.sql
-- The outbox: events of the host application's SQL API (and of other nodes),
-- read by the nginx workers after NOTIFY chat_outbox.
--
-- Applied once by sql/migrate.sh, in one transaction, and never edited
-- once shipped: a change is a new file.

CREATE TABLE IF NOT EXISTS chat.outbox (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    events      jsonb       NOT NULL,     -- [{"to": [users], "event": {...}}]
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS outbox_created_idx ON chat.outbox (created_at);
