-- sql/api/35_uploads.sql
-- Uploads: the row of a file nginx has stored.
--
-- Part of the current API: every file of sql/api/ is applied whole, in one
-- transaction, by sql/migrate.sh on every deploy (never edit a function
-- elsewhere).  Entry points are SECURITY DEFINER with a pinned search_path
-- and are granted in 99_privileges.sql; everything else runs only inside
-- them.

-- upload_create: {"sha256", "size", "type", "name", "width", "height"} ->
-- {"upload": {"id", "size", "type", "name", "width", "height"}}.  nginx
-- calls it once the file is in its store, with what it measured (size,
-- hash, type and dimensions detected from the bytes) and the name the
-- client declared, already reduced to a base name; the checks here are
-- the table's, repeated as answers.  The per-user limits (files a minute,
-- bytes a day) are nginx's, in its zone.
CREATE OR REPLACE FUNCTION chat.api_upload_create(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_err     jsonb := chat.check_request(p_user, p_req);
    v_size    bigint;
    v_width   bigint;
    v_height  bigint;
    v_name    text;
    v_row     chat.uploads;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    IF jsonb_typeof(p_req -> 'sha256') IS DISTINCT FROM 'string'
       OR p_req ->> 'sha256' !~ '^[0-9a-f]{64}$'
    THEN
        RETURN chat.bad(p_req, 'sha256', 'a SHA-256 in lower-case hex');
    END IF;
    v_size := chat.json_id(p_req -> 'size');
    IF v_size IS NULL THEN
        RETURN chat.bad(p_req, 'size', 'a positive integer');
    END IF;
    IF jsonb_typeof(p_req -> 'type') IS DISTINCT FROM 'string'
       OR octet_length(p_req ->> 'type') NOT BETWEEN 1 AND 255
    THEN
        RETURN chat.bad(p_req, 'type', 'a media type');
    END IF;
    IF coalesce(jsonb_typeof(p_req -> 'name'), 'null') <> 'null' THEN
        v_name := p_req ->> 'name';
        IF jsonb_typeof(p_req -> 'name') <> 'string'
           OR char_length(v_name) NOT BETWEEN 1 AND 255
           OR v_name ~ '[/\\[:cntrl:]]'
        THEN
            RETURN chat.bad(p_req, 'name', 'a file name of 1 to 255 '
                                           || 'characters');
        END IF;
    END IF;
    v_width := chat.json_id(p_req -> 'width');
    v_height := chat.json_id(p_req -> 'height');
    IF (coalesce(jsonb_typeof(p_req -> 'width'), 'null') <> 'null'
        AND (v_width IS NULL OR v_width > 2147483647))
       OR (coalesce(jsonb_typeof(p_req -> 'height'), 'null') <> 'null'
           AND (v_height IS NULL OR v_height > 2147483647))
    THEN
        RETURN chat.err('bad_request',
                        'width and height must be positive integers');
    END IF;
    INSERT INTO chat.uploads (owner_id, size, name, type, sha256,
                              width, height)
    VALUES (p_user, v_size, v_name, p_req ->> 'type', p_req ->> 'sha256',
            v_width, v_height)
    RETURNING * INTO v_row;
    RETURN chat.ok(jsonb_build_object('upload', jsonb_build_object(
        'id', v_row.id,
        'size', v_row.size,
        'type', v_row.type,
        'name', v_row.name,
        'width', v_row.width,
        'height', v_row.height)));
END
$$;
