-- sql/schema/0001_init.sql
-- The chat schema and the migration ledger (sql/migrate.sh records every
-- schema file applied in chat.schema_migrations).
--
-- Applied once by sql/migrate.sh, in one transaction, and never edited
-- once shipped: a change is a new file.

-- The schema itself is made by sql/roles.sql, for its owner.
CREATE TABLE IF NOT EXISTS chat.schema_migrations (
    version     int         PRIMARY KEY,
    name        text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
