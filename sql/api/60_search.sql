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
-- "snippet": "... «word» ...", "snippet_parts": [{"text", "match"}]}],
-- "has_more": bool}.  Only the conversations p_user is a member of;
-- deleted messages, and messages of users blocked either way, are never
-- found.
--
-- Bounded work, whatever the query and however many messages match:
-- the GIN index finds the matches, only the newest
-- chat.search_candidates() of them are ranked (ts_rank recomputes each
-- tsvector), and every row checks the time budget (chat.search_budget_ms,
-- 500 ms by default), answered too_large "query too broad".  A
-- statement_timeout set in here would not do: PostgreSQL arms it only
-- when the client's statement starts.  A query with no word that is not
-- negated cannot use the index at all: bad_request.

-- how many of the newest matches are ranked: every page offset allows
CREATE OR REPLACE FUNCTION chat.search_candidates() RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$ SELECT 1000 $$;

-- the time a search may take, in ms: the custom setting
-- chat.search_budget_ms (ALTER ROLE chat_nginx SET ...), else 500
CREATE OR REPLACE FUNCTION chat.search_budget() RETURNS interval
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT make_interval(secs => CASE
        WHEN s ~ '^\d{1,6}$' AND s::int > 0 THEN s::int
        ELSE 500 END / 1000.0)
    FROM coalesce(current_setting('chat.search_budget_ms', true), '') s
$$;

-- called only once the budget is spent: ends the search's statement
CREATE OR REPLACE FUNCTION chat.search_too_broad() RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'program_limit_exceeded',
                          MESSAGE = 'chat: search over its time budget';
END
$$;

-- a ts_headline made with \x01 and \x02 around matches (a body's own are
-- made U+FFFD first) as parts, so that a body cannot fake a match
CREATE OR REPLACE FUNCTION chat.search_parts(p_headline text) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('text', x.t, 'match', x.m)
                              ORDER BY x.n, x.m DESC), '[]')
    FROM (SELECT p.n, false AS m,
                 CASE WHEN p.n = 1 THEN p.s
                      ELSE substr(p.s, strpos(p.s, chr(2)) + 1) END AS t
          FROM unnest(string_to_array(p_headline, chr(1)))
               WITH ORDINALITY AS p(s, n)
          UNION ALL
          SELECT p.n, true, split_part(p.s, chr(2), 1)
          FROM unnest(string_to_array(p_headline, chr(1)))
               WITH ORDINALITY AS p(s, n)
          WHERE p.n > 1) x
    WHERE x.t <> ''
$$;

-- the parts as the snippet string of API version 1: « and » mark
-- matches only (a body's own are shown as ‹ and ›)
CREATE OR REPLACE FUNCTION chat.search_snippet(p_parts jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT coalesce(string_agg(
               CASE WHEN (e ->> 'match')::boolean
                    THEN '«' || translate(e ->> 'text', '«»', '‹›') || '»'
                    ELSE translate(e ->> 'text', '«»', '‹›') END,
               '' ORDER BY n), '')
    FROM jsonb_array_elements(p_parts) WITH ORDINALITY AS a(e, n)
$$;

CREATE OR REPLACE FUNCTION chat.api_messages_search(p_user text,
                                                    p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_err       jsonb := chat.check_request(p_user, p_req);
    v_q         tsquery;
    v_index     tsquery;
    v_cid       bigint;
    v_limit     int;
    v_offset    bigint;
    v_rows      jsonb;
    v_deadline  timestamptz := clock_timestamp() + chat.search_budget();
    v_peers     text[] := chat.block_peers(p_user);
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

    -- what the index can answer: T when every word is negated
    IF querytree(v_q) = 'T' THEN
        RETURN chat.err('bad_request',
                        'q needs a word that is not negated');
    END IF;

    -- phrases as plain AND for the index, which then needs no recheck
    -- (a tsvector per row); the ranking below checks the phrase
    BEGIN
        v_index := regexp_replace(querytree(v_q), '<(-|\d+)>', '&',
                                  'g')::tsquery;
    EXCEPTION WHEN OTHERS THEN
        v_index := querytree(v_q)::tsquery;
    END;

    BEGIN
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'message', chat.message_obj(p.m),
                   'rank', round(p.rank::numeric, 6),
                   'snippet', chat.search_snippet(p.parts),
                   'snippet_parts', p.parts)
                   ORDER BY p.rank DESC, (p.m).id DESC), '[]')
        INTO v_rows
        FROM (SELECT f.m, f.rank,
                     chat.search_parts(ts_headline('simple',
                         translate((f.m).body, chr(1) || chr(2),
                                   chr(65533) || chr(65533)),
                         v_q,
                         'StartSel=' || chr(1) || ', StopSel=' || chr(2)
                         || ', MaxWords=24, MinWords=8, MaxFragments=2'))
                         AS parts
              FROM (SELECT c.m, ts_rank(c.v, v_q) AS rank
                    FROM (SELECT m, to_tsvector('simple', m.body) AS v
                          FROM chat.messages m
                          WHERE m.id IN (
                              -- ids only: sorting whole rows costs more
                              SELECT x.id
                              FROM chat.messages x
                              JOIN chat.members mb
                                ON mb.conversation_id = x.conversation_id
                               AND mb.user_id = p_user
                              WHERE to_tsvector('simple', x.body) @@ v_index
                                AND x.deleted_at IS NULL
                                AND x.sender_id <> ALL (v_peers)
                                AND (v_cid IS NULL
                                     OR x.conversation_id = v_cid)
                                AND (clock_timestamp() <= v_deadline
                                     OR chat.search_too_broad())
                              ORDER BY x.id DESC
                              LIMIT chat.search_candidates())
                          -- not pulled up: one tsvector per row
                          OFFSET 0) c
                    WHERE c.v @@ v_q
                      AND (clock_timestamp() <= v_deadline
                           OR chat.search_too_broad())
                    ORDER BY rank DESC, (c.m).id DESC
                    LIMIT v_limit + 1 OFFSET v_offset) f
              -- a headline per row reads the whole body again
              WHERE clock_timestamp() <= v_deadline
                 OR chat.search_too_broad()) p;
    EXCEPTION WHEN program_limit_exceeded THEN
        RETURN chat.err('too_large',
                        'query too broad: narrow it down (more words, '
                        'conversation_id)');
    END;

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
