-- sql/api/70_host.sql
-- The host application's SQL API (called inside its own transactions,
-- delivered live through chat.outbox and NOTIFY chat_outbox), and the outbox
-- reader the module calls.
--
-- Part of the current API: every file of sql/api/ is applied whole, in one
-- transaction, by sql/migrate.sh on every deploy (never edit a function
-- elsewhere).  Entry points are SECURITY DEFINER with a pinned search_path
-- and are granted in 99_privileges.sql; everything else runs only inside
-- them.

-- An api_* result's events into the outbox, with a NOTIFY at commit; the
-- result itself is returned.  Raises the result's error, if any.
CREATE OR REPLACE FUNCTION chat.publish(p_result jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    v_id  bigint;
BEGIN
    IF p_result ? 'error' THEN
        RAISE EXCEPTION 'chat: %', p_result -> 'error' ->> 'message'
              USING ERRCODE = 'invalid_parameter_value',
                    DETAIL = (p_result -> 'error')::text;
    END IF;
    IF jsonb_array_length(coalesce(p_result -> 'events', '[]')) > 0 THEN
        INSERT INTO chat.outbox (events) VALUES (p_result -> 'events')
        RETURNING id INTO v_id;
        PERFORM pg_notify('chat_outbox', v_id::text);
    END IF;
    RETURN p_result;
END
$$;

-- The host application's API

-- A conversation: kind 'direct' (p_members: the other user) or 'group'
-- (p_creator is its owner).  Returns its id; a direct one that exists is
-- returned as it is.  p_creator acts: as for its own request, nobody is
-- put into it who blocked p_creator or whom p_creator blocked, and the
-- limits hold (raised as errors).
CREATE OR REPLACE FUNCTION chat.create_conversation(
    p_creator   text,
    p_kind      text,
    p_members   text[],
    p_title     text  DEFAULT NULL,
    p_ref       text  DEFAULT NULL,
    p_metadata  jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_req  jsonb;
BEGIN
    v_req := jsonb_strip_nulls(jsonb_build_object(
        'kind', p_kind, 'title', p_title, 'ref', p_ref,
        'metadata', p_metadata));
    IF p_kind = 'direct' THEN
        v_req := v_req || jsonb_build_object('user_id', p_members[1]);
    ELSE
        v_req := v_req || jsonb_build_object('members',
                                             to_jsonb(coalesce(p_members,
                                                               '{}')));
    END IF;
    RETURN (chat.publish(chat.api_conversation_create(p_creator, v_req))
            -> 'ok' -> 'conversation' ->> 'id')::bigint;
END
$$;

-- A member, or another role for one: the host decides, no rights or
-- blocks are checked (nobody acts), only the group's size.  member.joined
-- (or conversation.updated for a role change).
CREATE OR REPLACE FUNCTION chat.add_member(p_cid bigint, p_user text,
                                           p_role text DEFAULT 'member')
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_kind  text;
    v_old   text;
BEGIN
    SELECT kind INTO v_kind FROM chat.conversations
    WHERE id = p_cid FOR UPDATE;
    IF v_kind IS NULL THEN
        RAISE EXCEPTION 'chat: conversation % not found', p_cid
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_kind <> 'group' THEN
        RAISE EXCEPTION 'chat: conversation % is not a group', p_cid
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT chat.valid_user_id(p_user)
       OR p_role IS NULL OR p_role NOT IN ('member', 'admin', 'owner')
    THEN
        RAISE EXCEPTION 'chat: a user id and a role (member, admin, owner) '
                        'are needed'
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT role INTO v_old FROM chat.members
    WHERE conversation_id = p_cid AND user_id = p_user;
    IF v_old IS NULL THEN
        -- the size of a group is bounded for everyone (blocks and the
        -- hourly cap are about a user acting: there is none here)
        PERFORM chat.publish(chat.check_join(p_cid, NULL, NULL, 1));
        INSERT INTO chat.members (conversation_id, user_id, role)
        VALUES (p_cid, p_user, p_role);
        PERFORM chat.publish(chat.ok('{}', jsonb_build_array(
            chat.member_event(p_cid, 'member.joined', p_user, p_role))));
    ELSIF v_old <> p_role THEN
        UPDATE chat.members SET role = p_role
        WHERE conversation_id = p_cid AND user_id = p_user;
        PERFORM chat.publish(chat.ok('{}', jsonb_build_array(
            chat.updated_event(p_cid, p_user))));
    END IF;
END
$$;

-- A message from p_sender (a member), or with p_system a system message
-- from p_sender in any conversation.  Returns the message's id; the same
-- p_client_msg_id again returns the stored one and delivers nothing.
CREATE OR REPLACE FUNCTION chat.post_message(
    p_cid            bigint,
    p_sender         text,
    p_body           text,
    p_system         boolean DEFAULT false,
    p_client_msg_id  text    DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_req  jsonb;
    v_res  jsonb;
BEGIN
    v_req := jsonb_strip_nulls(jsonb_build_object(
        'conversation_id', p_cid, 'body', p_body,
        'client_msg_id', p_client_msg_id));
    IF p_system THEN
        v_res := chat.api_system_message(p_sender, v_req);
    ELSE
        IF p_client_msg_id IS NULL THEN
            v_req := v_req || jsonb_build_object(
                'client_msg_id', 'sql:' || gen_random_uuid()::text);
        END IF;
        v_res := chat.api_message_send(p_sender, v_req);
    END IF;
    RETURN (chat.publish(v_res) -> 'ok' -> 'message' ->> 'id')::bigint;
END
$$;

-- The host application's: a user's uploads are deleted (with the links
-- of their messages to them: those files are served no more), when the
-- user's data is erased.  The sweep then unlinks the files no other row
-- has.  Returns how many rows went.
CREATE OR REPLACE FUNCTION chat.delete_user_uploads(p_user text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_n  bigint;
BEGIN
    -- locked first, in id order, as a message delete locks its uploads
    -- before its links (R16H-4)
    PERFORM 1 FROM chat.uploads WHERE owner_id = p_user
    ORDER BY id
    FOR UPDATE;
    DELETE FROM chat.uploads WHERE owner_id = p_user;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;

-- An outbox entry {"to", "event"} as the SQL API makes them, rebuilt from
-- the tables, or NULL.  Whoever can write chat.outbox (the owner, a node
-- through api_cluster_outbox) must not be able to make clients believe
-- anything the tables do not say: only the API's event types; message
-- events are the stored message as it is now; members' events only when
-- the membership is so; receipts no further than the stored mark; fields
-- typed; recipients only the members (and, for member.left, the user who
-- left) or, for presence, the user's peers who are not blocked.
CREATE OR REPLACE FUNCTION chat.outbox_checked(p_ev jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
    v_ev    jsonb := p_ev -> 'event';
    v_type  text;
    v_cid   bigint;
    v_user  text;
    v_role  text;
    v_seq   bigint;
    v_msg   chat.messages;
    v_conv  jsonb;
    v_out   jsonb;
    v_to    jsonb;
BEGIN
    IF jsonb_typeof(v_ev) IS DISTINCT FROM 'object'
       OR jsonb_typeof(p_ev -> 'to') IS DISTINCT FROM 'array'
       OR jsonb_typeof(v_ev -> 'type') IS DISTINCT FROM 'string'
    THEN
        RETURN NULL;
    END IF;
    v_type := v_ev ->> 'type';
    v_user := chat.json_user(v_ev -> 'user_id');

    IF v_type IN ('message.created', 'message.updated', 'message.deleted')
    THEN
        SELECT * INTO v_msg FROM chat.messages m
        WHERE m.id = chat.json_id(v_ev -> 'message' -> 'id')
          AND m.conversation_id
              = chat.json_id(v_ev -> 'message' -> 'conversation_id');
        IF NOT FOUND
           OR (v_type = 'message.deleted') <> (v_msg.deleted_at IS NOT NULL)
        THEN
            RETURN NULL;
        END IF;
        v_cid := v_msg.conversation_id;
        v_out := jsonb_build_object('type', v_type,
                                    'message', chat.message_obj(v_msg));

    ELSIF v_type IN ('conversation.created', 'conversation.updated') THEN
        v_cid := chat.json_id(v_ev -> 'conversation' -> 'id');
        v_conv := chat.shared_conversation_obj(v_cid);
        IF v_conv IS NULL THEN
            RETURN NULL;
        END IF;
        IF v_type = 'conversation.created' THEN
            -- new: nothing read, muted or archived by anyone yet
            v_conv := v_conv || '{"unread_count": 0, "muted": false,
                                  "archived": false}'::jsonb;
        ELSIF jsonb_array_length(p_ev -> 'to') = 1
              AND v_ev -> 'conversation' ? 'unread_count'
        THEN
            -- made for one user (mute, archive: their other connections):
            -- that user's view, their own fields from the event, typed
            v_conv := chat.conversation_obj(v_cid, p_ev -> 'to' ->> 0)
                || jsonb_build_object(
                    'unread_count', greatest(coalesce(chat.json_int(
                        v_ev -> 'conversation' -> 'unread_count'), 0), 0),
                    'muted', coalesce(jsonb_typeof(
                        v_ev -> 'conversation' -> 'muted') = 'boolean'
                        AND (v_ev -> 'conversation' ->> 'muted')::boolean,
                        false),
                    'archived', coalesce(jsonb_typeof(
                        v_ev -> 'conversation' -> 'archived') = 'boolean'
                        AND (v_ev -> 'conversation' ->> 'archived')::boolean,
                        false));
        END IF;
        -- else the stored conversation as all its members may see it
        v_out := jsonb_build_object('type', v_type, 'conversation', v_conv);

    ELSIF v_type IN ('member.joined', 'member.left') THEN
        v_cid := chat.json_id(v_ev -> 'conversation_id');
        v_role := v_ev ->> 'role';
        IF v_user IS NULL OR v_role IS NULL
           OR v_role NOT IN ('owner', 'admin', 'member')
           OR NOT EXISTS (SELECT 1 FROM chat.conversations c
                          WHERE c.id = v_cid)
           OR EXISTS (SELECT 1 FROM chat.members mb
                      WHERE mb.conversation_id = v_cid
                        AND mb.user_id = v_user)
              <> (v_type = 'member.joined')
        THEN
            RETURN NULL;
        END IF;
        v_out := jsonb_build_object('type', v_type, 'conversation_id', v_cid,
                                    'user_id', v_user, 'role', v_role);

    ELSIF v_type = 'receipt' THEN
        v_cid := chat.json_id(v_ev -> 'conversation_id');
        v_seq := chat.json_int(v_ev -> 'seq');
        IF v_user IS NULL OR v_seq IS NULL OR v_seq < 0
           OR NOT EXISTS (
               SELECT 1 FROM chat.members mb
               WHERE mb.conversation_id = v_cid AND mb.user_id = v_user
                 AND v_seq <= CASE v_ev ->> 'kind'
                                  WHEN 'read' THEN mb.last_read_seq
                                  WHEN 'delivered'
                                  THEN mb.last_delivered_seq END)
        THEN
            RETURN NULL;
        END IF;
        v_out := jsonb_build_object('type', 'receipt',
                                    'conversation_id', v_cid,
                                    'user_id', v_user,
                                    'kind', v_ev ->> 'kind', 'seq', v_seq);

    ELSIF v_type = 'typing' THEN
        v_cid := chat.json_id(v_ev -> 'conversation_id');
        IF v_user IS NULL
           OR jsonb_typeof(v_ev -> 'active') IS DISTINCT FROM 'boolean'
           OR NOT EXISTS (SELECT 1 FROM chat.members mb
                          WHERE mb.conversation_id = v_cid
                            AND mb.user_id = v_user)
        THEN
            RETURN NULL;
        END IF;
        v_out := jsonb_build_object('type', 'typing',
                                    'conversation_id', v_cid,
                                    'user_id', v_user,
                                    'active', v_ev -> 'active');

    ELSIF v_type = 'presence' THEN
        IF v_user IS NULL
           OR jsonb_typeof(v_ev -> 'online') IS DISTINCT FROM 'boolean'
           OR NOT (jsonb_typeof(v_ev -> 'last_seen') = 'null'
                   OR (jsonb_typeof(v_ev -> 'last_seen') = 'string'
                       AND v_ev ->> 'last_seen' ~
                 '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$'))
        THEN
            RETURN NULL;
        END IF;
        v_out := jsonb_build_object('type', 'presence', 'user_id', v_user,
                                    'online', v_ev -> 'online',
                                    'last_seen', v_ev -> 'last_seen');
        SELECT coalesce(jsonb_agg(DISTINCT t ORDER BY t), '[]'::jsonb)
        INTO v_to
        FROM jsonb_array_elements(p_ev -> 'to') t
        WHERE jsonb_typeof(t) = 'string'
          AND t #>> '{}' <> v_user
          AND NOT chat.is_blocked(v_user, t #>> '{}')
          AND EXISTS (SELECT 1 FROM chat.members mine
                      JOIN chat.members other
                        ON other.conversation_id = mine.conversation_id
                      WHERE mine.user_id = v_user
                        AND other.user_id = t #>> '{}');
        RETURN CASE WHEN v_to <> '[]' THEN
                   jsonb_build_object('to', v_to, 'event', v_out) END;

    ELSE
        RETURN NULL;
    END IF;

    -- the members of the conversation, and the user who left
    SELECT coalesce(jsonb_agg(DISTINCT t ORDER BY t), '[]'::jsonb) INTO v_to
    FROM jsonb_array_elements(p_ev -> 'to') t
    WHERE jsonb_typeof(t) = 'string'
      AND (EXISTS (SELECT 1 FROM chat.members mb
                   WHERE mb.conversation_id = v_cid
                     AND mb.user_id = t #>> '{}')
           OR (v_type = 'member.left' AND t #>> '{}' = v_user))
      AND NOT (v_type = 'typing' AND t #>> '{}' = v_user);
    RETURN CASE WHEN v_to <> '[]' THEN
               jsonb_build_object('to', v_to, 'event', v_out) END;
END
$$;

-- the outbox reader leaves out what its own node wrote: {"after", "node"};
-- every entry is checked (chat.outbox_checked), and a row that is not a
-- list is skipped, never a reader stuck on it
CREATE OR REPLACE FUNCTION chat.api_outbox(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_after  bigint := coalesce(chat.json_int(p_req -> 'after'), -1);
    v_node   text   := p_req ->> 'node';
    v_out    jsonb;
BEGIN
    IF v_after < 0 THEN
        RETURN jsonb_build_object(
            'last', (SELECT coalesce(max(id), 0) FROM chat.outbox),
            'events', '[]'::jsonb, 'more', false);
    END IF;
    SELECT jsonb_build_object(
               'last', coalesce(max(o.id), v_after),
               'events', coalesce(jsonb_agg(c.value ORDER BY o.id, e.ord)
                                  FILTER (WHERE c.value IS NOT NULL), '[]'),
               'more', count(DISTINCT o.id) = 500)
    INTO v_out
    FROM (SELECT id, events, origin FROM chat.outbox
          WHERE id > v_after ORDER BY id LIMIT 500) o
    LEFT JOIN LATERAL jsonb_array_elements(
                  CASE WHEN jsonb_typeof(o.events) = 'array'
                       THEN o.events ELSE '[]'::jsonb END)
               WITH ORDINALITY AS e(value, ord)
           ON v_node IS NULL OR o.origin IS DISTINCT FROM v_node
    LEFT JOIN LATERAL (SELECT chat.outbox_checked(e.value) AS value) c
           ON true;
    RETURN v_out;
END
$$;

-- Rows older than ten minutes go (every worker calls it now and then).
CREATE OR REPLACE FUNCTION chat.api_outbox_trim(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM chat.outbox
        WHERE created_at < now() - interval '10 minutes'
        RETURNING 1)
    SELECT jsonb_build_object('ok', jsonb_build_object(
        'deleted', (SELECT count(*) FROM gone)), 'events', '[]'::jsonb)
$$;
