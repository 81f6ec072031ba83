-- sql/schema/0016_upload_store.sql
-- The sweep, made safe to fail (sql/api/35_uploads.sql):
--
-- chat.uploads.unattached_since: since when no message attaches the
-- upload (NULL while one does): its upload, or the delete of the last
-- message that attached it.  The grace counts from it, so that the owner
-- of a deleted message's file can attach it again (R16F-5), and the sweep
-- finds its candidates in a partial index of it instead of walking every
-- upload ever attached (R16H-3).  Kept by triggers on
-- chat.message_uploads (sql/api/35_uploads.sql).
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
    ADD COLUMN IF NOT EXISTS unattached_since timestamptz DEFAULT now();

UPDATE chat.uploads u
SET unattached_since = CASE WHEN EXISTS (SELECT 1 FROM chat.message_uploads mu
                                         WHERE mu.upload_id = u.id)
                            THEN NULL ELSE u.created_at END;

-- the sweep's candidates, longest unattached first
CREATE INDEX IF NOT EXISTS uploads_unattached
    ON chat.uploads (unattached_since) WHERE unattached_since IS NOT NULL;

-- 0015's index of every upload by age: nothing reads it any more
DROP INDEX IF EXISTS chat.uploads_created;

ALTER TABLE chat.uploads_gone
    ADD COLUMN IF NOT EXISTS due_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS tries integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS taken bigint;

-- the files due, oldest first (the sweep)
CREATE INDEX IF NOT EXISTS uploads_gone_due ON chat.uploads_gone (due_at);
