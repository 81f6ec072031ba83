-- 0002_chat: users, conversations, members, messages, contacts, blocks,
-- and the chat.api_* functions the module calls (one per request).
--
-- Safe to re-run: IF NOT EXISTS for tables and indexes, CREATE OR REPLACE
-- for functions, ON CONFLICT DO NOTHING for the ledger row.  One
-- transaction: a failure leaves the database as it was.
--
-- Apply to an existing database (after 0001_init):
--   psql -v ON_ERROR_STOP=1 -d app -f sql/0001_init.sql -f sql/0002_chat.sql
--
-- Conventions of every chat.api_* function (docs/schema.md has the detail):
--   - SECURITY INVOKER, no dynamic SQL, every object schema-qualified;
--   - returns {"ok": {...}, "events": [{"to": [user ids], "event": {...}}]}
--     or {"error": {"code": "...", "message": "..."}};
--   - expected errors are returned, never raised: the module runs several
--     requests in one transaction, and a raised error would abort them all.

BEGIN;

-- ------------------------------------------------------------------------
-- Tables

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

-- ------------------------------------------------------------------------
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

-- ------------------------------------------------------------------------
-- Helpers

CREATE OR REPLACE FUNCTION chat.schema_version() RETURNS int
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT coalesce(max(version), 0) FROM chat.schema_migrations
$$;

-- RFC 3339 UTC with milliseconds; NULL stays NULL.
CREATE OR REPLACE FUNCTION chat.fmt_time(p_t timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT to_char(p_t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

CREATE OR REPLACE FUNCTION chat.err(p_code text, p_message text)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT jsonb_build_object('error',
        jsonb_build_object('code', p_code, 'message', p_message))
$$;

CREATE OR REPLACE FUNCTION chat.ok(p_data jsonb, p_events jsonb DEFAULT '[]')
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT jsonb_build_object('ok', p_data,
                              'events', coalesce(p_events, '[]'::jsonb))
$$;

-- bad_request for field p_key of p_req: "<key> is missing" when absent or
-- JSON null, else "<key> must be <p_what>".
CREATE OR REPLACE FUNCTION chat.bad(p_req jsonb, p_key text, p_what text)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT chat.err('bad_request',
        CASE WHEN coalesce(jsonb_typeof(p_req -> p_key), 'null') = 'null'
             THEN p_key || ' is missing'
             ELSE p_key || ' must be ' || p_what END)
$$;

-- A JSON number with an integral value within bigint (1, 1.0 and 1e2 are
-- integers: PostgreSQL normalizes numbers, so notation cannot be seen) as
-- bigint; NULL for anything else.  Nested CASE: each cast runs only once
-- the previous branch has shown it cannot fail.
CREATE OR REPLACE FUNCTION chat.json_int(p jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT CASE
        WHEN p IS NULL OR jsonb_typeof(p) <> 'number' THEN NULL
        WHEN (p #>> '{}')::numeric
             NOT BETWEEN -9223372036854775808 AND 9223372036854775807
            THEN NULL
        WHEN (p #>> '{}')::numeric <> trunc((p #>> '{}')::numeric)
            THEN NULL
        ELSE (p #>> '{}')::numeric::bigint
    END
$$;

-- A positive JSON integer (an id) or NULL.
CREATE OR REPLACE FUNCTION chat.json_id(p jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT CASE WHEN chat.json_int(p) >= 1 THEN chat.json_int(p) END
$$;

-- A user id as the module accepts a JWT sub: 1..128 bytes, no control
-- characters.  Never NULL.
CREATE OR REPLACE FUNCTION chat.valid_user_id(p text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT coalesce(octet_length(p) BETWEEN 1 AND 128
                    AND p !~ '[[:cntrl:]]', false)
$$;

-- A request's user id field (e.g. p_req -> 'user_id') when it is a valid id,
-- else NULL (chat.bad then says whether it is missing or wrong).
CREATE OR REPLACE FUNCTION chat.json_user(p jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT CASE WHEN jsonb_typeof(p) = 'string'
                     AND chat.valid_user_id(p #>> '{}')
                THEN p #>> '{}' END
$$;

-- The unique key of the direct conversation of a pair: the two ids in
-- byte order, the first one length-prefixed, so that no two pairs share
-- a key whatever the ids contain ("5:alicebob").
CREATE OR REPLACE FUNCTION chat.direct_key(p_a text, p_b text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT CASE WHEN p_a COLLATE "C" <= p_b COLLATE "C"
                THEN octet_length(p_a)::text || ':' || p_a || p_b
                ELSE octet_length(p_b)::text || ':' || p_b || p_a END
$$;

-- Either blocked the other.
CREATE OR REPLACE FUNCTION chat.is_blocked(p_a text, p_b text) RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT EXISTS (SELECT 1 FROM chat.blocks
                   WHERE blocker_id = p_a AND blocked_id = p_b)
        OR EXISTS (SELECT 1 FROM chat.blocks
                   WHERE blocker_id = p_b AND blocked_id = p_a)
$$;

-- The protocol's Message object.  A deleted message has body null and
-- attachments [] (they are also cleared in storage).
CREATE OR REPLACE FUNCTION chat.message_obj(m chat.messages) RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT jsonb_build_object(
        'id',              m.id,
        'conversation_id', m.conversation_id,
        'seq',             m.seq,
        'sender_id',       m.sender_id,
        'body',            CASE WHEN m.deleted_at IS NULL THEN m.body END,
        'client_msg_id',   m.client_msg_id,
        'attachments',     CASE WHEN m.deleted_at IS NULL
                                THEN m.attachments ELSE '[]'::jsonb END,
        'reply_to',        m.reply_to,
        'created_at',      chat.fmt_time(m.created_at),
        'edited_at',       chat.fmt_time(m.edited_at),
        'deleted',         m.deleted_at IS NOT NULL,
        'updated_seq',     m.updated_seq)
$$;

-- Messages of others after p_after that are not deleted
-- (messages_unread_idx, index-only).
CREATE OR REPLACE FUNCTION chat.unread_count(p_cid bigint, p_user text,
                                             p_after bigint)
RETURNS bigint
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT count(*) FROM chat.messages
    WHERE conversation_id = p_cid AND seq > p_after
      AND deleted_at IS NULL AND sender_id <> p_user
$$;

-- The user ids of a conversation's members, in byte order: the "to" of
-- its events.
CREATE OR REPLACE FUNCTION chat.member_ids(p_cid bigint) RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT coalesce(jsonb_agg(user_id ORDER BY user_id COLLATE "C"),
                    '[]'::jsonb)
    FROM chat.members WHERE conversation_id = p_cid
$$;

-- The protocol's Conversation object as p_user sees it (unread_count,
-- muted, archived are p_user's).  Members in joining order, owners first
-- among those who joined together.  last_message is the message with the
-- highest seq, deleted or not.
CREATE OR REPLACE FUNCTION chat.conversation_obj(p_cid bigint, p_user text)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT jsonb_build_object(
        'id',         c.id,
        'kind',       c.kind,
        'title',      c.title,
        'ref',        c.ref,
        'metadata',   c.metadata,
        'created_at', chat.fmt_time(c.created_at),
        'members',    (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                  'user_id', mb.user_id,
                                  'role', mb.role,
                                  'last_read_seq', mb.last_read_seq,
                                  'last_delivered_seq', mb.last_delivered_seq)
                              ORDER BY mb.joined_at,
                                       array_position(
                                           ARRAY['owner', 'admin', 'member'],
                                           mb.role),
                                       mb.user_id COLLATE "C"),
                              '[]'::jsonb)
                       FROM chat.members mb
                       WHERE mb.conversation_id = c.id),
        'last_message', (SELECT chat.message_obj(m) FROM chat.messages m
                         WHERE m.conversation_id = c.id
                         ORDER BY m.seq DESC LIMIT 1),
        'last_seq',     c.last_seq,
        'unread_count', CASE WHEN me.user_id IS NULL THEN 0
                             ELSE chat.unread_count(c.id, p_user,
                                                    me.last_read_seq) END,
        'muted',        coalesce(me.muted, false),
        'archived',     coalesce(me.archived, false))
    FROM chat.conversations c
    LEFT JOIN chat.members me
           ON me.conversation_id = c.id AND me.user_id = p_user
    WHERE c.id = p_cid
$$;

-- A validated attachments list, normalized to exactly
-- {"url","name","mime","size"} per item, or an {"error": ...} object.
-- NULL (absent or JSON null) is the empty list.
CREATE OR REPLACE FUNCTION chat.check_attachments(p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
    v_item  jsonb;
    v_out   jsonb[] := '{}';
    v_size  bigint;
BEGIN
    IF p IS NULL OR jsonb_typeof(p) = 'null' THEN
        RETURN '[]'::jsonb;
    END IF;
    IF jsonb_typeof(p) <> 'array' THEN
        RETURN chat.err('bad_request', 'attachments must be an array');
    END IF;
    IF jsonb_array_length(p) > 10 THEN
        RETURN chat.err('too_large',
                        'attachments has more than 10 items');
    END IF;

    FOR v_item IN SELECT value FROM jsonb_array_elements(p) LOOP
        IF jsonb_typeof(v_item) <> 'object' THEN
            RETURN chat.err('bad_request',
                            'attachments must be an array of objects');
        END IF;

        IF jsonb_typeof(v_item -> 'url') IS DISTINCT FROM 'string'
           OR v_item ->> 'url' = ''
        THEN
            RETURN chat.err('bad_request',
                            'attachment url must be a non-empty string');
        END IF;
        IF char_length(v_item ->> 'url') > 2048 THEN
            RETURN chat.err('too_large',
                            'attachment url is longer than 2048 characters');
        END IF;
        -- no javascript:, data: and the like: clients render these as links
        IF v_item ->> 'url' !~* '^(https?://|/)' THEN
            RETURN chat.err('bad_request',
                'attachment url must start with http://, https:// or /');
        END IF;

        IF coalesce(jsonb_typeof(v_item -> 'name'), 'null')
           NOT IN ('null', 'string')
        THEN
            RETURN chat.err('bad_request',
                            'attachment name must be a string');
        END IF;
        IF char_length(v_item ->> 'name') > 255 THEN
            RETURN chat.err('too_large',
                            'attachment name is longer than 255 characters');
        END IF;

        IF coalesce(jsonb_typeof(v_item -> 'mime'), 'null')
           NOT IN ('null', 'string')
        THEN
            RETURN chat.err('bad_request',
                            'attachment mime must be a string');
        END IF;
        IF char_length(v_item ->> 'mime') > 255 THEN
            RETURN chat.err('too_large',
                            'attachment mime is longer than 255 characters');
        END IF;

        v_size := NULL;
        IF coalesce(jsonb_typeof(v_item -> 'size'), 'null') <> 'null' THEN
            v_size := chat.json_int(v_item -> 'size');
            IF v_size IS NULL OR v_size < 0 THEN
                RETURN chat.err('bad_request',
                                'attachment size must be an integer >= 0');
            END IF;
        END IF;

        v_out := array_append(v_out, jsonb_build_object(
            'url',  v_item ->> 'url',
            'name', v_item ->> 'name',
            'mime', v_item ->> 'mime',
            'size', v_size));
    END LOOP;

    RETURN to_jsonb(v_out);
END
$$;

-- A body: a string of 1..p_max characters.  NULL when valid, else the
-- error result.
CREATE OR REPLACE FUNCTION chat.check_body(p_req jsonb, p_max bigint)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT CASE
        WHEN jsonb_typeof(p_req -> 'body') IS DISTINCT FROM 'string'
            THEN chat.bad(p_req, 'body', 'a string')
        WHEN p_req ->> 'body' = ''
            THEN chat.err('bad_request', 'body must not be empty')
        WHEN char_length(p_req ->> 'body') > p_max
            THEN chat.err('too_large',
                          'body is longer than ' || p_max || ' characters')
    END
$$;

-- The message length limit of a request: the module sets "max_length"
-- (chat_max_message_length); 5000 when absent.  NULL when invalid.
CREATE OR REPLACE FUNCTION chat.max_length(p jsonb) RETURNS bigint
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT CASE
        WHEN p IS NULL OR jsonb_typeof(p) = 'null' THEN 5000
        WHEN chat.json_int(p) BETWEEN 1 AND 1000000 THEN chat.json_int(p)
    END
$$;

-- The common prologue: NULL when p_user and p_req are usable.
CREATE OR REPLACE FUNCTION chat.check_request(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT CASE
        WHEN NOT chat.valid_user_id(p_user)
            THEN chat.err('bad_request', 'user id is invalid')
        WHEN jsonb_typeof(p_req) IS DISTINCT FROM 'object'
            THEN chat.err('bad_request', 'request must be a JSON object')
    END
$$;

-- ------------------------------------------------------------------------
-- user.upsert: {"name"?, "avatar"?} -> {}
-- Called by the module at connect with the token's claims.  A missing or
-- empty name is the id; a missing avatar clears it.  No write when nothing
-- changed.

CREATE OR REPLACE FUNCTION chat.api_user_upsert(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    v_err     jsonb := chat.check_request(p_user, p_req);
    v_name    text;
    v_avatar  text;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;

    IF coalesce(jsonb_typeof(p_req -> 'name'), 'null')
       NOT IN ('null', 'string')
    THEN
        RETURN chat.bad(p_req, 'name', 'a string');
    END IF;
    v_name := nullif(p_req ->> 'name', '');
    IF char_length(v_name) > 200 THEN
        RETURN chat.err('too_large', 'name is longer than 200 characters');
    END IF;

    IF coalesce(jsonb_typeof(p_req -> 'avatar'), 'null')
       NOT IN ('null', 'string')
    THEN
        RETURN chat.bad(p_req, 'avatar', 'a string');
    END IF;
    v_avatar := nullif(p_req ->> 'avatar', '');
    IF char_length(v_avatar) > 2048 THEN
        RETURN chat.err('too_large',
                        'avatar is longer than 2048 characters');
    END IF;

    INSERT INTO chat.users AS u (id, name, avatar)
    VALUES (p_user, coalesce(v_name, p_user), v_avatar)
    ON CONFLICT (id) DO UPDATE
        SET name = excluded.name, avatar = excluded.avatar,
            updated_at = now()
        WHERE (u.name, u.avatar) IS DISTINCT FROM
              (excluded.name, excluded.avatar);

    RETURN chat.ok('{}');
END
$$;

-- ------------------------------------------------------------------------
-- conversation.create

CREATE OR REPLACE FUNCTION chat.api_conversation_create(p_user text,
                                                        p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    v_err      jsonb := chat.check_request(p_user, p_req);
    v_kind     text;
    v_ref      text;
    v_meta     jsonb;
    v_title    text;
    v_members  jsonb;
    v_other    text;
    v_key      text;
    v_cid      bigint;
    v_conv     jsonb;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;

    IF jsonb_typeof(p_req -> 'kind') IS DISTINCT FROM 'string'
       OR p_req ->> 'kind' NOT IN ('direct', 'group')
    THEN
        RETURN chat.bad(p_req, 'kind', '"direct" or "group"');
    END IF;
    v_kind := p_req ->> 'kind';

    IF coalesce(jsonb_typeof(p_req -> 'ref'), 'null') <> 'null' THEN
        IF jsonb_typeof(p_req -> 'ref') <> 'string'
           OR p_req ->> 'ref' = ''
        THEN
            RETURN chat.bad(p_req, 'ref', 'a non-empty string');
        END IF;
        v_ref := p_req ->> 'ref';
        IF char_length(v_ref) > 200 THEN
            RETURN chat.err('too_large', 'ref is longer than 200 characters');
        END IF;
    END IF;

    v_meta := '{}';
    IF coalesce(jsonb_typeof(p_req -> 'metadata'), 'null') <> 'null' THEN
        IF jsonb_typeof(p_req -> 'metadata') <> 'object' THEN
            RETURN chat.bad(p_req, 'metadata', 'an object');
        END IF;
        v_meta := p_req -> 'metadata';
        IF octet_length(v_meta::text) > 16384 THEN
            RETURN chat.err('too_large',
                            'metadata is larger than 16384 bytes');
        END IF;
    END IF;

    IF v_kind = 'direct' THEN
        v_other := chat.json_user(p_req -> 'user_id');
        IF v_other IS NULL THEN
            RETURN chat.bad(p_req, 'user_id', 'a user id');
        END IF;
        IF v_other = p_user THEN
            RETURN chat.err('bad_request',
                            'a direct conversation needs another user');
        END IF;
        IF chat.is_blocked(p_user, v_other) THEN
            RETURN chat.err('forbidden', 'blocked');
        END IF;

        v_key := chat.direct_key(p_user, v_other);
        INSERT INTO chat.conversations (kind, ref, metadata, direct_key,
                                        created_by)
        VALUES ('direct', v_ref, v_meta, v_key, p_user)
        ON CONFLICT (direct_key) DO NOTHING
        RETURNING id INTO v_cid;

        IF v_cid IS NULL THEN
            -- it exists (perhaps just committed by a concurrent create):
            -- the same conversation, no events
            SELECT id INTO v_cid FROM chat.conversations
            WHERE direct_key = v_key;
            RETURN chat.ok(jsonb_build_object(
                'conversation', chat.conversation_obj(v_cid, p_user)));
        END IF;

        INSERT INTO chat.members (conversation_id, user_id, role)
        VALUES (v_cid, p_user, 'member'), (v_cid, v_other, 'member');

    ELSE
        IF jsonb_typeof(p_req -> 'title') IS DISTINCT FROM 'string'
           OR p_req ->> 'title' = ''
        THEN
            RETURN chat.bad(p_req, 'title', 'a non-empty string');
        END IF;
        v_title := p_req ->> 'title';
        IF char_length(v_title) > 200 THEN
            RETURN chat.err('too_large',
                            'title is longer than 200 characters');
        END IF;

        v_members := coalesce(p_req -> 'members', 'null');
        IF jsonb_typeof(v_members) = 'null' THEN
            v_members := '[]';
        END IF;
        IF jsonb_typeof(v_members) <> 'array' THEN
            RETURN chat.bad(p_req, 'members', 'an array of user ids');
        END IF;
        IF jsonb_array_length(v_members) > 1000 THEN
            RETURN chat.err('too_large',
                            'members has more than 1000 entries');
        END IF;
        IF EXISTS (SELECT 1 FROM jsonb_array_elements(v_members) e
                   WHERE jsonb_typeof(e) <> 'string'
                      OR NOT chat.valid_user_id(e #>> '{}'))
        THEN
            RETURN chat.bad(p_req, 'members', 'an array of user ids');
        END IF;

        INSERT INTO chat.conversations (kind, title, ref, metadata,
                                        created_by)
        VALUES ('group', v_title, v_ref, v_meta, p_user)
        RETURNING id INTO v_cid;

        INSERT INTO chat.members (conversation_id, user_id, role)
        VALUES (v_cid, p_user, 'owner');
        INSERT INTO chat.members (conversation_id, user_id, role)
        SELECT DISTINCT v_cid, e, 'member'
        FROM jsonb_array_elements_text(v_members) e
        WHERE e <> p_user;
    END IF;

    v_conv := chat.conversation_obj(v_cid, p_user);
    RETURN chat.ok(
        jsonb_build_object('conversation', v_conv),
        jsonb_build_array(jsonb_build_object(
            'to', chat.member_ids(v_cid),
            'event', jsonb_build_object('type', 'conversation.created',
                                        'conversation', v_conv))));
END
$$;

-- ------------------------------------------------------------------------
-- conversation.get: {"conversation_id"} -> {"conversation": C}
-- (for REST GET conversations/{id})

CREATE OR REPLACE FUNCTION chat.api_conversation_get(p_user text,
                                                     p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
    v_err  jsonb := chat.check_request(p_user, p_req);
    v_cid  bigint;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    v_cid := chat.json_id(p_req -> 'conversation_id');
    IF v_cid IS NULL THEN
        RETURN chat.bad(p_req, 'conversation_id', 'a positive integer');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM chat.members
                   WHERE conversation_id = v_cid AND user_id = p_user)
    THEN
        RETURN chat.err('not_found', 'conversation not found');
    END IF;
    RETURN chat.ok(jsonb_build_object(
        'conversation', chat.conversation_obj(v_cid, p_user)));
END
$$;

-- ------------------------------------------------------------------------
-- conversation.list: {"limit"?, "before"?, "archived"?}
--   -> {"conversations": [C], "next": cursor | null}
-- Newest activity first (last_activity desc, id desc).  The cursor is
-- "<last_activity in epoch microseconds>:<id>" of the page's last entry;
-- clients treat it as opaque.

CREATE OR REPLACE FUNCTION chat.api_conversation_list(p_user text,
                                                      p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
    v_err       jsonb := chat.check_request(p_user, p_req);
    v_limit     bigint := 50;
    v_archived  boolean := false;
    v_parts     text[];
    v_bt        timestamptz;
    v_bid       bigint;
    v_ids       bigint[];
    v_acts      timestamptz[];
    v_n         int;
    v_next      text;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;

    IF coalesce(jsonb_typeof(p_req -> 'limit'), 'null') <> 'null' THEN
        v_limit := chat.json_int(p_req -> 'limit');
        IF v_limit IS NULL OR v_limit NOT BETWEEN 1 AND 100 THEN
            RETURN chat.bad(p_req, 'limit', 'an integer from 1 to 100');
        END IF;
    END IF;

    IF coalesce(jsonb_typeof(p_req -> 'archived'), 'null') <> 'null' THEN
        IF jsonb_typeof(p_req -> 'archived') <> 'boolean' THEN
            RETURN chat.bad(p_req, 'archived', 'a boolean');
        END IF;
        v_archived := (p_req -> 'archived')::boolean;
    END IF;

    IF coalesce(jsonb_typeof(p_req -> 'before'), 'null') <> 'null' THEN
        IF jsonb_typeof(p_req -> 'before') = 'string' THEN
            v_parts := regexp_match(p_req ->> 'before',
                                    '^([0-9]{1,16}):([0-9]{1,19})$');
        END IF;
        IF v_parts IS NULL
           OR v_parts[2]::numeric > 9223372036854775807
        THEN
            RETURN chat.err('bad_request', 'before is not a valid cursor');
        END IF;
        v_bt := timestamptz '1970-01-01 00:00:00+00'
                + v_parts[1]::bigint * interval '1 microsecond';
        v_bid := v_parts[2]::bigint;
    END IF;

    SELECT array_agg(x.id ORDER BY x.last_activity DESC, x.id DESC),
           array_agg(x.last_activity ORDER BY x.last_activity DESC,
                     x.id DESC)
    INTO v_ids, v_acts
    FROM (SELECT c.id, c.last_activity
          FROM chat.members mb
          JOIN chat.conversations c ON c.id = mb.conversation_id
          WHERE mb.user_id = p_user AND mb.archived = v_archived
            AND (v_bt IS NULL OR (c.last_activity, c.id) < (v_bt, v_bid))
          ORDER BY c.last_activity DESC, c.id DESC
          LIMIT v_limit + 1) x;

    v_n := coalesce(array_length(v_ids, 1), 0);
    IF v_n > v_limit THEN
        v_next := (extract(epoch FROM v_acts[v_limit]) * 1000000)::bigint
                  || ':' || v_ids[v_limit];
        v_ids := v_ids[1:v_limit];
    END IF;

    RETURN chat.ok(jsonb_build_object(
        'conversations',
        (SELECT coalesce(jsonb_agg(chat.conversation_obj(i, p_user)
                                   ORDER BY o), '[]'::jsonb)
         FROM unnest(v_ids) WITH ORDINALITY AS u(i, o)),
        'next', v_next));
END
$$;

-- ------------------------------------------------------------------------
-- messages.history: {"conversation_id", "before_seq"? | "after_seq"?,
--                    "limit"?} -> {"messages": [M] ascending, "has_more"}
-- Neither cursor: the latest page.  has_more: more messages exist in the
-- paging direction (older for before_seq and the latest page, newer for
-- after_seq).

CREATE OR REPLACE FUNCTION chat.api_messages_history(p_user text,
                                                     p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
    v_err       jsonb := chat.check_request(p_user, p_req);
    v_cid       bigint;
    v_before    bigint;
    v_after     bigint;
    v_limit     bigint := 50;
    v_msgs      jsonb;
    v_has_more  boolean;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;

    v_cid := chat.json_id(p_req -> 'conversation_id');
    IF v_cid IS NULL THEN
        RETURN chat.bad(p_req, 'conversation_id', 'a positive integer');
    END IF;

    IF coalesce(jsonb_typeof(p_req -> 'before_seq'), 'null') <> 'null' THEN
        v_before := chat.json_int(p_req -> 'before_seq');
        IF v_before IS NULL OR v_before < 0 THEN
            RETURN chat.bad(p_req, 'before_seq', 'an integer >= 0');
        END IF;
    END IF;
    IF coalesce(jsonb_typeof(p_req -> 'after_seq'), 'null') <> 'null' THEN
        v_after := chat.json_int(p_req -> 'after_seq');
        IF v_after IS NULL OR v_after < 0 THEN
            RETURN chat.bad(p_req, 'after_seq', 'an integer >= 0');
        END IF;
    END IF;
    IF v_before IS NOT NULL AND v_after IS NOT NULL THEN
        RETURN chat.err('bad_request',
                        'before_seq and after_seq are exclusive');
    END IF;

    IF coalesce(jsonb_typeof(p_req -> 'limit'), 'null') <> 'null' THEN
        v_limit := chat.json_int(p_req -> 'limit');
        IF v_limit IS NULL OR v_limit NOT BETWEEN 1 AND 100 THEN
            RETURN chat.bad(p_req, 'limit', 'an integer from 1 to 100');
        END IF;
    END IF;

    IF NOT EXISTS (SELECT 1 FROM chat.members
                   WHERE conversation_id = v_cid AND user_id = p_user)
    THEN
        RETURN chat.err('not_found', 'conversation not found');
    END IF;

    IF v_after IS NOT NULL THEN
        SELECT coalesce(jsonb_agg(chat.message_obj(x.m) ORDER BY (x.m).seq)
                        FILTER (WHERE x.rn <= v_limit), '[]'::jsonb),
               count(*) > v_limit
        INTO v_msgs, v_has_more
        FROM (SELECT p.m, row_number() OVER (ORDER BY (p.m).seq) AS rn
              FROM (SELECT m FROM chat.messages m
                    WHERE m.conversation_id = v_cid AND m.seq > v_after
                    ORDER BY m.seq
                    LIMIT v_limit + 1) p) x;
    ELSE
        SELECT coalesce(jsonb_agg(chat.message_obj(x.m) ORDER BY (x.m).seq)
                        FILTER (WHERE x.rn <= v_limit), '[]'::jsonb),
               count(*) > v_limit
        INTO v_msgs, v_has_more
        FROM (SELECT p.m, row_number() OVER (ORDER BY (p.m).seq DESC) AS rn
              FROM (SELECT m FROM chat.messages m
                    WHERE m.conversation_id = v_cid
                      AND m.seq < coalesce(v_before,
                                           9223372036854775807)
                    ORDER BY m.seq DESC
                    LIMIT v_limit + 1) p) x;
    END IF;

    RETURN chat.ok(jsonb_build_object('messages', v_msgs,
                                      'has_more', v_has_more));
END
$$;

-- ------------------------------------------------------------------------
-- message.send

-- One send.  Takes the conversation's row lock (a batch already holds it:
-- taking it again is free).  Order: validate, membership, lock,
-- idempotency, blocks, reply_to, then the next seq.  The idempotency check
-- runs under the lock, so a retry never takes a number: seq has no gaps.
CREATE OR REPLACE FUNCTION chat.send_one(p_user text, p_req jsonb,
                                         p_max_length bigint)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    v_err    jsonb := chat.check_request(p_user, p_req);
    v_cid    bigint;
    v_cmid   text;
    v_att    jsonb;
    v_reply  bigint;
    v_kind   text;
    v_seq    bigint;
    v_msg    chat.messages;
    v_obj    jsonb;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    IF p_max_length IS NULL THEN
        RETURN chat.err('bad_request',
                        'max_length must be an integer from 1 to 1000000');
    END IF;

    v_cid := chat.json_id(p_req -> 'conversation_id');
    IF v_cid IS NULL THEN
        RETURN chat.bad(p_req, 'conversation_id', 'a positive integer');
    END IF;

    v_err := chat.check_body(p_req, p_max_length);
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;

    IF jsonb_typeof(p_req -> 'client_msg_id') IS DISTINCT FROM 'string'
       OR p_req ->> 'client_msg_id' = ''
    THEN
        RETURN chat.bad(p_req, 'client_msg_id', 'a non-empty string');
    END IF;
    v_cmid := p_req ->> 'client_msg_id';
    IF char_length(v_cmid) > 64 THEN
        RETURN chat.err('too_large',
                        'client_msg_id is longer than 64 characters');
    END IF;

    v_att := chat.check_attachments(p_req -> 'attachments');
    IF jsonb_typeof(v_att) = 'object' THEN
        RETURN v_att;
    END IF;

    IF coalesce(jsonb_typeof(p_req -> 'reply_to'), 'null') <> 'null' THEN
        v_reply := chat.json_id(p_req -> 'reply_to');
        IF v_reply IS NULL THEN
            RETURN chat.bad(p_req, 'reply_to', 'a message id');
        END IF;
    END IF;

    IF NOT EXISTS (SELECT 1 FROM chat.members
                   WHERE conversation_id = v_cid AND user_id = p_user)
    THEN
        RETURN chat.err('not_found', 'conversation not found');
    END IF;

    SELECT kind INTO v_kind FROM chat.conversations
    WHERE id = v_cid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN chat.err('not_found', 'conversation not found');
    END IF;

    SELECT * INTO v_msg FROM chat.messages
    WHERE conversation_id = v_cid AND sender_id = p_user
      AND client_msg_id = v_cmid;
    IF FOUND THEN
        -- a retry: the message as it is now, delivered to nobody again
        RETURN chat.ok(jsonb_build_object('message',
                                          chat.message_obj(v_msg)));
    END IF;

    IF v_kind = 'direct'
       AND EXISTS (SELECT 1 FROM chat.members o
                   WHERE o.conversation_id = v_cid AND o.user_id <> p_user
                     AND chat.is_blocked(p_user, o.user_id))
    THEN
        RETURN chat.err('forbidden', 'blocked');
    END IF;

    IF v_reply IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM chat.messages
                       WHERE id = v_reply AND conversation_id = v_cid)
    THEN
        RETURN chat.err('bad_request',
                        'reply_to is not a message of this conversation');
    END IF;

    UPDATE chat.conversations
    SET last_seq = last_seq + 1, last_activity = now()
    WHERE id = v_cid
    RETURNING last_seq INTO v_seq;

    INSERT INTO chat.messages (conversation_id, seq, updated_seq, sender_id,
                               body, client_msg_id, attachments, reply_to)
    VALUES (v_cid, v_seq, v_seq, p_user, p_req ->> 'body', v_cmid, v_att,
            v_reply)
    RETURNING * INTO v_msg;

    v_obj := chat.message_obj(v_msg);
    RETURN chat.ok(
        jsonb_build_object('message', v_obj),
        jsonb_build_array(jsonb_build_object(
            'to', chat.member_ids(v_cid),
            'event', jsonb_build_object('type', 'message.created',
                                        'message', v_obj))));
END
$$;

-- p_items: [{"user": "...", "max_length"?: N, "req": {...}}, ...]
-- -> [result, ...] in the same order.  All in the caller's transaction.
-- The rows of every conversation the batch may write to are locked first,
-- in id order, so that concurrent batches cannot deadlock.
-- max_length: the item's, else the req's, else 5000.
CREATE OR REPLACE FUNCTION chat.api_message_send_batch(p_items jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    v_item  jsonb;
    v_out   jsonb[] := '{}';
    v_max   jsonb;
BEGIN
    IF jsonb_typeof(p_items) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'chat.api_message_send_batch: p_items must be a '
                        'JSON array'
              USING ERRCODE = 'invalid_parameter_value';
    END IF;

    PERFORM 1 FROM chat.conversations c
    WHERE c.id IN (
        SELECT mb.conversation_id
        FROM jsonb_array_elements(p_items) i
        JOIN chat.members mb
          ON mb.conversation_id = chat.json_id(i -> 'req' -> 'conversation_id')
         AND mb.user_id = i ->> 'user')
    ORDER BY c.id
    FOR UPDATE OF c;

    FOR v_item IN SELECT value FROM jsonb_array_elements(p_items) LOOP
        IF jsonb_typeof(v_item) <> 'object'
           OR jsonb_typeof(v_item -> 'user') IS DISTINCT FROM 'string'
        THEN
            v_out := array_append(v_out,
                chat.err('bad_request', 'an item must be {"user", "req"}'));
            CONTINUE;
        END IF;
        v_max := coalesce(v_item -> 'max_length',
                          v_item -> 'req' -> 'max_length');
        v_out := array_append(v_out,
            chat.send_one(v_item ->> 'user', v_item -> 'req',
                          chat.max_length(v_max)));
    END LOOP;

    RETURN to_jsonb(v_out);
END
$$;

CREATE OR REPLACE FUNCTION chat.api_message_send(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY INVOKER
AS $$
    SELECT chat.api_message_send_batch(jsonb_build_array(
        jsonb_build_object('user', p_user, 'req', p_req))) -> 0
$$;

-- ------------------------------------------------------------------------
-- message.edit / message.delete

-- The message p_mid if p_user is a member of its conversation, read after
-- taking the conversation's row lock (NULL id: not found).
CREATE OR REPLACE FUNCTION chat.lock_message(p_user text, p_mid bigint)
RETURNS chat.messages
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    v_cid  bigint;
    v_msg  chat.messages;
BEGIN
    SELECT m.conversation_id INTO v_cid
    FROM chat.messages m
    JOIN chat.members mb
      ON mb.conversation_id = m.conversation_id AND mb.user_id = p_user
    WHERE m.id = p_mid;
    IF NOT FOUND THEN
        RETURN v_msg;
    END IF;
    PERFORM 1 FROM chat.conversations WHERE id = v_cid FOR UPDATE;
    SELECT * INTO v_msg FROM chat.messages WHERE id = p_mid;
    RETURN v_msg;
END
$$;

-- {"message_id", "body", "max_length"?} -> {"message": M}
CREATE OR REPLACE FUNCTION chat.api_message_edit(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    v_err  jsonb := chat.check_request(p_user, p_req);
    v_mid  bigint;
    v_max  bigint;
    v_msg  chat.messages;
    v_seq  bigint;
    v_obj  jsonb;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    v_mid := chat.json_id(p_req -> 'message_id');
    IF v_mid IS NULL THEN
        RETURN chat.bad(p_req, 'message_id', 'a positive integer');
    END IF;
    v_max := chat.max_length(p_req -> 'max_length');
    IF v_max IS NULL THEN
        RETURN chat.err('bad_request',
                        'max_length must be an integer from 1 to 1000000');
    END IF;
    v_err := chat.check_body(p_req, v_max);
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;

    v_msg := chat.lock_message(p_user, v_mid);
    IF v_msg.id IS NULL THEN
        RETURN chat.err('not_found', 'message not found');
    END IF;
    IF v_msg.sender_id <> p_user THEN
        RETURN chat.err('forbidden', 'only the sender can edit a message');
    END IF;
    IF v_msg.deleted_at IS NOT NULL THEN
        RETURN chat.err('conflict', 'the message is deleted');
    END IF;

    UPDATE chat.conversations SET last_seq = last_seq + 1
    WHERE id = v_msg.conversation_id
    RETURNING last_seq INTO v_seq;

    UPDATE chat.messages
    SET body = p_req ->> 'body', edited_at = now(), updated_seq = v_seq
    WHERE id = v_mid
    RETURNING * INTO v_msg;

    v_obj := chat.message_obj(v_msg);
    RETURN chat.ok(
        jsonb_build_object('message', v_obj),
        jsonb_build_array(jsonb_build_object(
            'to', chat.member_ids(v_msg.conversation_id),
            'event', jsonb_build_object('type', 'message.updated',
                                        'message', v_obj))));
END
$$;

-- {"message_id"} -> {"message": M}
CREATE OR REPLACE FUNCTION chat.api_message_delete(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    v_err  jsonb := chat.check_request(p_user, p_req);
    v_mid  bigint;
    v_msg  chat.messages;
    v_seq  bigint;
    v_obj  jsonb;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    v_mid := chat.json_id(p_req -> 'message_id');
    IF v_mid IS NULL THEN
        RETURN chat.bad(p_req, 'message_id', 'a positive integer');
    END IF;

    v_msg := chat.lock_message(p_user, v_mid);
    IF v_msg.id IS NULL THEN
        RETURN chat.err('not_found', 'message not found');
    END IF;
    IF v_msg.sender_id <> p_user
       AND NOT EXISTS (SELECT 1 FROM chat.members mb
                       JOIN chat.conversations c
                         ON c.id = mb.conversation_id
                       WHERE mb.conversation_id = v_msg.conversation_id
                         AND mb.user_id = p_user
                         AND c.kind = 'group'
                         AND mb.role IN ('owner', 'admin'))
    THEN
        RETURN chat.err('forbidden',
            'only the sender or a group owner or admin can delete '
            'a message');
    END IF;
    IF v_msg.deleted_at IS NOT NULL THEN
        -- deleted already: the same answer, nothing delivered again
        RETURN chat.ok(jsonb_build_object('message',
                                          chat.message_obj(v_msg)));
    END IF;

    UPDATE chat.conversations SET last_seq = last_seq + 1
    WHERE id = v_msg.conversation_id
    RETURNING last_seq INTO v_seq;

    UPDATE chat.messages
    SET deleted_at = now(), body = NULL, attachments = '[]',
        updated_seq = v_seq
    WHERE id = v_mid
    RETURNING * INTO v_msg;

    v_obj := chat.message_obj(v_msg);
    RETURN chat.ok(
        jsonb_build_object('message', v_obj),
        jsonb_build_array(jsonb_build_object(
            'to', chat.member_ids(v_msg.conversation_id),
            'event', jsonb_build_object('type', 'message.deleted',
                                        'message', v_obj))));
END
$$;

-- ------------------------------------------------------------------------
-- message.read / message.delivered

-- Moves p_user's read (p_kind 'read') or delivered mark of a conversation
-- to greatest(old, least(seq, last_seq)); a receipt event when it moved.
CREATE OR REPLACE FUNCTION chat.mark(p_user text, p_req jsonb, p_kind text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    v_err    jsonb := chat.check_request(p_user, p_req);
    v_cid    bigint;
    v_seq    bigint;
    v_last   bigint;
    v_mark   bigint;
    v_moved  boolean;
    v_data   jsonb;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    v_cid := chat.json_id(p_req -> 'conversation_id');
    IF v_cid IS NULL THEN
        RETURN chat.bad(p_req, 'conversation_id', 'a positive integer');
    END IF;
    v_seq := chat.json_int(p_req -> 'seq');
    IF v_seq IS NULL OR v_seq < 0 THEN
        RETURN chat.bad(p_req, 'seq', 'an integer >= 0');
    END IF;

    SELECT c.last_seq INTO v_last
    FROM chat.members mb
    JOIN chat.conversations c ON c.id = mb.conversation_id
    WHERE mb.conversation_id = v_cid AND mb.user_id = p_user;
    IF NOT FOUND THEN
        RETURN chat.err('not_found', 'conversation not found');
    END IF;
    v_seq := least(v_seq, v_last);

    IF p_kind = 'read' THEN
        UPDATE chat.members SET last_read_seq = v_seq
        WHERE conversation_id = v_cid AND user_id = p_user
          AND last_read_seq < v_seq;
        v_moved := FOUND;
        SELECT last_read_seq INTO v_mark FROM chat.members
        WHERE conversation_id = v_cid AND user_id = p_user;
        v_data := jsonb_build_object(
            'last_read_seq', v_mark,
            'unread_count', chat.unread_count(v_cid, p_user, v_mark));
    ELSE
        UPDATE chat.members SET last_delivered_seq = v_seq
        WHERE conversation_id = v_cid AND user_id = p_user
          AND last_delivered_seq < v_seq;
        v_moved := FOUND;
        v_data := '{}';
    END IF;

    IF NOT v_moved THEN
        RETURN chat.ok(v_data);
    END IF;
    RETURN chat.ok(v_data, jsonb_build_array(jsonb_build_object(
        'to', chat.member_ids(v_cid),
        'event', jsonb_build_object('type', 'receipt',
                                    'conversation_id', v_cid,
                                    'user_id', p_user,
                                    'kind', p_kind,
                                    'seq', v_seq))));
END
$$;

-- {"conversation_id", "seq"} -> {"last_read_seq", "unread_count"}
CREATE OR REPLACE FUNCTION chat.api_message_read(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY INVOKER
AS $$
    SELECT chat.mark(p_user, p_req, 'read')
$$;

-- {"conversation_id", "seq"} -> {}
CREATE OR REPLACE FUNCTION chat.api_message_delivered(p_user text,
                                                      p_req jsonb)
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY INVOKER
AS $$
    SELECT chat.mark(p_user, p_req, 'delivered')
$$;

-- ------------------------------------------------------------------------
-- typing: {"conversation_id", "active"} -> {}, a typing event to the other
-- members (membership and blocks checked here; the module may cache).

CREATE OR REPLACE FUNCTION chat.api_typing(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
    v_err   jsonb := chat.check_request(p_user, p_req);
    v_cid   bigint;
    v_kind  text;
    v_to    jsonb;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    v_cid := chat.json_id(p_req -> 'conversation_id');
    IF v_cid IS NULL THEN
        RETURN chat.bad(p_req, 'conversation_id', 'a positive integer');
    END IF;
    IF jsonb_typeof(p_req -> 'active') IS DISTINCT FROM 'boolean' THEN
        RETURN chat.bad(p_req, 'active', 'a boolean');
    END IF;

    SELECT c.kind INTO v_kind
    FROM chat.members mb
    JOIN chat.conversations c ON c.id = mb.conversation_id
    WHERE mb.conversation_id = v_cid AND mb.user_id = p_user;
    IF NOT FOUND THEN
        RETURN chat.err('not_found', 'conversation not found');
    END IF;
    IF v_kind = 'direct'
       AND EXISTS (SELECT 1 FROM chat.members o
                   WHERE o.conversation_id = v_cid AND o.user_id <> p_user
                     AND chat.is_blocked(p_user, o.user_id))
    THEN
        RETURN chat.err('forbidden', 'blocked');
    END IF;

    SELECT coalesce(jsonb_agg(user_id ORDER BY user_id COLLATE "C"),
                    '[]'::jsonb)
    INTO v_to
    FROM chat.members WHERE conversation_id = v_cid AND user_id <> p_user;
    IF v_to = '[]' THEN
        RETURN chat.ok('{}');
    END IF;
    RETURN chat.ok('{}', jsonb_build_array(jsonb_build_object(
        'to', v_to,
        'event', jsonb_build_object('type', 'typing',
                                    'conversation_id', v_cid,
                                    'user_id', p_user,
                                    'active', p_req -> 'active'))));
END
$$;

-- ------------------------------------------------------------------------
-- sync: {"conversations"?: {"45": 17, ...}, "limit"?}
--   -> {"complete", "cursors": {"45": 20, ...}}, events for p_user only
-- For every conversation of p_user (in id order; omitted ones from 0; ids
-- p_user is not in are ignored), the changes after the cursor in
-- updated_seq order, at most "limit" per conversation and 1000 in all:
-- seq > cursor replays as message.created (the message as it is now),
-- else message.updated or message.deleted.  complete is false when
-- anything was left out; cursors then say where to go on.

CREATE OR REPLACE FUNCTION chat.api_sync(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
    v_err       jsonb := chat.check_request(p_user, p_req);
    v_in        jsonb;
    v_limit     bigint := 100;
    v_budget    bigint := 1000;
    v_take      bigint;
    v_n         bigint;
    v_cid       bigint;
    v_from      bigint;     -- the client's cursor
    v_cur       bigint;     -- the last change replayed
    v_msg       chat.messages;
    v_complete  boolean := true;
    v_events    jsonb[] := '{}';
    v_keys      text[] := '{}';
    v_vals      bigint[] := '{}';
    v_to        jsonb := jsonb_build_array(p_user);
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;

    v_in := coalesce(p_req -> 'conversations', 'null');
    IF jsonb_typeof(v_in) = 'null' THEN
        v_in := '{}';
    END IF;
    IF jsonb_typeof(v_in) <> 'object' THEN
        RETURN chat.bad(p_req, 'conversations', 'an object');
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_each(v_in) e
               WHERE e.key !~ '^[1-9][0-9]{0,17}$'
                  OR coalesce(chat.json_int(e.value), -1) < 0)
    THEN
        RETURN chat.err('bad_request',
            'conversations must map conversation ids to integers >= 0');
    END IF;

    IF coalesce(jsonb_typeof(p_req -> 'limit'), 'null') <> 'null' THEN
        v_limit := chat.json_int(p_req -> 'limit');
        IF v_limit IS NULL OR v_limit NOT BETWEEN 1 AND 500 THEN
            RETURN chat.bad(p_req, 'limit', 'an integer from 1 to 500');
        END IF;
    END IF;

    FOR v_cid IN SELECT conversation_id FROM chat.members
                 WHERE user_id = p_user ORDER BY conversation_id
    LOOP
        v_from := coalesce(chat.json_int(v_in -> v_cid::text), 0);
        v_cur := v_from;
        v_take := least(v_limit, v_budget);
        v_n := 0;
        FOR v_msg IN SELECT * FROM chat.messages
                     WHERE conversation_id = v_cid AND updated_seq > v_from
                     ORDER BY updated_seq
                     LIMIT v_take + 1
        LOOP
            v_n := v_n + 1;
            IF v_n > v_take THEN
                v_complete := false;
                EXIT;
            END IF;
            v_events := array_append(v_events, jsonb_build_object(
                'to', v_to,
                'event', jsonb_build_object(
                    'type', CASE WHEN v_msg.seq > v_from
                                     THEN 'message.created'
                                 WHEN v_msg.deleted_at IS NOT NULL
                                     THEN 'message.deleted'
                                 ELSE 'message.updated' END,
                    'message', chat.message_obj(v_msg))));
            v_cur := v_msg.updated_seq;
        END LOOP;
        v_budget := v_budget - least(v_n, v_take);
        v_keys := array_append(v_keys, v_cid::text);
        v_vals := array_append(v_vals, v_cur);
    END LOOP;

    RETURN chat.ok(
        jsonb_build_object(
            'complete', v_complete,
            'cursors', (SELECT coalesce(jsonb_object_agg(k, v), '{}')
                        FROM unnest(v_keys, v_vals) AS u(k, v))),
        to_jsonb(v_events));
END
$$;

-- ------------------------------------------------------------------------
-- block / unblock: {"user_id"} -> {}

CREATE OR REPLACE FUNCTION chat.api_block(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    v_err  jsonb := chat.check_request(p_user, p_req);
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    IF chat.json_user(p_req -> 'user_id') IS NULL THEN
        RETURN chat.bad(p_req, 'user_id', 'a user id');
    END IF;
    IF p_req ->> 'user_id' = p_user THEN
        RETURN chat.err('bad_request', 'cannot block yourself');
    END IF;
    INSERT INTO chat.blocks (blocker_id, blocked_id)
    VALUES (p_user, p_req ->> 'user_id')
    ON CONFLICT DO NOTHING;
    RETURN chat.ok('{}');
END
$$;

CREATE OR REPLACE FUNCTION chat.api_unblock(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    v_err  jsonb := chat.check_request(p_user, p_req);
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    IF chat.json_user(p_req -> 'user_id') IS NULL THEN
        RETURN chat.bad(p_req, 'user_id', 'a user id');
    END IF;
    DELETE FROM chat.blocks
    WHERE blocker_id = p_user AND blocked_id = p_req ->> 'user_id';
    RETURN chat.ok('{}');
END
$$;

-- ------------------------------------------------------------------------
-- chat.api(user, type, request): the WebSocket request types in one entry
-- point, for a module that prepares one statement.  Only the protocol's
-- client requests: user.upsert, block and unblock are not reachable here.

CREATE OR REPLACE FUNCTION chat.api(p_user text, p_type text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
BEGIN
    RETURN CASE p_type
        WHEN 'conversation.create' THEN
            chat.api_conversation_create(p_user, p_req)
        WHEN 'conversation.list' THEN
            chat.api_conversation_list(p_user, p_req)
        WHEN 'messages.history' THEN
            chat.api_messages_history(p_user, p_req)
        WHEN 'message.send' THEN chat.api_message_send(p_user, p_req)
        WHEN 'message.edit' THEN chat.api_message_edit(p_user, p_req)
        WHEN 'message.delete' THEN chat.api_message_delete(p_user, p_req)
        WHEN 'message.read' THEN chat.api_message_read(p_user, p_req)
        WHEN 'message.delivered' THEN
            chat.api_message_delivered(p_user, p_req)
        WHEN 'typing' THEN chat.api_typing(p_user, p_req)
        WHEN 'sync' THEN chat.api_sync(p_user, p_req)
        ELSE chat.err('bad_request', 'unknown type')
    END;
END
$$;

INSERT INTO chat.schema_migrations (version, name)
VALUES (2, '0002_chat')
ON CONFLICT DO NOTHING;

COMMIT;
