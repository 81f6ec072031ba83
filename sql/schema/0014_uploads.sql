-- sql/schema/0014_uploads.sql
-- Uploaded files: one row per upload, the bytes in nginx's
-- content-addressed store (chat_upload_path/ab/cd/<sha256>), where the
-- same bytes uploaded twice are one file and two rows.
--
-- Applied once by sql/migrate.sh, in one transaction, and never edited
-- once shipped: a change is a new file.

CREATE TABLE IF NOT EXISTS chat.uploads (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id    text        NOT NULL,     -- a user id, as chat.users.id
    size        bigint      NOT NULL CHECK (size > 0),
    name        text        CHECK (char_length(name) BETWEEN 1 AND 255),
    type        text        NOT NULL,     -- detected from the bytes
    sha256      text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    width       integer     CHECK (width > 0),
    height      integer     CHECK (height > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- an owner's uploads by time (a day's bytes, a listing)
CREATE INDEX IF NOT EXISTS uploads_owner_created
    ON chat.uploads (owner_id, created_at);

-- the rows of one stored file (whether a file is still used)
CREATE INDEX IF NOT EXISTS uploads_sha256 ON chat.uploads (sha256);
