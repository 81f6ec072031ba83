-- sql/api/40_events.sql
-- What reaches whom without a stored change: typing recipients, presence
-- events and who may watch whom;
-- what a client missed: sync and the changes of a conversation.
--
-- Part of the current API: every file of sql/api/ is applied whole, in one
-- transaction, by sql/migrate.sh on every deploy (never edit a function
-- elsewhere).  Entry points are SECURITY DEFINER with a pinned search_path
-- and are granted in 99_privileges.sql; everything else runs only inside
-- them.

-- typing: {"conversation_id", "active"} -> {}, a typing event to the other
-- members but those blocked either way (membership and blocks checked
-- here; the module may cache).  In a big group (chat.is_big_group) typing
-- goes to nobody, as in the big channels of other chat systems: "someone
-- is typing" among thousands says nothing, and 10,000 frames per
-- keystroke pause would cost more than the messages.
CREATE OR REPLACE FUNCTION chat.api_typing(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
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

    IF chat.is_big_group(v_cid) THEN
        RETURN chat.ok('{}');
    END IF;

    SELECT coalesce(jsonb_agg(t ORDER BY t COLLATE "C"), '[]'::jsonb)
    INTO v_to
    FROM jsonb_array_elements_text(chat.recipients(v_cid, p_user)) t
    WHERE t <> p_user;
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

-- The presence event of p_user, to its watchers (no recipients: "to" is
-- null, and each nginx worker sends it to its connections that watch
-- p_user); p_req: {"online": bool, "last_seen": text | null}.  Nothing is
-- read: who may watch whom is checked when a watch set is made.
CREATE OR REPLACE FUNCTION chat.presence_event(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE SECURITY INVOKER
AS $$
    SELECT jsonb_build_object(
        'ok', '{}'::jsonb,
        'events', jsonb_build_array(jsonb_build_object(
            'to', NULL,
            'event', jsonb_build_object(
                'type', 'presence',
                'user_id', p_user,
                'online', coalesce((p_req->>'online')::boolean, false),
                'last_seen', coalesce(p_req->'last_seen', 'null')))))
$$;

-- A connection's default watch set: {"ok": {"user_ids": [...]}}, the
-- partners of p_user's direct conversations, most recently active first,
-- at most 200 (the bound of presence.subscribe), none blocked either way.
-- Reads p_user's memberships (members_user_idx), never a group's members.
-- (plpgsql: its plan is kept for the session; a SQL function like this
-- one is planned again at every call, which cost 0.6 ms a connect)
CREATE OR REPLACE FUNCTION chat.presence_partners(p_user text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
BEGIN
    RETURN (
        SELECT chat.ok(jsonb_build_object('user_ids',
                   coalesce(jsonb_agg(p.user_id
                                      ORDER BY p.last_activity DESC,
                                               p.user_id),
                            '[]'::jsonb)))
        FROM (SELECT other.user_id, c.last_activity
              FROM chat.members mine
              JOIN chat.conversations c
                ON c.id = mine.conversation_id AND c.kind = 'direct'
              JOIN chat.members other
                ON other.conversation_id = c.id AND other.user_id <> p_user
              WHERE mine.user_id = p_user
                AND NOT chat.is_blocked(p_user, other.user_id)
              ORDER BY c.last_activity DESC, other.user_id
              LIMIT 200) p);
END
$$;

-- A WebSocket session's first call, in one round trip: the user's name and
-- avatar from the token stored (chat.api_user_upsert; a refused name only
-- leaves it unknown, as before), then the default watch set
-- (chat.presence_partners).
CREATE OR REPLACE FUNCTION chat.api_session_hello(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
BEGIN
    PERFORM chat.api_user_upsert(p_user, p_req);
    RETURN chat.presence_partners(p_user);
END
$$;

-- presence.count: {"conversation_id"} -> {"members": n, "user_ids": [...]},
-- the number of members of a conversation p_user is in and those of them
-- p_user may know the presence of (none blocked either way, as for
-- presence.query); the module counts who of those is online.
CREATE OR REPLACE FUNCTION chat.api_presence_members(p_user text,
                                                     p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_cid  bigint;
    v_err  jsonb;
BEGIN
    SELECT o_cid, o_err INTO v_cid, v_err
    FROM chat.check_member_request(p_user, p_req);
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    RETURN chat.ok(jsonb_build_object(
        'conversation_id', v_cid,
        'members', (SELECT count(*) FROM chat.members
                    WHERE conversation_id = v_cid),
        'user_ids', (SELECT coalesce(jsonb_agg(m.user_id), '[]'::jsonb)
                     FROM chat.members m
                     WHERE m.conversation_id = v_cid
                       AND m.user_id <> ALL (coalesce(
                           (SELECT chat.block_peers(p_user)), '{}')))));
END
$$;

-- sync: {"conversations"?: {"45": 17, ...}, "limit"?, "max_bytes"?}
--   -> {"complete", "cursors": {"45": 20, ...}}, events for p_user only
-- For every conversation of p_user (in id order; omitted ones from 0; ids
-- p_user is not in are ignored), the changes after the cursor in
-- updated_seq order, at most "limit" per conversation and 1000 in all,
-- and no more once the events' JSON passes max_bytes (chat.max_bytes; the
-- first change always comes, so every call makes progress): each message
-- replays as its last change: message.deleted once deleted (even one
-- created after the cursor), else message.created for seq > cursor (the
-- message as it is now), else message.updated.  Messages of users blocked
-- either way are left out.  complete is false when
-- anything was left out; cursors then say where to go on.
CREATE OR REPLACE FUNCTION chat.api_sync(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
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
    v_peers     text[] := chat.block_peers(p_user);
    v_max       bigint := chat.max_bytes(p_req -> 'max_bytes');
    v_used      bigint := 0;
    v_ev        jsonb;
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

    IF v_max IS NULL THEN
        RETURN chat.bad(p_req, 'max_bytes', 'an integer from 1024 to 67108864');
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
                       AND sender_id <> ALL (v_peers)
                     ORDER BY updated_seq
                     LIMIT v_take + 1
        LOOP
            IF v_n >= v_take THEN
                v_complete := false;
                EXIT;
            END IF;
            v_ev := jsonb_build_object(
                'type', CASE WHEN v_msg.deleted_at IS NOT NULL
                                 THEN 'message.deleted'
                             WHEN v_msg.seq > v_from
                                 THEN 'message.created'
                             ELSE 'message.updated' END,
                'message', chat.message_obj(v_msg));
            v_used := v_used + octet_length(v_ev::text);
            IF v_used > v_max AND array_length(v_events, 1) > 0 THEN
                -- the bytes are spent: the rest waits for the next call
                v_complete := false;
                v_budget := v_n;
                EXIT;
            END IF;
            v_events := array_append(v_events, jsonb_build_object(
                'to', v_to, 'event', v_ev));
            v_cur := v_msg.updated_seq;
            v_n := v_n + 1;
        END LOOP;
        v_budget := v_budget - v_n;
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

-- changes: {"conversation_id", "after", ...}: the same read as sync for one
-- conversation, routed to its members.  Kept for the module of API 3 for
-- one release (docs/upgrading.md); this module no longer calls it.
CREATE OR REPLACE FUNCTION chat.api_changes(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
    SELECT chat.api_cluster_changes(p_user, jsonb_build_object('ranges',
               jsonb_build_array(jsonb_build_array(
                   p_req -> 'conversation_id', p_req -> 'after',
                   p_req -> 'before'))))
$$;

-- presence.query and presence.subscribe (and the check of a watch set
-- after a member left): {"user_ids": [...]} -> {"audience": {"bob": true,
-- "zed": false, ...}}: true for the ids whose presence p_user may know:
-- p_user, the users p_user shares a conversation with and those who have
-- p_user among their contacts, none blocked either way.  The module answers the others as
-- unknown (null), never as offline.
CREATE OR REPLACE FUNCTION chat.api_presence_audience(p_user text,
                                                      p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_err    jsonb := chat.check_request(p_user, p_req);
    v_peers  text[];
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    IF jsonb_typeof(p_req -> 'user_ids') IS DISTINCT FROM 'array'
       OR jsonb_array_length(p_req -> 'user_ids') > 200
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(p_req -> 'user_ids') e
                  WHERE chat.json_user(e) IS NULL)
    THEN
        RETURN chat.err('bad_request', 'user_ids must be an array of at '
                                       'most 200 user ids');
    END IF;
    v_peers := chat.block_peers(p_user);
    RETURN chat.ok(jsonb_build_object('audience', coalesce((
        SELECT jsonb_object_agg(u.id,
                   u.id = p_user
                   OR (u.id <> ALL (v_peers)
                       -- a contact counts when u listed p_user: adding
                       -- someone as a contact must not be a way to watch
                       -- them
                       AND (EXISTS (SELECT 1 FROM chat.contacts k
                                    WHERE k.owner_id = u.id
                                      AND k.contact_id = p_user)
                            OR EXISTS (SELECT 1 FROM chat.members mine
                                       JOIN chat.members other
                                         ON other.conversation_id
                                            = mine.conversation_id
                                       WHERE mine.user_id = p_user
                                         AND other.user_id = u.id))))
        FROM jsonb_array_elements_text(p_req -> 'user_ids') u(id)),
        '{}'::jsonb)));
END
$$;
