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

-- the outbox reader leaves out what its own node wrote: {"after", "node"}
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
               'events', coalesce(jsonb_agg(e.value ORDER BY o.id, e.ord)
                                  FILTER (WHERE e.value IS NOT NULL), '[]'),
               'more', count(DISTINCT o.id) = 500)
    INTO v_out
    FROM (SELECT id, events, origin FROM chat.outbox
          WHERE id > v_after ORDER BY id LIMIT 500) o
    LEFT JOIN LATERAL jsonb_array_elements(o.events)
               WITH ORDINALITY AS e(value, ord)
           ON v_node IS NULL OR o.origin IS DISTINCT FROM v_node;
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
