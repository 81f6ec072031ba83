-- sql/schema/0002_chat.sql
-- Users, conversations, members, messages, contacts, blocks and their
-- indexes.
--
-- Applied once by sql/migrate.sh, in one transaction, and never edited
-- once shipped: a change is a new file.

-- The directory of users, filled from token claims at connect.  Nothing
-- references it: members, messages and blocks may name users who have
-- never connected.
CREATE TABLE IF NOT EXISTS chat.users (
    id          text        PRIMARY KEY,
    name        text        NOT NULL,
    avatar      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS chat.conversations (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind           text        NOT NULL CHECK (kind IN ('direct', 'group')),
    title          text,
    ref            text,
    metadata       jsonb       NOT NULL DEFAULT '{}',
    -- direct only: chat.direct_key(a, b), so that a pair has one
    direct_key     text        UNIQUE,
    created_by     text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- the conversation's sequence counter: every change takes the next
    last_seq       bigint      NOT NULL DEFAULT 0,
    last_activity  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT conversations_direct_key_check
        CHECK ((kind = 'direct') = (direct_key IS NOT NULL))
);

CREATE TABLE IF NOT EXISTS chat.members (
    conversation_id     bigint      NOT NULL
                        REFERENCES chat.conversations (id) ON DELETE CASCADE,
    user_id             text        NOT NULL,
    role                text        NOT NULL DEFAULT 'member'
                        CHECK (role IN ('owner', 'admin', 'member')),
    last_read_seq       bigint      NOT NULL DEFAULT 0,
    last_delivered_seq  bigint      NOT NULL DEFAULT 0,
    muted               boolean     NOT NULL DEFAULT false,
    archived            boolean     NOT NULL DEFAULT false,
    joined_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, user_id)
);

CREATE TABLE IF NOT EXISTS chat.messages (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id  bigint      NOT NULL
                     REFERENCES chat.conversations (id) ON DELETE CASCADE,
    seq              bigint      NOT NULL,
    updated_seq      bigint      NOT NULL,
    sender_id        text        NOT NULL,
    body             text,                       -- NULL once deleted
    client_msg_id    text,                       -- NULL for system messages
    attachments      jsonb       NOT NULL DEFAULT '[]',
    reply_to         bigint,                     -- checked by the functions
    kind             text        NOT NULL DEFAULT 'user'
                     CHECK (kind IN ('user', 'system')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    edited_at        timestamptz,
    deleted_at       timestamptz,
    CONSTRAINT messages_conversation_seq_key UNIQUE (conversation_id, seq),
    CONSTRAINT messages_idempotency_key
        UNIQUE (conversation_id, sender_id, client_msg_id),
    CONSTRAINT messages_updated_seq_check CHECK (updated_seq >= seq),
    CONSTRAINT messages_body_check
        CHECK (body IS NOT NULL OR deleted_at IS NOT NULL)
);

CREATE TABLE IF NOT EXISTS chat.contacts (
    owner_id    text        NOT NULL,
    contact_id  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner_id, contact_id)
);

CREATE TABLE IF NOT EXISTS chat.blocks (
    blocker_id  text        NOT NULL,
    blocked_id  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blocker_id, blocked_id)
);

-- Indexes (the UNIQUE constraints above are indexes too):
--   messages_conversation_seq_key (conversation_id, seq): history pages,
--       last message of a conversation
--   messages_sync_idx (conversation_id, updated_seq): sync; unique because
--       every change takes its own number
--   messages_unread_idx: unread counts, an index-only scan
--   members_user_idx: a user's conversations (list, sync)
--   blocks_blocked_idx: "who blocked me" (the primary key covers the other
--       direction)
CREATE UNIQUE INDEX IF NOT EXISTS messages_sync_idx
    ON chat.messages (conversation_id, updated_seq);

CREATE INDEX IF NOT EXISTS messages_unread_idx
    ON chat.messages (conversation_id, seq) INCLUDE (sender_id)
    WHERE deleted_at IS NULL;

CREATE INDEX IF NOT EXISTS members_user_idx
    ON chat.members (user_id, conversation_id);

CREATE INDEX IF NOT EXISTS blocks_blocked_idx
    ON chat.blocks (blocked_id, blocker_id);

CREATE INDEX IF NOT EXISTS contacts_contact_idx
    ON chat.contacts (contact_id, owner_id);

CREATE INDEX IF NOT EXISTS conversations_ref_idx
    ON chat.conversations (ref) WHERE ref IS NOT NULL;
