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

-- The uploads a message attaches (its files and their thumbnails): who may
-- download a file (the members of a conversation where a message that is
-- not deleted attaches it, besides its owner), and which files no message
-- uses any more (the sweep).  Written by the send, emptied for a message
-- when it is deleted.
CREATE TABLE IF NOT EXISTS chat.message_uploads (
    message_id       bigint NOT NULL
                     REFERENCES chat.messages (id) ON DELETE CASCADE,
    upload_id        bigint NOT NULL
                     REFERENCES chat.uploads (id) ON DELETE CASCADE,
    conversation_id  bigint NOT NULL,
    PRIMARY KEY (message_id, upload_id)
);

-- a file's messages (may this user download it? is it still used?)
CREATE INDEX IF NOT EXISTS message_uploads_upload
    ON chat.message_uploads (upload_id);
