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

-- file_get: {"upload_id"} -> {"file": {"id", "sha256", "type", "name",
-- "size"}}, what nginx needs to serve the file: for its owner, and for a
-- member of a conversation where a message that is not deleted attaches
-- it (chat.message_uploads) and that the member sees: a message of a user
-- blocked either way is hidden from history (chat.messages_unread and the
-- history's filter), and so are its files.  Anybody else gets not_found,
-- as for an id that does not exist: a file's existence is never told.
CREATE OR REPLACE FUNCTION chat.api_file_get(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_err  jsonb := chat.check_request(p_user, p_req);
    v_id   bigint;
    v_row  chat.uploads;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    v_id := chat.json_id(p_req -> 'upload_id');
    IF v_id IS NULL THEN
        RETURN chat.bad(p_req, 'upload_id', 'a positive integer');
    END IF;
    SELECT * INTO v_row FROM chat.uploads WHERE id = v_id;
    IF v_row.id IS NULL
       OR (v_row.owner_id <> p_user
           AND NOT EXISTS (
               SELECT 1
               FROM chat.message_uploads mu
               JOIN chat.messages m ON m.id = mu.message_id
               JOIN chat.members mb
                 ON mb.conversation_id = m.conversation_id
                AND mb.user_id = p_user
               WHERE mu.upload_id = v_id
                 AND m.deleted_at IS NULL
                 AND (m.sender_id = p_user
                      OR NOT chat.is_blocked(p_user, m.sender_id))))
    THEN
        RETURN chat.err('not_found', 'file not found');
    END IF;
    RETURN chat.ok(jsonb_build_object('file', jsonb_build_object(
        'id', v_row.id,
        'sha256', v_row.sha256,
        'type', v_row.type,
        'name', v_row.name,
        'size', v_row.size)));
END
$$;

-- A deleted chat.uploads row's file is a candidate for the sweep
-- (chat.uploads_gone), whoever deleted it: the sweep itself, or
-- chat.delete_user_uploads.  Whether another row still has the same bytes
-- is asked when the sweep takes it.  A file handed out to nginx already
-- is queued again (taken cleared): nginx's word about the file it was
-- given then says nothing of the one this row may have stored since.
CREATE OR REPLACE FUNCTION chat.uploads_of_deleted() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
BEGIN
    INSERT INTO chat.uploads_gone AS g (sha256)
    SELECT DISTINCT sha256 FROM gone
    ON CONFLICT (sha256) DO UPDATE SET taken = NULL
    WHERE g.taken IS NOT NULL;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER uploads_delete_files
    AFTER DELETE ON chat.uploads
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION chat.uploads_of_deleted();

-- chat.uploads.unattached_since, kept by the links (R16F-5, R16H-3): an
-- upload a message attaches has none; one whose last link went (its
-- message deleted, or removed with its conversation or by retention) has
-- the time it went, from which its grace counts again, so that its owner
-- can attach it again.  Each trigger locks the uploads first, in id
-- order, and only then looks at the links, in a statement of its own (a
-- snapshot taken after the lock): of two transactions that drop the last
-- two links of an upload, or drop one while another adds one, the second
-- to take the lock waits until the first commits, and sees its links and
-- the column as they are then (the locks are taken whatever the column
-- says: a filter read before the lock could be stale).  A link that goes because its upload is deleted finds no
-- row to update.
CREATE OR REPLACE FUNCTION chat.uploads_released() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
BEGIN
    PERFORM 1 FROM chat.uploads u
    WHERE u.id IN (SELECT upload_id FROM gone)
    ORDER BY u.id
    FOR NO KEY UPDATE;
    UPDATE chat.uploads u SET unattached_since = now()
    WHERE u.id IN (SELECT upload_id FROM gone)
      AND NOT EXISTS (SELECT 1 FROM chat.message_uploads mu
                      WHERE mu.upload_id = u.id);
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER message_uploads_released
    AFTER DELETE ON chat.message_uploads
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION chat.uploads_released();

CREATE OR REPLACE FUNCTION chat.uploads_attached() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
BEGIN
    PERFORM 1 FROM chat.uploads u
    WHERE u.id IN (SELECT upload_id FROM added)
    ORDER BY u.id
    FOR NO KEY UPDATE;
    UPDATE chat.uploads u SET unattached_since = NULL
    WHERE u.id IN (SELECT upload_id FROM added)
      AND u.unattached_since IS NOT NULL;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER message_uploads_attached
    AFTER INSERT ON chat.message_uploads
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION chat.uploads_attached();

-- upload_sweep: {"grace": seconds, "limit": n, "retry": seconds,
-- "token": t, "done": [sha256, ...], "seen": [sha256, ...]} -> {"files":
-- [sha256, ...], "token": t, "at": epoch seconds, "more": bool}.  Called
-- by one nginx worker now and then (p_user is empty):
--
-- - "done" (with the "token" of the answer that handed them out): the
--   files nginx unlinked or found absent in its store; they leave
--   chat.uploads_gone, unless a row went again since (R16F-11: a file
--   leaves the queue only once nginx has done its part);
-- - "seen": files nginx found in its store, older than the grace (its
--   crawl, files.c); those no row names are queued: a file whose row
--   failed after it was stored is in no queue otherwise;
-- - deletes at most n uploads that no message attaches, older than the
--   grace counted from the upload or from when a message's link to it
--   last went (R16F-5);
-- - hands out at most n files of chat.uploads_gone that are due and that
--   no row has, under a new token, and makes them due again after
--   "retry" seconds, doubled at each try up to an hour: a file nginx
--   could not unlink comes back then, not at once; those a row has again
--   leave the queue.  "at": this transaction's time, from which nginx
--   judges whether a file was stored again meanwhile (files.c).
--
-- "more": there may be more to do at once.  One caller at a time over
-- all nodes (an advisory lock: the others get nothing), as the nodes
-- share one store.
CREATE OR REPLACE FUNCTION chat.api_upload_sweep(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_grace  bigint := chat.json_int(p_req -> 'grace');
    v_limit  bigint := chat.json_id(p_req -> 'limit');
    v_retry  bigint := chat.json_id(p_req -> 'retry');
    v_done   bigint := chat.json_id(p_req -> 'token');
    v_token  bigint;
    v_ids    bigint[];
    v_rows   bigint;
    v_taken  bigint;
    v_files  jsonb;
BEGIN
    IF v_grace IS NULL OR v_grace < 0 OR v_limit IS NULL
       OR v_retry IS NULL
    THEN
        RETURN chat.err('bad_request', 'grace, limit and retry are needed');
    END IF;

    -- nginx's part done: whoever holds the lock (the token is this
    -- caller's, the rows handed to it)
    IF v_done IS NOT NULL AND jsonb_typeof(p_req -> 'done') = 'array' THEN
        DELETE FROM chat.uploads_gone g
        WHERE g.taken = v_done
          AND g.sha256 IN (SELECT jsonb_array_elements_text(p_req -> 'done'));
    END IF;

    IF jsonb_typeof(p_req -> 'seen') = 'array' THEN
        INSERT INTO chat.uploads_gone (sha256)
        SELECT DISTINCT s.sha256
        FROM jsonb_array_elements_text(p_req -> 'seen') AS s (sha256)
        WHERE s.sha256 ~ '^[0-9a-f]{64}$'
          AND NOT EXISTS (SELECT 1 FROM chat.uploads u
                          WHERE u.sha256 = s.sha256)
        ON CONFLICT (sha256) DO NOTHING;
    END IF;

    IF NOT pg_try_advisory_xact_lock(hashtext('chat.api_upload_sweep')) THEN
        RETURN chat.ok(jsonb_build_object('files', '[]'::jsonb,
                                          'more', false));
    END IF;

    -- The candidates locked first, then deleted by a statement of its
    -- own: its snapshot is taken after the locks, so a send whose link
    -- committed between the first statement's snapshot and its lock (a
    -- lock of the link's key check, gone by then) is seen and keeps its
    -- upload; in one statement, the delete would cascade to that link.
    -- A send that comes after the lock waits for it and finds no upload.
    SELECT array_agg(o.id) INTO v_ids
    FROM (SELECT c.id FROM chat.uploads c
          WHERE c.unattached_since < now() - make_interval(secs => v_grace)
            AND NOT EXISTS (SELECT 1 FROM chat.message_uploads mu
                            WHERE mu.upload_id = c.id)
          ORDER BY c.unattached_since
          LIMIT v_limit
          FOR UPDATE SKIP LOCKED) o;
    v_rows := coalesce(cardinality(v_ids), 0);

    DELETE FROM chat.uploads u
    WHERE u.id = ANY (v_ids)
      AND NOT EXISTS (SELECT 1 FROM chat.message_uploads mu
                      WHERE mu.upload_id = u.id);

    -- a token no earlier answer had (this transaction's id)
    v_token := txid_current();

    WITH picked AS (
        SELECT g.sha256,
               EXISTS (SELECT 1 FROM chat.uploads u
                       WHERE u.sha256 = g.sha256) AS used
        FROM chat.uploads_gone g
        WHERE g.due_at <= now()
        ORDER BY g.due_at LIMIT v_limit
        FOR UPDATE OF g SKIP LOCKED
    ), dropped AS (
        DELETE FROM chat.uploads_gone g USING picked p
        WHERE g.sha256 = p.sha256 AND p.used
    ), handed AS (
        UPDATE chat.uploads_gone g
        SET taken = v_token,
            tries = g.tries + 1,
            due_at = now() + make_interval(secs =>
                         least(3600, v_retry * 2 ^ least(g.tries, 12)))
        FROM picked p
        WHERE g.sha256 = p.sha256 AND NOT p.used
        RETURNING g.sha256
    )
    SELECT (SELECT count(*) FROM picked),
           coalesce((SELECT jsonb_agg(h.sha256) FROM handed h), '[]'::jsonb)
    INTO v_taken, v_files;

    RETURN chat.ok(jsonb_build_object(
        'files', v_files,
        'token', v_token,
        'at', floor(extract(epoch FROM now()))::bigint,
        'more', v_rows = v_limit OR v_taken = v_limit));
END
$$;
