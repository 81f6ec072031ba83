-- 0006_people: unread totals, the blocked list, archive and mute, and
-- contacts, for the REST routes (docs/protocol.md, "REST routes").
-- Safe to re-run.
--
--   psql -v ON_ERROR_STOP=1 -d app -f sql/0006_people.sql

BEGIN;

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

-- ------------------------------------------------------------------------
-- unread: {} -> {"total": n, "conversations": {"45": n, ...}}
-- Every conversation of the user with unread messages; the total leaves
-- out muted and archived ones (what a badge shows).

CREATE OR REPLACE FUNCTION chat.api_unread(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
    v_err  jsonb := chat.check_request(p_user, p_req);
    v_out  jsonb;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    SELECT jsonb_build_object(
               'total', coalesce(sum(n) FILTER (WHERE NOT muted
                                                  AND NOT archived), 0),
               'conversations', coalesce(jsonb_object_agg(cid::text, n)
                                         FILTER (WHERE n > 0), '{}'))
    INTO v_out
    FROM (SELECT mb.conversation_id AS cid, mb.muted, mb.archived,
                 chat.unread_count(mb.conversation_id, p_user,
                                   mb.last_read_seq) AS n
          FROM chat.members mb
          WHERE mb.user_id = p_user) t;
    RETURN chat.ok(v_out);
END
$$;

-- ------------------------------------------------------------------------
-- blocks: {} -> {"blocks": [User]}, the users p_user blocked, newest first

CREATE OR REPLACE FUNCTION chat.api_blocks(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
    v_err  jsonb := chat.check_request(p_user, p_req);
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    RETURN chat.ok(jsonb_build_object('blocks', coalesce(
        (SELECT jsonb_agg(chat.user_obj(b.blocked_id)
                          ORDER BY b.created_at DESC, b.blocked_id)
         FROM chat.blocks b WHERE b.blocker_id = p_user),
        '[]')));
END
$$;

-- ------------------------------------------------------------------------
-- member.flag: {"conversation_id", "flag": "archived" | "muted",
-- "value": bool} -> {"conversation": C}.  The user's own view of a
-- conversation; the user's other connections hear conversation.updated.

CREATE OR REPLACE FUNCTION chat.api_member_flag(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    v_err   jsonb := chat.check_request(p_user, p_req);
    v_cid   bigint;
    v_flag  text;
    v_on    boolean;
    v_obj   jsonb;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    v_cid := chat.json_id(p_req -> 'conversation_id');
    IF v_cid IS NULL THEN
        RETURN chat.bad(p_req, 'conversation_id', 'a positive integer');
    END IF;
    v_flag := p_req ->> 'flag';
    IF jsonb_typeof(p_req -> 'flag') IS DISTINCT FROM 'string'
       OR v_flag NOT IN ('archived', 'muted')
    THEN
        RETURN chat.err('bad_request',
                        'flag must be "archived" or "muted"');
    END IF;
    IF jsonb_typeof(p_req -> 'value') IS DISTINCT FROM 'boolean' THEN
        RETURN chat.bad(p_req, 'value', 'a boolean');
    END IF;
    v_on := (p_req -> 'value')::boolean;

    UPDATE chat.members
    SET archived = CASE WHEN v_flag = 'archived' THEN v_on ELSE archived END,
        muted = CASE WHEN v_flag = 'muted' THEN v_on ELSE muted END
    WHERE conversation_id = v_cid AND user_id = p_user;
    IF NOT FOUND THEN
        RETURN chat.err('not_found', 'conversation not found');
    END IF;

    v_obj := chat.conversation_obj(v_cid, p_user);
    RETURN chat.ok(
        jsonb_build_object('conversation', v_obj),
        jsonb_build_array(jsonb_build_object(
            'to', jsonb_build_array(p_user),
            'event', jsonb_build_object('type', 'conversation.updated',
                                        'conversation', v_obj))));
END
$$;

-- ------------------------------------------------------------------------
-- contacts: {} -> {"contacts": [{"user": User, "explicit": bool,
-- "shared": bool}]}: the users p_user added, and those who share a
-- conversation with p_user, but none blocked either way; by name.

CREATE OR REPLACE FUNCTION chat.api_contacts(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
    v_err  jsonb := chat.check_request(p_user, p_req);
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    RETURN chat.ok(jsonb_build_object('contacts', coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'user', t.u, 'explicit', t.explicit, 'shared', t.shared)
               ORDER BY lower(t.u ->> 'name'), t.id)
        FROM (SELECT c.id, chat.user_obj(c.id) AS u,
                     bool_or(c.explicit) AS explicit,
                     bool_or(NOT c.explicit) AS shared
              FROM (SELECT k.contact_id AS id, true AS explicit
                    FROM chat.contacts k WHERE k.owner_id = p_user
                    UNION ALL
                    SELECT DISTINCT o.user_id, false
                    FROM chat.members me
                    JOIN chat.members o
                      ON o.conversation_id = me.conversation_id
                    WHERE me.user_id = p_user AND o.user_id <> p_user) c
              WHERE NOT chat.is_blocked(p_user, c.id)
              GROUP BY c.id) t), '[]')));
END
$$;

-- contact.add / contact.remove: {"user_id"} -> {}

CREATE OR REPLACE FUNCTION chat.api_contact_add(p_user text, p_req jsonb)
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
        RETURN chat.err('bad_request', 'cannot add yourself');
    END IF;
    INSERT INTO chat.contacts (owner_id, contact_id)
    VALUES (p_user, p_req ->> 'user_id')
    ON CONFLICT DO NOTHING;
    RETURN chat.ok('{}');
END
$$;

CREATE OR REPLACE FUNCTION chat.api_contact_remove(p_user text, p_req jsonb)
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
    DELETE FROM chat.contacts
    WHERE owner_id = p_user AND contact_id = p_req ->> 'user_id';
    RETURN chat.ok('{}');
END
$$;

INSERT INTO chat.schema_migrations (version, name)
VALUES (6, '0006_people')
ON CONFLICT DO NOTHING;

COMMIT;
