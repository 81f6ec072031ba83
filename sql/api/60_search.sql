-- sql/api/60_search.sql
-- Search: messages (full text) and users (prefix, trigram).
--
-- Part of the current API: every file of sql/api/ is applied whole, in one
-- transaction, by sql/migrate.sh on every deploy (never edit a function
-- elsewhere).  Entry points are SECURITY DEFINER with a pinned search_path
-- and are granted in 99_privileges.sql; everything else runs only inside
-- them.

-- messages.search: {"q", "conversation_id"?, "limit"? (<= 50, default 20),
-- "offset"? (<= 1000)} -> {"results": [{"message": M, "rank": r,
-- "snippet": "... «word» ..."}], "has_more": bool}.  Only the
-- conversations p_user is a member of; deleted messages are never found.
CREATE OR REPLACE FUNCTION chat.api_messages_search(p_user text,
                                                    p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_err     jsonb := chat.check_request(p_user, p_req);
    v_q       tsquery;
    v_cid     bigint;
    v_limit   int;
    v_offset  bigint;
    v_rows    jsonb;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    IF jsonb_typeof(p_req -> 'q') IS DISTINCT FROM 'string'
       OR btrim(p_req ->> 'q') = ''
    THEN
        RETURN chat.bad(p_req, 'q', 'a non-empty string');
    END IF;
    IF char_length(p_req ->> 'q') > 200 THEN
        RETURN chat.err('too_large', 'q is longer than 200 characters');
    END IF;
    IF coalesce(jsonb_typeof(p_req -> 'conversation_id'), 'null')
       <> 'null'
    THEN
        v_cid := chat.json_id(p_req -> 'conversation_id');
        IF v_cid IS NULL THEN
            RETURN chat.bad(p_req, 'conversation_id', 'a positive integer');
        END IF;
    END IF;
    v_limit := chat.limit_arg(p_req -> 'limit', 20, 50);
    IF v_limit IS NULL THEN
        RETURN chat.err('bad_request',
                        'limit must be an integer from 1 to 50');
    END IF;
    v_offset := coalesce(chat.json_int(p_req -> 'offset'), -1);
    IF coalesce(jsonb_typeof(p_req -> 'offset'), 'null') = 'null' THEN
        v_offset := 0;
    END IF;
    IF v_offset NOT BETWEEN 0 AND 1000 THEN
        RETURN chat.err('bad_request',
                        'offset must be an integer from 0 to 1000');
    END IF;

    v_q := websearch_to_tsquery('simple', p_req ->> 'q');
    IF numnode(v_q) = 0 THEN
        -- only stop characters: nothing can match
        RETURN chat.ok(jsonb_build_object('results', '[]'::jsonb,
                                          'has_more', false));
    END IF;

    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'message', chat.message_obj(f.m),
               'rank', round(f.rank::numeric, 6),
               'snippet', ts_headline('simple', (f.m).body, v_q,
                                      'StartSel=«, StopSel=», '
                                      'MaxWords=24, MinWords=8, '
                                      'MaxFragments=2'))
               ORDER BY f.rank DESC, (f.m).id DESC), '[]')
    INTO v_rows
    FROM (SELECT m, ts_rank(to_tsvector('simple', m.body), v_q) AS rank
          FROM chat.messages m
          JOIN chat.members mb
            ON mb.conversation_id = m.conversation_id
           AND mb.user_id = p_user
          WHERE to_tsvector('simple', m.body) @@ v_q
            AND m.deleted_at IS NULL
            AND (v_cid IS NULL OR m.conversation_id = v_cid)
          ORDER BY rank DESC, m.id DESC
          LIMIT v_limit + 1 OFFSET v_offset) f;

    RETURN chat.ok(jsonb_build_object(
        'results', CASE WHEN jsonb_array_length(v_rows) > v_limit
                        THEN v_rows - v_limit ELSE v_rows END,
        'has_more', jsonb_array_length(v_rows) > v_limit));
END
$$;

-- users.search: {"q", "limit"? (<= 50, default 20), "directory"?} ->
-- {"users": [User]}: users whose id or name starts with q, then those whose
-- name holds it, case-blind, by name; p_user and blocked users (either way)
-- left out.  Only people p_user can reach (contacts, those sharing a
-- conversation) and the user whose id is exactly q, unless the module says
-- "directory": "open" (chat_user_directory open): then everyone.
CREATE OR REPLACE FUNCTION chat.api_users_search(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_err    jsonb := chat.check_request(p_user, p_req);
    v_q      text;
    v_limit  int;
    v_open   boolean := p_req ->> 'directory' = 'open';
    v_exact  text;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    IF jsonb_typeof(p_req -> 'q') IS DISTINCT FROM 'string'
       OR btrim(p_req ->> 'q') = ''
    THEN
        RETURN chat.bad(p_req, 'q', 'a non-empty string');
    END IF;
    IF char_length(p_req ->> 'q') > 128 THEN
        RETURN chat.err('too_large', 'q is longer than 128 characters');
    END IF;
    v_limit := chat.limit_arg(p_req -> 'limit', 20, 50);
    IF v_limit IS NULL THEN
        RETURN chat.err('bad_request',
                        'limit must be an integer from 1 to 50');
    END IF;
    v_q := chat.like_escape(lower(btrim(p_req ->> 'q')));
    v_exact := btrim(p_req ->> 'q');

    RETURN chat.ok(jsonb_build_object('users', coalesce((
        SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                   'id', u.id, 'name', u.name, 'avatar', u.avatar))
               ORDER BY u.prefix DESC, lower(u.name), u.id)
        FROM (SELECT x.*, (lower(x.name) LIKE v_q || '%'
                           OR lower(x.id) LIKE v_q || '%') AS prefix
              FROM chat.users x
              WHERE (lower(x.name) LIKE v_q || '%'
                     OR lower(x.id) LIKE v_q || '%'
                     OR lower(x.name) LIKE '%' || v_q || '%')
                AND x.id <> p_user
                AND NOT chat.is_blocked(p_user, x.id)
                AND (v_open OR x.id = v_exact
                     OR EXISTS (SELECT 1 FROM chat.contacts k
                                WHERE k.owner_id = p_user
                                  AND k.contact_id = x.id)
                     OR EXISTS (SELECT 1 FROM chat.members mine
                                JOIN chat.members o
                                  ON o.conversation_id = mine.conversation_id
                                WHERE mine.user_id = p_user
                                  AND o.user_id = x.id))
              ORDER BY prefix DESC, lower(x.name), x.id
              LIMIT v_limit) u), '[]')));
END
$$;
