-- sql/api/20_conversations.sql
-- Conversations and their members: create, get, list, update, add and remove
-- members, mute and archive; the user directory from token claims.
--
-- Part of the current API: every file of sql/api/ is applied whole, in one
-- transaction, by sql/migrate.sh on every deploy (never edit a function
-- elsewhere).  Entry points are SECURITY DEFINER with a pinned search_path
-- and are granted in 99_privileges.sql; everything else runs only inside
-- them.

-- user.upsert: {"name"?, "avatar"?} -> {}
-- Called by the module at connect with the token's claims.  A missing or
-- empty name is the id; a missing avatar clears it.  No write when nothing
-- changed.
CREATE OR REPLACE FUNCTION chat.api_user_upsert(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
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

-- conversation.create
CREATE OR REPLACE FUNCTION chat.api_conversation_create(p_user text,
                                                        p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_err      jsonb := chat.check_request(p_user, p_req);
    v_kind     text;
    v_ref      text;
    v_meta     jsonb;
    v_title    text;
    v_members  jsonb;
    v_list     text[];
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
        SELECT array_agg(DISTINCT e) INTO v_list
        FROM jsonb_array_elements_text(v_members) e
        WHERE e <> p_user;
        v_list := coalesce(v_list, '{}');
        IF cardinality(v_list) + 1 > chat.limit_of('max_group_members', 10000)
        THEN
            RETURN chat.err('limit', 'a group has at most '
                || chat.limit_of('max_group_members', 10000) || ' members');
        END IF;
        -- nobody is put into a group by a user they blocked, or whom they
        -- blocked
        IF EXISTS (SELECT 1 FROM unnest(v_list) e
                   WHERE chat.is_blocked(p_user, e))
        THEN
            RETURN chat.err('forbidden', 'blocked');
        END IF;
        FOREACH v_other IN ARRAY v_list LOOP
            v_err := chat.check_join(NULL, v_other, p_user, 1);
            IF v_err IS NOT NULL THEN
                RETURN v_err;
            END IF;
        END LOOP;

        INSERT INTO chat.conversations (kind, title, ref, metadata,
                                        created_by)
        VALUES ('group', v_title, v_ref, v_meta, p_user)
        RETURNING id INTO v_cid;

        INSERT INTO chat.members (conversation_id, user_id, role)
        VALUES (v_cid, p_user, 'owner');
        INSERT INTO chat.members (conversation_id, user_id, role)
        SELECT v_cid, e, 'member' FROM unnest(v_list) e;
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

-- conversation.get: {"conversation_id"} -> {"conversation": C}
-- (for REST GET conversations/{id})
CREATE OR REPLACE FUNCTION chat.api_conversation_get(p_user text,
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
        'conversation', chat.conversation_obj(v_cid, p_user)));
END
$$;

-- conversation.members: {"conversation_id", "after"?, "limit"?}
--   -> {"members": [member], "next": cursor | null}
-- The members in their order (as in the Conversation object: joining
-- order, owners first among those who joined together, then the id in
-- byte order), limit of them (1 to 200, default 100) after the cursor.
-- Members only (not_found otherwise).  The cursor is
-- "<joined_at in epoch microseconds>:<role rank>:<user id>" of the page's
-- last entry, opaque to clients: a page starts after that place in the
-- order (keyset, members_order_idx), so members who join or leave meanwhile
-- shift nobody else.  The read marks of users blocked either way are 0,
-- as in the Conversation object.
CREATE OR REPLACE FUNCTION chat.api_conversation_members(p_user text,
                                                         p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_cid    bigint;
    v_err    jsonb;
    v_limit  bigint := 100;
    v_parts  text[];
    -- the place after which the page starts: before everyone by default
    v_at     timestamptz := '-infinity';
    v_rank   int := 0;
    v_uid    text := '';
    v_peers  text[] := coalesce(chat.block_peers(p_user), '{}');
    v_row    chat.members;
    v_out    jsonb[] := '{}';
    v_n      bigint := 0;
    v_next   text;
BEGIN
    SELECT o_cid, o_err INTO v_cid, v_err
    FROM chat.check_member_request(p_user, p_req);
    IF v_cid IS NULL THEN
        RETURN v_err;
    END IF;

    IF coalesce(jsonb_typeof(p_req -> 'limit'), 'null') <> 'null' THEN
        v_limit := chat.json_int(p_req -> 'limit');
        IF v_limit IS NULL OR v_limit NOT BETWEEN 1 AND 200 THEN
            RETURN chat.bad(p_req, 'limit', 'an integer from 1 to 200');
        END IF;
    END IF;

    IF coalesce(jsonb_typeof(p_req -> 'after'), 'null') <> 'null' THEN
        IF jsonb_typeof(p_req -> 'after') = 'string' THEN
            v_parts := regexp_match(p_req ->> 'after',
                                    '^(-?[0-9]{1,16}):([1-3]):(.+)$');
        END IF;
        IF v_parts IS NULL OR NOT chat.valid_user_id(v_parts[3]) THEN
            RETURN chat.err('bad_request', 'after is not a valid cursor');
        END IF;
        v_at := timestamptz '1970-01-01 00:00:00+00'
                + v_parts[1]::bigint * interval '1 microsecond';
        v_rank := v_parts[2]::int;
        v_uid := v_parts[3];
    END IF;

    -- not a member: not_found, once the arguments are known to be good
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;

    -- one more than the page: whether a next page exists
    FOR v_row IN
        SELECT mb.* FROM chat.members mb
        WHERE mb.conversation_id = v_cid
          AND (mb.joined_at,
               array_position(ARRAY['owner', 'admin', 'member'], mb.role),
               mb.user_id COLLATE "C")
              > (v_at, v_rank, v_uid)
        ORDER BY mb.joined_at,
                 array_position(ARRAY['owner', 'admin', 'member'], mb.role),
                 mb.user_id COLLATE "C"
        LIMIT v_limit + 1
    LOOP
        IF v_n = v_limit THEN
            v_next := (extract(epoch FROM v_at) * 1000000)::bigint
                      || ':' || v_rank || ':' || v_uid;
            EXIT;
        END IF;
        v_out := array_append(v_out, chat.member_obj(v_row, v_peers));
        v_n := v_n + 1;
        v_at := v_row.joined_at;
        v_rank := array_position(ARRAY['owner', 'admin', 'member'],
                                 v_row.role);
        v_uid := v_row.user_id;
    END LOOP;

    RETURN chat.ok(jsonb_build_object('members', to_jsonb(v_out),
                                      'next', v_next));
END
$$;

-- conversation.list: {"limit"?, "before"?, "archived"?, "max_bytes"?}
--   -> {"conversations": [C], "next": cursor | null}
-- Newest activity first (last_activity desc, id desc).  The cursor is
-- "<last_activity in epoch microseconds>:<id>" of the page's last entry;
-- clients treat it as opaque.  A page also ends early, with a cursor,
-- once its JSON passes max_bytes (chat.max_bytes); each C lists at most
-- 100 members (and the caller), members_count counts them all.
CREATE OR REPLACE FUNCTION chat.api_conversation_list(p_user text,
                                                      p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
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
    v_max       bigint := chat.max_bytes(p_req -> 'max_bytes');
    v_used      bigint := 0;
    v_conv      jsonb;
    v_convs     jsonb[] := '{}';
    v_take      int := 0;
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

    IF v_max IS NULL THEN
        RETURN chat.bad(p_req, 'max_bytes', 'an integer from 1024 to 67108864');
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

    -- the page: up to limit entries, and fewer once the bytes are spent
    WHILE v_take < least(v_n, v_limit) LOOP
        v_conv := chat.conversation_obj_capped(v_ids[v_take + 1], p_user,
                                               100);
        v_used := v_used + octet_length(v_conv::text);
        EXIT WHEN v_take > 0 AND v_used > v_max;
        v_convs := array_append(v_convs, v_conv);
        v_take := v_take + 1;
    END LOOP;

    IF v_n > v_take THEN
        v_next := (extract(epoch FROM v_acts[v_take]) * 1000000)::bigint
                  || ':' || v_ids[v_take];
    END IF;

    RETURN chat.ok(jsonb_build_object(
        'conversations', to_jsonb(v_convs),
        'next', v_next));
END
$$;

-- conversation.update: {"conversation_id", "title"?, "metadata"?}
-- -> {"conversation": C}; the members hear conversation.updated.
CREATE OR REPLACE FUNCTION chat.api_conversation_update(p_user text,
                                                        p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
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

-- member.add: {"conversation_id", "user_id", "role"?: "member" | "admin" |
-- "owner"} -> {"conversation": C}.  A new member: member.joined to the
-- members (the new one too).  An existing member with another role: a role
-- change (owners only), conversation.updated to the members.
CREATE OR REPLACE FUNCTION chat.api_member_add(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
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
        -- nobody is put into a group by a user they blocked, or whom they
        -- blocked
        IF chat.is_blocked(p_user, v_target) THEN
            RETURN chat.err('forbidden', 'blocked');
        END IF;
        v_err := chat.check_join(v_cid, v_target, p_user, 1);
        IF v_err IS NOT NULL THEN
            RETURN v_err;
        END IF;
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

-- member.remove: {"conversation_id", "user_id"} -> {}.  One's own: leaving
-- (not the last owner while others stay).  Another's: owners remove
-- anyone, admins remove members.  member.left to the members and the user.
CREATE OR REPLACE FUNCTION chat.api_member_remove(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
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

-- member.flag: {"conversation_id", "flag": "archived" | "muted",
-- "value": bool} -> {"conversation": C}.  The user's own view of a
-- conversation; the user's other connections hear conversation.updated.
CREATE OR REPLACE FUNCTION chat.api_member_flag(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
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
