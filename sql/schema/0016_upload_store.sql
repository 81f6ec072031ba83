-- sql/schema/0016_upload_store.sql
-- The sweep, made safe to fail (sql/api/35_uploads.sql):
--
-- chat.uploads.released_at: when a message link of the upload last went
-- (its message deleted); the grace of an upload no message attaches
-- counts from the later of its upload and this, so that its owner can
-- attach it again (R16F-5).  Set by a trigger on chat.message_uploads.
--
-- chat.uploads_gone: a file leaves the queue only once nginx has said it
-- unlinked it or found it absent (R16F-11): taken is the token of the
-- sweep that handed it out (NULL: not handed out, or a row went again
-- since), due_at when it may be handed out again (a failed unlink is
-- retried then, later each time: tries).
--
-- Applied once by sql/migrate.sh, in one transaction, and never edited
-- once shipped: a change is a new file.

ALTER TABLE chat.uploads
    ADD COLUMN IF NOT EXISTS released_at timestamptz;

ALTER TABLE chat.uploads_gone
    ADD COLUMN IF NOT EXISTS due_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS tries integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS taken bigint;

-- the files due, oldest first (the sweep)
CREATE INDEX IF NOT EXISTS uploads_gone_due ON chat.uploads_gone (due_at);
