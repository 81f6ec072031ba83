-- sql/schema/0015_upload_sweep.sql
-- The stored files whose last chat.uploads row went (by the sweep, or by
-- chat.delete_user_uploads): the sweep unlinks each from nginx's store
-- once no row has its sha256 again.  Filled by a trigger on chat.uploads
-- (sql/api/35_uploads.sql).
--
-- Applied once by sql/migrate.sh, in one transaction, and never edited
-- once shipped: a change is a new file.

CREATE TABLE IF NOT EXISTS chat.uploads_gone (
    sha256  text        PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    at      timestamptz NOT NULL DEFAULT now()
);

-- uploads no message attaches, oldest first (the sweep)
CREATE INDEX IF NOT EXISTS uploads_created ON chat.uploads (created_at);
