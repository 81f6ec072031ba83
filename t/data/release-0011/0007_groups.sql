-- 0007_groups: group administration: rename and metadata, add members,
-- change roles, remove members, leave.  Owners and admins manage a group;
-- only an owner grants admin or owner; a group always keeps an owner while
-- it has other members.  Direct conversations have fixed members.
-- Safe to re-run.
--
--   psql -v ON_ERROR_STOP=1 -d app -f sql/0007_groups.sql

BEGIN;

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

CREATE OR REPLACE FUNCTION chat.updated_event(p_cid bigint, p_user text)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT jsonb_build_object(
        'to', chat.member_ids(p_cid),
        'event', jsonb_build_object(
            'type', 'conversation.updated',
            'conversation', chat.conversation_obj(p_cid, p_user)))
$$;

-- ------------------------------------------------------------------------
-- conversation.update: {"conversation_id", "title"?, "metadata"?}
-- -> {"conversation": C}; the members hear conversation.updated.

CREATE OR REPLACE FUNCTION chat.api_conversation_update(p_user text,
                                                        p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    v_err    jsonb := chat.check_request(p_user, p_req);
    v_cid    bigint;
    v_kind   text;
    v_role   text;
    v_title  text;
    v_meta   jsonb;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    v_cid := chat.json_id(p_req -> 'conversation_id');
    IF v_cid IS NULL THEN
        RETURN chat.bad(p_req, 'conversation_id', 'a positive integer');
    END IF;
    IF coalesce(jsonb_typeof(p_req -> 'title'), 'null') <> 'null' THEN
        IF jsonb_typeof(p_req -> 'title') <> 'string'
           OR p_req ->> 'title' = ''
        THEN
            RETURN chat.bad(p_req, 'title', 'a non-empty string');
        END IF;
        v_title := p_req ->> 'title';
        IF char_length(v_title) > 200 THEN
            RETURN chat.err('too_large',
                            'title is longer than 200 characters');
        END IF;
    END IF;
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
    IF v_title IS NULL AND v_meta IS NULL THEN
        RETURN chat.err('bad_request', 'nothing to change: title, metadata');
    END IF;

    SELECT o_kind, o_role INTO v_kind, v_role
    FROM chat.group_role(p_user, v_cid);
    IF v_role IS NULL THEN
        RETURN chat.err('not_found', 'conversation not found');
    END IF;
    IF v_kind <> 'group' THEN
        RETURN chat.err('bad_request', 'not a group');
    END IF;
    IF v_role NOT IN ('owner', 'admin') THEN
        RETURN chat.err('forbidden', 'only an owner or admin may do this');
    END IF;

    UPDATE chat.conversations
    SET title = coalesce(v_title, title), metadata = coalesce(v_meta, metadata)
    WHERE id = v_cid;

    RETURN chat.ok(
        jsonb_build_object('conversation',
                           chat.conversation_obj(v_cid, p_user)),
        jsonb_build_array(chat.updated_event(v_cid, p_user)));
END
$$;

-- ------------------------------------------------------------------------
-- member.add: {"conversation_id", "user_id", "role"?: "member" | "admin" |
-- "owner"} -> {"conversation": C}.  A new member: member.joined to the
-- members (the new one too).  An existing member with another role: a role
-- change (owners only), conversation.updated to the members.

CREATE OR REPLACE FUNCTION chat.api_member_add(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    v_err     jsonb := chat.check_request(p_user, p_req);
    v_cid     bigint;
    v_kind    text;
    v_role    text;
    v_target  text;
    v_new     text;
    v_old     text;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    v_cid := chat.json_id(p_req -> 'conversation_id');
    IF v_cid IS NULL THEN
        RETURN chat.bad(p_req, 'conversation_id', 'a positive integer');
    END IF;
    v_target := chat.json_user(p_req -> 'user_id');
    IF v_target IS NULL THEN
        RETURN chat.bad(p_req, 'user_id', 'a user id');
    END IF;
    v_new := coalesce(p_req ->> 'role', 'member');
    IF coalesce(jsonb_typeof(p_req -> 'role'), 'string') <> 'string'
       OR v_new NOT IN ('member', 'admin', 'owner')
    THEN
        RETURN chat.err('bad_request',
                        'role must be "member", "admin" or "owner"');
    END IF;

    SELECT o_kind, o_role INTO v_kind, v_role
    FROM chat.group_role(p_user, v_cid);
    IF v_role IS NULL THEN
        RETURN chat.err('not_found', 'conversation not found');
    END IF;
    IF v_kind <> 'group' THEN
        RETURN chat.err('bad_request', 'not a group');
    END IF;
    IF v_role NOT IN ('owner', 'admin') THEN
        RETURN chat.err('forbidden', 'only an owner or admin may do this');
    END IF;
    IF v_new <> 'member' AND v_role <> 'owner' THEN
        RETURN chat.err('forbidden', 'only an owner may grant this role');
    END IF;

    SELECT role INTO v_old FROM chat.members
    WHERE conversation_id = v_cid AND user_id = v_target;

    IF v_old IS NULL THEN
        INSERT INTO chat.members (conversation_id, user_id, role)
        VALUES (v_cid, v_target, v_new);
        RETURN chat.ok(
            jsonb_build_object('conversation',
                               chat.conversation_obj(v_cid, p_user)),
            jsonb_build_array(
                chat.member_event(v_cid, 'member.joined', v_target, v_new)));
    END IF;

    IF v_old = v_new THEN
        RETURN chat.ok(jsonb_build_object(
            'conversation', chat.conversation_obj(v_cid, p_user)));
    END IF;

    IF v_role <> 'owner' THEN
        RETURN chat.err('forbidden', 'only an owner may change a role');
    END IF;
    IF v_old = 'owner'
       AND NOT EXISTS (SELECT 1 FROM chat.members
                       WHERE conversation_id = v_cid AND role = 'owner'
                         AND user_id <> v_target)
    THEN
        RETURN chat.err('conflict', 'a group needs an owner: make another '
                                    'member owner first');
    END IF;

    UPDATE chat.members SET role = v_new
    WHERE conversation_id = v_cid AND user_id = v_target;

    RETURN chat.ok(
        jsonb_build_object('conversation',
                           chat.conversation_obj(v_cid, p_user)),
        jsonb_build_array(chat.updated_event(v_cid, p_user)));
END
$$;

-- ------------------------------------------------------------------------
-- member.remove: {"conversation_id", "user_id"} -> {}.  One's own: leaving
-- (not the last owner while others stay).  Another's: owners remove
-- anyone, admins remove members.  member.left to the members and the user.

CREATE OR REPLACE FUNCTION chat.api_member_remove(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    v_err     jsonb := chat.check_request(p_user, p_req);
    v_cid     bigint;
    v_kind    text;
    v_role    text;
    v_target  text;
    v_old     text;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    v_cid := chat.json_id(p_req -> 'conversation_id');
    IF v_cid IS NULL THEN
        RETURN chat.bad(p_req, 'conversation_id', 'a positive integer');
    END IF;
    v_target := chat.json_user(p_req -> 'user_id');
    IF v_target IS NULL THEN
        RETURN chat.bad(p_req, 'user_id', 'a user id');
    END IF;

    SELECT o_kind, o_role INTO v_kind, v_role
    FROM chat.group_role(p_user, v_cid);
    IF v_role IS NULL THEN
        RETURN chat.err('not_found', 'conversation not found');
    END IF;
    IF v_kind <> 'group' THEN
        RETURN chat.err('bad_request', 'not a group');
    END IF;

    SELECT role INTO v_old FROM chat.members
    WHERE conversation_id = v_cid AND user_id = v_target;
    IF v_old IS NULL THEN
        RETURN chat.err('not_found', 'member not found');
    END IF;

    IF v_target <> p_user THEN
        IF v_role NOT IN ('owner', 'admin') THEN
            RETURN chat.err('forbidden',
                            'only an owner or admin may do this');
        END IF;
        IF v_role = 'admin' AND v_old <> 'member' THEN
            RETURN chat.err('forbidden',
                            'only an owner may remove an owner or admin');
        END IF;
    ELSIF v_old = 'owner'
          AND NOT EXISTS (SELECT 1 FROM chat.members
                          WHERE conversation_id = v_cid AND role = 'owner'
                            AND user_id <> p_user)
          AND EXISTS (SELECT 1 FROM chat.members
                      WHERE conversation_id = v_cid AND user_id <> p_user)
    THEN
        RETURN chat.err('conflict', 'a group needs an owner: make another '
                                    'member owner first');
    END IF;

    DELETE FROM chat.members
    WHERE conversation_id = v_cid AND user_id = v_target;

    RETURN chat.ok('{}', jsonb_build_array(
        chat.member_event(v_cid, 'member.left', v_target, v_old)));
END
$$;

INSERT INTO chat.schema_migrations (version, name)
VALUES (7, '0007_groups')
ON CONFLICT DO NOTHING;

COMMIT;
