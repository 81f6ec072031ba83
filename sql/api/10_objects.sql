-- sql/api/10_objects.sql
-- The objects of the protocol (messages, conversations, users) as JSON, and
-- the facts the areas ask about them (members, blocks, roles, unread).
--
-- Part of the current API: every file of sql/api/ is applied whole, in one
-- transaction, by sql/migrate.sh on every deploy (never edit a function
-- elsewhere).  Entry points are SECURITY DEFINER with a pinned search_path
-- and are granted in 99_privileges.sql; everything else runs only inside
-- them.

-- plpgsql keeps its plans for the session; a SQL function with a
-- sub-select is planned again at every call.
CREATE OR REPLACE FUNCTION chat.is_blocked(p_a text, p_b text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM chat.blocks
                   WHERE (blocker_id = p_a AND blocked_id = p_b)
                      OR (blocker_id = p_b AND blocked_id = p_a));
END
$$;

-- The users p_user blocked or was blocked by: neither sees the other's
-- messages, typing, receipts or presence, in any conversation.
CREATE OR REPLACE FUNCTION chat.block_peers(p_user text) RETURNS text[]
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
BEGIN
    RETURN ARRAY(SELECT blocked_id FROM chat.blocks WHERE blocker_id = p_user
                 UNION
                 SELECT blocker_id FROM chat.blocks WHERE blocked_id = p_user);
END
$$;

-- The members of p_cid who hear what p_user does there (messages, typing,
-- receipts): all of them but those blocked either way with p_user.
CREATE OR REPLACE FUNCTION chat.recipients(p_cid bigint, p_user text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
    v_peers  text[] := chat.block_peers(p_user);
BEGIN
    IF cardinality(v_peers) = 0 THEN
        RETURN chat.member_ids(p_cid);
    END IF;
    RETURN (SELECT coalesce(jsonb_agg(user_id ORDER BY user_id COLLATE "C"),
                            '[]'::jsonb)
            FROM chat.members
            WHERE conversation_id = p_cid AND user_id <> ALL (v_peers));
END
$$;

-- A limit of the service: the setting chat.<p_name> when an operator set
-- one (ALTER DATABASE ... SET chat.max_group_members = 500), else p_default.
CREATE OR REPLACE FUNCTION chat.limit_of(p_name text, p_default int)
RETURNS int
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
    v  text := current_setting('chat.' || p_name, true);
BEGIN
    IF v ~ '^ *[0-9]{1,9} *$' THEN
        RETURN btrim(v)::int;
    END IF;
    RETURN p_default;
END
$$;

-- The error of a limit reached, or NULL: p_user may still be put into a
-- group by someone else (chat.max_group_joins_per_hour), and p_cid (NULL:
-- a new group) may take p_new more members (chat.max_group_members).
CREATE OR REPLACE FUNCTION chat.check_join(p_cid bigint, p_target text,
                                           p_actor text, p_new int)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
    v_max  int;
BEGIN
    IF p_cid IS NOT NULL THEN
        v_max := chat.limit_of('max_group_members', 10000);
        IF (SELECT count(*) FROM chat.members WHERE conversation_id = p_cid)
           + p_new > v_max
        THEN
            RETURN chat.err('limit', 'a group has at most ' || v_max
                                     || ' members');
        END IF;
    END IF;
    IF p_target IS NOT NULL AND p_target <> p_actor THEN
        v_max := chat.limit_of('max_group_joins_per_hour', 100);
        IF (SELECT count(*) FROM chat.members mb
            JOIN chat.conversations c ON c.id = mb.conversation_id
            WHERE mb.user_id = p_target AND c.kind = 'group'
              AND c.created_by <> p_target
              AND mb.joined_at > now() - interval '1 hour') >= v_max
        THEN
            RETURN chat.err('limit', p_target || ' was added to '
                || v_max || ' groups in the last hour: try again later');
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION chat.member_ids(p_cid bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
BEGIN
    RETURN (SELECT coalesce(jsonb_agg(user_id ORDER BY user_id COLLATE "C"),
                            '[]'::jsonb)
            FROM chat.members WHERE conversation_id = p_cid);
END
$$;

-- Messages of others after p_after that are not deleted, none from users
-- blocked either way (messages_unread_idx, index-only).
CREATE OR REPLACE FUNCTION chat.unread_count(p_cid bigint, p_user text,
                                             p_after bigint)
RETURNS bigint
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT count(*) FROM chat.messages
    WHERE conversation_id = p_cid AND seq > p_after
      AND deleted_at IS NULL AND sender_id <> p_user
      -- (a sub-select: the peers are read once, not per row)
      AND sender_id <> ALL (coalesce((SELECT chat.block_peers(p_user)),
                                     '{}'))
$$;

-- The protocol's Message object, with "system": true on system messages
-- only (the object of every other message has no such key).
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
        || CASE WHEN m.kind = 'system' THEN '{"system": true}'::jsonb
                ELSE '{}'::jsonb END
$$;

-- A member as the protocol lists it.  The read marks of a member blocked
-- either way with the reader (p_peers: chat.block_peers) are not told (0):
-- they would be receipts.
CREATE OR REPLACE FUNCTION chat.member_obj(mb chat.members, p_peers text[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE SECURITY INVOKER
AS $$
    SELECT jsonb_build_object(
        'user_id', mb.user_id,
        'role', mb.role,
        'last_read_seq', CASE WHEN mb.user_id = ANY (p_peers) THEN 0
                              ELSE mb.last_read_seq END,
        'last_delivered_seq', CASE WHEN mb.user_id = ANY (p_peers) THEN 0
                                   ELSE mb.last_delivered_seq END)
$$;

-- A group is big above chat.big_group_members members (default 100):
-- its receipts and typing no longer go to every member (chat.mark,
-- chat.api_typing).  At most that many + 1 index entries are read,
-- whatever the group's size.
CREATE OR REPLACE FUNCTION chat.is_big_group(p_cid bigint) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
    v_max  int := chat.limit_of('big_group_members', 100);
BEGIN
    RETURN (SELECT count(*) FROM (SELECT 1 FROM chat.members
                                  WHERE conversation_id = p_cid
                                  LIMIT v_max + 1) x) > v_max;
END
$$;

-- A Conversation object (see chat.conversation_obj) with at most p_max
-- members (NULL: all) in their order, plus p_user's own entry when it
-- comes later: the object of a big group stays small, and a client still
-- finds its own role and read marks.  The first members are read from
-- members_order_idx (the ORDER BY is its expression), not sorted.
-- (plpgsql: its plans are kept for the session; as a SQL function it was
-- planned again at every call, about 1 ms)
CREATE OR REPLACE FUNCTION chat.conversation_obj_capped(p_cid bigint,
                                                        p_user text,
                                                        p_max int)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
BEGIN
    RETURN (SELECT jsonb_build_object(
            'id',         c.id,
            'kind',       c.kind,
            'title',      c.title,
            'ref',        c.ref,
            'metadata',   c.metadata,
            'created_at', chat.fmt_time(c.created_at),
            'members',    (SELECT coalesce(jsonb_agg(
                                      chat.member_obj(z, pe.peers)
                                      ORDER BY z.joined_at,
                                               array_position(
                                                   ARRAY['owner', 'admin',
                                                         'member'], z.role),
                                               z.user_id COLLATE "C"),
                                  '[]'::jsonb)
                           FROM ((SELECT mb.* FROM chat.members mb
                                  WHERE mb.conversation_id = c.id
                                  ORDER BY mb.joined_at,
                                           array_position(
                                               ARRAY['owner', 'admin', 'member'],
                                               mb.role),
                                           mb.user_id COLLATE "C"
                                  LIMIT p_max)
                                 UNION
                                 SELECT mb.* FROM chat.members mb
                                 WHERE mb.conversation_id = c.id
                                   AND mb.user_id = p_user) z,
                                (SELECT coalesce(chat.block_peers(p_user), '{}')
                                        AS peers) pe),
            'members_count', (SELECT count(*) FROM chat.members mb
                              WHERE mb.conversation_id = c.id),
            'last_message', (SELECT chat.message_obj(m) FROM chat.messages m
                             WHERE m.conversation_id = c.id
                               AND m.sender_id <> ALL (coalesce(
                                   (SELECT chat.block_peers(p_user)), '{}'))
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
        WHERE c.id = p_cid);
END
$$;

-- The protocol's Conversation object as p_user sees it (unread_count,
-- muted, archived are p_user's).  Members in joining order, owners first
-- among those who joined together: the first 100 of them, and p_user's
-- own entry when it comes later (conversation.members pages through all);
-- members_count counts them all.  last_message is the message with the
-- highest seq, deleted or not, that p_user may see (not from a user
-- blocked either way).
CREATE OR REPLACE FUNCTION chat.conversation_obj(p_cid bigint, p_user text)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT chat.conversation_obj_capped(p_cid, p_user, 100)
$$;

-- The protocol's User object for an id: the directory's name and avatar
-- when the user ever connected, else the id as the name.
CREATE OR REPLACE FUNCTION chat.user_obj(p_id text) RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'id', p_id,
        'name', coalesce((SELECT u.name FROM chat.users u WHERE u.id = p_id),
                         p_id),
        'avatar', (SELECT u.avatar FROM chat.users u WHERE u.id = p_id)))
$$;

-- The group p_cid, locked, and p_user's role in it: NULL when p_user is
-- not a member (the caller answers not_found: no existence leak).
CREATE OR REPLACE FUNCTION chat.group_role(p_user text, p_cid bigint,
                                           OUT o_kind text, OUT o_role text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
BEGIN
    SELECT c.kind INTO o_kind FROM chat.conversations c
    WHERE c.id = p_cid FOR UPDATE;
    SELECT mb.role INTO o_role FROM chat.members mb
    WHERE mb.conversation_id = p_cid AND mb.user_id = p_user;
END
$$;

-- The event of a membership change, to the members and the user concerned.
CREATE OR REPLACE FUNCTION chat.member_event(p_cid bigint, p_type text,
                                             p_user text, p_role text)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT jsonb_build_object(
        'to', (SELECT jsonb_agg(DISTINCT u ORDER BY u)
               FROM (SELECT mb.user_id AS u FROM chat.members mb
                     WHERE mb.conversation_id = p_cid
                     UNION ALL SELECT p_user) m),
        'event', jsonb_build_object('type', p_type, 'conversation_id', p_cid,
                                    'user_id', p_user, 'role', p_role))
$$;

-- A conversation as every member may see it, for an event they all get:
-- no last_message (it could be from someone a member blocked) and none of
-- one user's own fields (unread_count, muted, archived): each client keeps
-- its own.
CREATE OR REPLACE FUNCTION chat.shared_conversation_obj(p_cid bigint)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT (chat.conversation_obj(p_cid, NULL)
            - 'unread_count' - 'muted' - 'archived')
           || '{"last_message": null}'::jsonb
$$;

-- A change of a conversation (title, metadata, a role) to its members.
CREATE OR REPLACE FUNCTION chat.updated_event(p_cid bigint, p_user text)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT jsonb_build_object(
        'to', chat.member_ids(p_cid),
        'event', jsonb_build_object(
            'type', 'conversation.updated',
            'conversation', chat.shared_conversation_obj(p_cid)))
$$;
