-- sql/api/50_people.sql
-- People: blocks, contacts, the unread total.
--
-- Part of the current API: every file of sql/api/ is applied whole, in one
-- transaction, by sql/migrate.sh on every deploy (never edit a function
-- elsewhere).  Entry points are SECURITY DEFINER with a pinned search_path
-- and are granted in 99_privileges.sql; everything else runs only inside
-- them.

-- block / unblock: {"user_id"} -> {}; a block also ends presence watching
-- between the two (an unblock does not restore it: the next subscribe may)
CREATE OR REPLACE FUNCTION chat.api_block(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
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
    IF NOT EXISTS (SELECT 1 FROM chat.blocks
                   WHERE blocker_id = p_user
                     AND blocked_id = p_req ->> 'user_id')
       AND (SELECT count(*) FROM chat.blocks WHERE blocker_id = p_user)
           >= chat.limit_of('max_blocks', 5000)
    THEN
        RETURN chat.err('limit', 'at most '
            || chat.limit_of('max_blocks', 5000) || ' users can be blocked');
    END IF;
    INSERT INTO chat.blocks (blocker_id, blocked_id)
    VALUES (p_user, p_req ->> 'user_id')
    ON CONFLICT DO NOTHING;
    -- for the module only (never sent to a client): the two stop
    -- watching each other's presence, on every worker and node
    RETURN chat.ok('{}', jsonb_build_array(jsonb_build_object(
        'to', jsonb_build_array(p_user, p_req ->> 'user_id'),
        'event', jsonb_build_object('type', 'presence.unwatch',
                                    'user_id', p_user,
                                    'peer', p_req ->> 'user_id'))));
END
$$;

CREATE OR REPLACE FUNCTION chat.api_unblock(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
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

-- blocks: {} -> {"blocks": [User]}, the users p_user blocked, newest first
CREATE OR REPLACE FUNCTION chat.api_blocks(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
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

-- contacts: {"after"?, "max_bytes"?} -> {"contacts": [{"user": User,
-- "explicit": bool, "shared": bool}], "next"?: cursor}: the users p_user
-- added, and those who share a conversation with p_user, but none blocked
-- either way; by name.  The answer stops once its JSON passes max_bytes
-- (chat.max_bytes) and then says where to go on: "next", the cursor of
-- its last contact ("<length of the id>:<id><lower-cased name>", as ids
-- and names may hold any ':'), for "after".
CREATE OR REPLACE FUNCTION chat.api_contacts(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_err    jsonb := chat.check_request(p_user, p_req);
    v_max    bigint := chat.max_bytes(p_req -> 'max_bytes');
    v_parts  text[];
    v_aid    text;
    v_akey   text;
    v_row    record;
    v_obj    jsonb;
    v_out    jsonb[] := '{}';
    v_used   bigint := 0;
    v_last   text;
    v_next   text;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    IF v_max IS NULL THEN
        RETURN chat.bad(p_req, 'max_bytes', 'an integer from 1024 to 67108864');
    END IF;
    IF coalesce(jsonb_typeof(p_req -> 'after'), 'null') <> 'null' THEN
        IF jsonb_typeof(p_req -> 'after') = 'string' THEN
            v_parts := regexp_match(p_req ->> 'after', '^([0-9]{1,3}):(.*)$');
        END IF;
        v_aid := left(v_parts[2], v_parts[1]::int);
        IF v_parts IS NULL OR char_length(v_aid) <> v_parts[1]::int
           OR NOT chat.valid_user_id(v_aid)
        THEN
            RETURN chat.err('bad_request', 'after is not a valid cursor');
        END IF;
        v_akey := substr(v_parts[2], v_parts[1]::int + 1);
    END IF;

    FOR v_row IN
        SELECT t.id, t.u, t.explicit, t.shared, lower(t.u ->> 'name') AS k
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
              GROUP BY c.id) t
        WHERE v_aid IS NULL
           OR (lower(t.u ->> 'name'), t.id) > (v_akey, v_aid)
        ORDER BY lower(t.u ->> 'name'), t.id
    LOOP
        v_obj := jsonb_build_object('user', v_row.u,
                                    'explicit', v_row.explicit,
                                    'shared', v_row.shared);
        v_used := v_used + octet_length(v_obj::text);
        IF v_used > v_max AND v_last IS NOT NULL THEN
            v_next := v_last;
            EXIT;
        END IF;
        v_out := array_append(v_out, v_obj);
        v_last := char_length(v_row.id) || ':' || v_row.id || v_row.k;
    END LOOP;

    RETURN chat.ok(jsonb_build_object('contacts', to_jsonb(v_out))
                   || CASE WHEN v_next IS NULL THEN '{}'::jsonb
                           ELSE jsonb_build_object('next', v_next) END);
END
$$;

-- contact.add / contact.remove: {"user_id"} -> {}
CREATE OR REPLACE FUNCTION chat.api_contact_add(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
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
    IF NOT EXISTS (SELECT 1 FROM chat.contacts
                   WHERE owner_id = p_user
                     AND contact_id = p_req ->> 'user_id')
       AND (SELECT count(*) FROM chat.contacts WHERE owner_id = p_user)
           >= chat.limit_of('max_contacts', 5000)
    THEN
        RETURN chat.err('limit', 'at most '
            || chat.limit_of('max_contacts', 5000) || ' contacts');
    END IF;
    INSERT INTO chat.contacts (owner_id, contact_id)
    VALUES (p_user, p_req ->> 'user_id')
    ON CONFLICT DO NOTHING;
    RETURN chat.ok('{}');
END
$$;

CREATE OR REPLACE FUNCTION chat.api_contact_remove(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
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
    IF NOT FOUND THEN
        RETURN chat.ok('{}');
    END IF;
    -- for the module only (never sent to a client): the former contact
    -- may have watched p_user through this row; its connections that do
    -- check their watch set again
    RETURN chat.ok('{}', jsonb_build_array(jsonb_build_object(
        'to', jsonb_build_array(p_req ->> 'user_id'),
        'event', jsonb_build_object('type', 'presence.recheck',
                                    'user_id', p_user))));
END
$$;

-- unread: {} -> {"total": n, "conversations": {"45": n, ...}}
-- Every conversation of the user with unread messages; the total leaves
-- out muted and archived ones (what a badge shows).
CREATE OR REPLACE FUNCTION chat.api_unread(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
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
