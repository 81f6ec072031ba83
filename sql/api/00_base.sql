-- sql/api/00_base.sql
-- Helpers every area uses: versions, JSON arguments, results and errors,
-- checks of request fields.
--
-- Part of the current API: every file of sql/api/ is applied whole, in one
-- transaction, by sql/migrate.sh on every deploy (never edit a function
-- elsewhere).  Entry points are SECURITY DEFINER with a pinned search_path
-- and are granted in 99_privileges.sql; everything else runs only inside
-- them.

-- The versions the module checks when it connects: the newest schema file
-- applied (sql/schema/, recorded by sql/migrate.sh) and this API's version,
-- raised whenever the module comes to need something new of it.
CREATE OR REPLACE FUNCTION chat.schema_version() RETURNS int
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
    SELECT coalesce(max(version), 0) FROM chat.schema_migrations
$$;

CREATE OR REPLACE FUNCTION chat.api_version() RETURNS int
LANGUAGE sql IMMUTABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
    SELECT 6
$$;

-- RFC 3339 UTC with milliseconds; NULL stays NULL.
CREATE OR REPLACE FUNCTION chat.fmt_time(p_t timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT to_char(p_t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

CREATE OR REPLACE FUNCTION chat.err(p_code text, p_message text)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT jsonb_build_object('error',
        jsonb_build_object('code', p_code, 'message', p_message))
$$;

CREATE OR REPLACE FUNCTION chat.ok(p_data jsonb, p_events jsonb DEFAULT '[]')
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT jsonb_build_object('ok', p_data,
                              'events', coalesce(p_events, '[]'::jsonb))
$$;

-- bad_request for field p_key of p_req: "<key> is missing" when absent or
-- JSON null, else "<key> must be <p_what>".
CREATE OR REPLACE FUNCTION chat.bad(p_req jsonb, p_key text, p_what text)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT chat.err('bad_request',
        CASE WHEN coalesce(jsonb_typeof(p_req -> p_key), 'null') = 'null'
             THEN p_key || ' is missing'
             ELSE p_key || ' must be ' || p_what END)
$$;

-- A JSON number with an integral value within bigint (1, 1.0 and 1e2 are
-- integers: PostgreSQL normalizes numbers, so notation cannot be seen) as
-- bigint; NULL for anything else.  Nested CASE: each cast runs only once
-- the previous branch has shown it cannot fail.
CREATE OR REPLACE FUNCTION chat.json_int(p jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT CASE
        WHEN p IS NULL OR jsonb_typeof(p) <> 'number' THEN NULL
        WHEN (p #>> '{}')::numeric
             NOT BETWEEN -9223372036854775808 AND 9223372036854775807
            THEN NULL
        WHEN (p #>> '{}')::numeric <> trunc((p #>> '{}')::numeric)
            THEN NULL
        ELSE (p #>> '{}')::numeric::bigint
    END
$$;

-- A positive JSON integer (an id) or NULL.
CREATE OR REPLACE FUNCTION chat.json_id(p jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT CASE WHEN chat.json_int(p) >= 1 THEN chat.json_int(p) END
$$;

-- A user id as the module accepts a JWT sub: 1..128 bytes, no control
-- characters.  Never NULL.
CREATE OR REPLACE FUNCTION chat.valid_user_id(p text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT coalesce(octet_length(p) BETWEEN 1 AND 128
                    AND p !~ '[[:cntrl:]]', false)
$$;

-- A request's user id field (e.g. p_req -> 'user_id') when it is a valid id,
-- else NULL (chat.bad then says whether it is missing or wrong).
CREATE OR REPLACE FUNCTION chat.json_user(p jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT CASE WHEN jsonb_typeof(p) = 'string'
                     AND chat.valid_user_id(p #>> '{}')
                THEN p #>> '{}' END
$$;

-- The unique key of the direct conversation of a pair: the two ids in
-- byte order, the first one length-prefixed, so that no two pairs share
-- a key whatever the ids contain ("5:alicebob").
CREATE OR REPLACE FUNCTION chat.direct_key(p_a text, p_b text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT CASE WHEN p_a COLLATE "C" <= p_b COLLATE "C"
                THEN octet_length(p_a)::text || ':' || p_a || p_b
                ELSE octet_length(p_b)::text || ':' || p_b || p_a END
$$;

-- A LIKE pattern that matches p literally.
CREATE OR REPLACE FUNCTION chat.like_escape(p text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
    SELECT replace(replace(replace(p, '\', '\\'), '%', '\%'), '_', '\_')
$$;

-- A "limit" argument: 1..p_max, p_default when absent; NULL when invalid.
CREATE OR REPLACE FUNCTION chat.limit_arg(p jsonb, p_default int, p_max int)
RETURNS int
LANGUAGE sql IMMUTABLE SECURITY INVOKER
AS $$
    SELECT CASE
        WHEN p IS NULL OR jsonb_typeof(p) = 'null' THEN p_default
        WHEN chat.json_int(p) BETWEEN 1 AND p_max THEN chat.json_int(p)::int
    END
$$;

-- A validated attachments list, as a send asks for it, normalized: per
-- item either {"upload_id", "thumbnail_id"} (thumbnail_id null when there
-- is none) or a link {"url", "name", "mime", "size"}; else an {"error": ...}
-- object naming the item by its index (from 0).  NULL (absent or JSON
-- null) is the empty list.  Which uploads exist and whose they are is
-- chat.attachments_of's, in the send itself.
--
-- Links are accepted only when p_hosts is not empty: https:// URLs whose
-- host is exactly one of p_hosts (lower case).  Only nginx passes hosts
-- (its chat_attachment_hosts, to chat.api_message_send_rows, which only
-- chat_runtime may call); every other way in (chat.api_message_send and
-- what calls it) passes none, so no SQL caller can attach a link nginx's
-- configuration would refuse.
CREATE OR REPLACE FUNCTION chat.check_attachments(p jsonb,
                                                  p_hosts text[] DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
    v_item  jsonb;
    v_i     int := -1;
    v_at    text;
    v_out   jsonb[] := '{}';
    v_size  bigint;
    v_url   text;
BEGIN
    IF p IS NULL OR jsonb_typeof(p) = 'null' THEN
        RETURN '[]'::jsonb;
    END IF;
    IF jsonb_typeof(p) <> 'array' THEN
        RETURN chat.err('bad_request', 'attachments must be an array');
    END IF;
    IF jsonb_array_length(p) > 10 THEN
        RETURN chat.err('too_large',
                        'attachments has more than 10 items');
    END IF;

    FOR v_item IN SELECT value FROM jsonb_array_elements(p) LOOP
        v_i := v_i + 1;
        v_at := 'attachments[' || v_i || ']';

        IF jsonb_typeof(v_item) <> 'object' THEN
            RETURN chat.err('bad_request', v_at || ' must be an object');
        END IF;

        IF coalesce(jsonb_typeof(v_item -> 'upload_id'), 'null') <> 'null'
        THEN
            IF coalesce(jsonb_typeof(v_item -> 'url'), 'null') <> 'null' THEN
                RETURN chat.err('bad_request',
                                v_at || ' has both upload_id and url');
            END IF;
            IF chat.json_id(v_item -> 'upload_id') IS NULL THEN
                RETURN chat.err('bad_request', v_at
                                || '.upload_id must be a positive integer');
            END IF;
            IF coalesce(jsonb_typeof(v_item -> 'thumbnail_id'), 'null')
                   <> 'null'
               AND chat.json_id(v_item -> 'thumbnail_id') IS NULL
            THEN
                RETURN chat.err('bad_request', v_at
                                || '.thumbnail_id must be a positive integer');
            END IF;
            v_out := array_append(v_out, jsonb_build_object(
                'upload_id', chat.json_id(v_item -> 'upload_id'),
                'thumbnail_id', chat.json_id(v_item -> 'thumbnail_id')));
            CONTINUE;
        END IF;

        IF coalesce(jsonb_typeof(v_item -> 'url'), 'null') = 'null' THEN
            RETURN chat.err('bad_request', v_at || ' must have an upload_id');
        END IF;

        -- a link: only to the hosts nginx was configured with
        IF coalesce(cardinality(p_hosts), 0) = 0 THEN
            RETURN chat.err('bad_request', v_at || '.url: links are not '
                            'accepted, attach an upload (upload_id)');
        END IF;
        IF jsonb_typeof(v_item -> 'url') <> 'string'
           OR v_item ->> 'url' = ''
        THEN
            RETURN chat.err('bad_request',
                            v_at || '.url must be a non-empty string');
        END IF;
        v_url := v_item ->> 'url';
        IF char_length(v_url) > 2048 THEN
            RETURN chat.err('too_large',
                            v_at || '.url is longer than 2048 characters');
        END IF;
        -- https only (no javascript:, data:, plain http, "//host"); the
        -- host is what comes before the first / ? or #, so "user@host",
        -- "host:port" and "host\x" name no listed host
        IF lower(v_url COLLATE "C") !~ '^https://[^/?#]+([/?#]|$)'
           OR NOT (lower(substring(v_url from '^.{8}([^/?#]+)') COLLATE "C")
                   = ANY (p_hosts))
        THEN
            RETURN chat.err('bad_request', v_at || '.url must be https:// '
                            'on a host of chat_attachment_hosts');
        END IF;

        IF coalesce(jsonb_typeof(v_item -> 'name'), 'null')
           NOT IN ('null', 'string')
        THEN
            RETURN chat.err('bad_request', v_at || '.name must be a string');
        END IF;
        IF char_length(v_item ->> 'name') > 255 THEN
            RETURN chat.err('too_large',
                            v_at || '.name is longer than 255 characters');
        END IF;

        IF coalesce(jsonb_typeof(v_item -> 'mime'), 'null')
           NOT IN ('null', 'string')
        THEN
            RETURN chat.err('bad_request', v_at || '.mime must be a string');
        END IF;
        IF char_length(v_item ->> 'mime') > 255 THEN
            RETURN chat.err('too_large',
                            v_at || '.mime is longer than 255 characters');
        END IF;

        v_size := NULL;
        IF coalesce(jsonb_typeof(v_item -> 'size'), 'null') <> 'null' THEN
            v_size := chat.json_int(v_item -> 'size');
            IF v_size IS NULL OR v_size < 0 THEN
                RETURN chat.err('bad_request',
                                v_at || '.size must be an integer >= 0');
            END IF;
        END IF;

        v_out := array_append(v_out, jsonb_build_object(
            'url',  v_url,
            'name', v_item ->> 'name',
            'mime', v_item ->> 'mime',
            'size', v_size));
    END LOOP;

    RETURN to_jsonb(v_out);
END
$$;

-- Whether p is a list chat.check_attachments returns unchanged (with
-- p_hosts): what chat.api_message_send_rows accepts.  Upload items, the
-- usual ones, are checked here in one expression; a link goes through
-- chat.check_attachments.  PL/pgSQL, as chat.attachments_of below: the
-- send calls it only for an item that has attachments, and a function the
-- planner inlined would be planned and set up with every batch, plain ones
-- too (a tenth of a batch of 128 plain sends), while PL/pgSQL keeps its
-- plan for the session.
CREATE OR REPLACE FUNCTION chat.attachments_normal(p jsonb, p_hosts text[])
RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
BEGIN
    RETURN CASE
        WHEN jsonb_typeof(p) IS DISTINCT FROM 'array'
             OR jsonb_array_length(p) > 10 THEN false
        ELSE coalesce((
            SELECT bool_and(CASE
                -- {"upload_id": id, "thumbnail_id": id or null}, exactly
                WHEN jsonb_typeof(e) = 'object' AND e ? 'upload_id'
                    THEN e - 'upload_id' - 'thumbnail_id' = '{}'
                         AND e ? 'thumbnail_id'
                         AND jsonb_typeof(e -> 'upload_id') = 'number'
                         AND coalesce(e ->> 'upload_id' ~ '^[1-9][0-9]{0,18}$'
                                      AND (e ->> 'upload_id')::numeric
                                          <= 9223372036854775807, false)
                         AND (e -> 'thumbnail_id' = 'null'
                              OR jsonb_typeof(e -> 'thumbnail_id') = 'number'
                                 AND coalesce(e ->> 'thumbnail_id'
                                                  ~ '^[1-9][0-9]{0,18}$'
                                              AND (e ->> 'thumbnail_id')::numeric
                                                  <= 9223372036854775807,
                                              false))
                ELSE coalesce(chat.check_attachments(jsonb_build_array(e),
                                                     p_hosts)
                              = jsonb_build_array(e), false) END)
            FROM jsonb_array_elements(p) AS e), true)
    END;
END
$$;

-- The attachments a send stores, from a list chat.check_attachments
-- normalized, for p_user: each upload item made into the upload's
-- description from chat.uploads,
--   {"upload_id", "name", "type", "size", "width", "height",
--    "url": "/api/chat/files/<id>",
--    "thumbnail": {"upload_id", "width", "height", "url"} or null},
-- links as they are.  An upload that is not p_user's is not found, the
-- same as one that does not exist; a thumbnail is an image of p_user's,
-- beside an image.  The first bad item gives {"code", "message"} instead.
-- The send calls it only for an item that has attachments.
CREATE OR REPLACE FUNCTION chat.attachments_of(p_user text, p_att jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
BEGIN
    RETURN (SELECT CASE
        WHEN count(z.err) = 0 THEN coalesce(jsonb_agg(z.obj ORDER BY z.i),
                                            '[]'::jsonb)
        ELSE (array_agg(z.err ORDER BY z.i)
              FILTER (WHERE z.err IS NOT NULL))[1] END
    FROM (
        SELECT j.i,
               CASE WHEN NOT j.item ? 'upload_id' THEN NULL
                    WHEN up.id IS NULL THEN jsonb_build_object(
                        'code', 'not_found',
                        'message', 'attachments[' || (j.i - 1)
                                   || ']: upload not found')
                    WHEN j.item -> 'thumbnail_id' = 'null' THEN NULL
                    WHEN th.id IS NULL THEN jsonb_build_object(
                        'code', 'not_found',
                        'message', 'attachments[' || (j.i - 1)
                                   || ']: thumbnail not found')
                    WHEN th.type NOT LIKE 'image/%' THEN jsonb_build_object(
                        'code', 'bad_request',
                        'message', 'attachments[' || (j.i - 1)
                                   || ']: the thumbnail must be an image')
                    WHEN up.type NOT LIKE 'image/%' THEN jsonb_build_object(
                        'code', 'bad_request',
                        'message', 'attachments[' || (j.i - 1)
                                   || ']: only an image has a thumbnail')
               END AS err,
               CASE WHEN NOT j.item ? 'upload_id' THEN j.item
                    ELSE jsonb_build_object(
                        'upload_id', up.id,
                        'name', up.name,
                        'type', up.type,
                        'size', up.size,
                        'width', up.width,
                        'height', up.height,
                        'url', '/api/chat/files/' || up.id,
                        'thumbnail',
                        CASE WHEN th.id IS NOT NULL THEN jsonb_build_object(
                            'upload_id', th.id,
                            'width', th.width,
                            'height', th.height,
                            'url', '/api/chat/files/' || th.id) END)
               END AS obj
        FROM jsonb_array_elements(p_att) WITH ORDINALITY AS j(item, i)
        -- locked (key share) until the send commits: the sweep, which
        -- locks an upload before deleting it, skips one a send is
        -- attaching; and a send that meets the sweep's lock waits, then
        -- finds the upload gone (that item not found, not a foreign-key
        -- error failing the whole batch)
        LEFT JOIN LATERAL (
            SELECT u.* FROM chat.uploads u
            WHERE u.id = (j.item ->> 'upload_id')::numeric::bigint
              AND u.owner_id = p_user
            FOR KEY SHARE) up ON true
        LEFT JOIN LATERAL (
            SELECT u.* FROM chat.uploads u
            WHERE u.id = (j.item ->> 'thumbnail_id')::numeric::bigint
              AND u.owner_id = p_user
            FOR KEY SHARE) th ON true
    ) z);
END
$$;

-- A body: a string of 1..p_max characters.  NULL when valid, else the
-- error result.
CREATE OR REPLACE FUNCTION chat.check_body(p_req jsonb, p_max bigint)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT CASE
        WHEN jsonb_typeof(p_req -> 'body') IS DISTINCT FROM 'string'
            THEN chat.bad(p_req, 'body', 'a string')
        WHEN p_req ->> 'body' = ''
            THEN chat.err('bad_request', 'body must not be empty')
        WHEN char_length(p_req ->> 'body') > p_max
            THEN chat.err('too_large',
                          'body is longer than ' || p_max || ' characters')
    END
$$;

-- The message length limit of a request: the module sets "max_length"
-- (chat_max_message_length); 5000 when absent.  NULL when invalid.
CREATE OR REPLACE FUNCTION chat.max_length(p jsonb) RETURNS bigint
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT CASE
        WHEN p IS NULL OR jsonb_typeof(p) = 'null' THEN 5000
        WHEN chat.json_int(p) BETWEEN 1 AND 1000000 THEN chat.json_int(p)
    END
$$;

-- The byte budget of a reply that can grow (sync, conversation.list,
-- messages.history): the module sets "max_bytes" from chat_send_buffer;
-- 1 MB when absent.  Pages stop once their JSON passes it (never before
-- their first entry, so every call makes progress).  NULL when invalid.
CREATE OR REPLACE FUNCTION chat.max_bytes(p jsonb) RETURNS bigint
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT CASE
        WHEN p IS NULL OR jsonb_typeof(p) = 'null' THEN 1048576
        WHEN chat.json_int(p) BETWEEN 1024 AND 67108864 THEN chat.json_int(p)
    END
$$;

-- The common prologue: NULL when p_user and p_req are usable.
CREATE OR REPLACE FUNCTION chat.check_request(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT CASE
        WHEN NOT chat.valid_user_id(p_user)
            THEN chat.err('bad_request', 'user id is invalid')
        WHEN jsonb_typeof(p_req) IS DISTINCT FROM 'object'
            THEN chat.err('bad_request', 'request must be a JSON object')
    END
$$;

-- The prologue of a request about one conversation of p_user's: the request
-- checked (chat.check_request), its conversation_id read, p_user a member.
-- o_err: the answer when any of that fails, else NULL; a conversation
-- p_user is not in is not_found, as one that does not exist.  o_cid: the
-- conversation once the request names one, even when p_user is not in it,
-- so that a caller may check its other arguments before answering
-- not_found (o_cid NULL: answer o_err now).
CREATE OR REPLACE FUNCTION chat.check_member_request(p_user text,
                                                     p_req jsonb,
                                                     OUT o_cid bigint,
                                                     OUT o_err jsonb)
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
BEGIN
    o_err := chat.check_request(p_user, p_req);
    IF o_err IS NOT NULL THEN
        RETURN;
    END IF;
    o_cid := chat.json_id(p_req -> 'conversation_id');
    IF o_cid IS NULL THEN
        o_err := chat.bad(p_req, 'conversation_id', 'a positive integer');
    ELSIF NOT EXISTS (SELECT 1 FROM chat.members
                      WHERE conversation_id = o_cid AND user_id = p_user)
    THEN
        o_err := chat.err('not_found', 'conversation not found');
    END IF;
END
$$;
