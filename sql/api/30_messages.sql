-- sql/api/30_messages.sql
-- Messages: history, sends (in batches), edits, deletes, read and delivered
-- receipts, system messages from services.
--
-- Part of the current API: every file of sql/api/ is applied whole, in one
-- transaction, by sql/migrate.sh on every deploy (never edit a function
-- elsewhere).  Entry points are SECURITY DEFINER with a pinned search_path
-- and are granted in 99_privileges.sql; everything else runs only inside
-- them.

-- messages.history: {"conversation_id", "before_seq"? | "after_seq"?,
--                    "limit"?} -> {"messages": [M] ascending, "has_more"}
-- Neither cursor: the latest page.  has_more: more messages exist in the
-- paging direction (older for before_seq and the latest page, newer for
-- after_seq).  Messages of users blocked either way are left out (as live
-- and in sync): their seq numbers are missing.  A page also ends early
-- (has_more true) once its JSON passes max_bytes (chat.max_bytes), counted
-- from the end it pages away from.
CREATE OR REPLACE FUNCTION chat.api_messages_history(p_user text,
                                                     p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_cid       bigint;
    v_err       jsonb;
    v_before    bigint;
    v_after     bigint;
    v_limit     bigint := 50;
    v_msgs      jsonb;
    v_has_more  boolean;
    v_peers     text[] := chat.block_peers(p_user);
    v_max       bigint := chat.max_bytes(p_req -> 'max_bytes');
BEGIN
    SELECT o_cid, o_err INTO v_cid, v_err
    FROM chat.check_member_request(p_user, p_req);
    IF v_cid IS NULL THEN
        RETURN v_err;
    END IF;

    IF coalesce(jsonb_typeof(p_req -> 'before_seq'), 'null') <> 'null' THEN
        v_before := chat.json_int(p_req -> 'before_seq');
        IF v_before IS NULL OR v_before < 0 THEN
            RETURN chat.bad(p_req, 'before_seq', 'an integer >= 0');
        END IF;
    END IF;
    IF coalesce(jsonb_typeof(p_req -> 'after_seq'), 'null') <> 'null' THEN
        v_after := chat.json_int(p_req -> 'after_seq');
        IF v_after IS NULL OR v_after < 0 THEN
            RETURN chat.bad(p_req, 'after_seq', 'an integer >= 0');
        END IF;
    END IF;
    IF v_before IS NOT NULL AND v_after IS NOT NULL THEN
        RETURN chat.err('bad_request',
                        'before_seq and after_seq are exclusive');
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

    -- not a member: not_found, once the arguments are known to be good
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;

    -- taken: the first limit in paging order, while the running size is
    -- within max_bytes (the first always): a prefix, so no gap
    IF v_after IS NOT NULL THEN
        SELECT coalesce(jsonb_agg(x.o ORDER BY x.seq)
                        FILTER (WHERE x.taken), '[]'::jsonb),
               count(*) FILTER (WHERE NOT x.taken) > 0
        INTO v_msgs, v_has_more
        FROM (SELECT y.seq, y.o,
                     y.rn <= v_limit AND (y.rn = 1 OR y.run <= v_max)
                         AS taken
              FROM (SELECT p.seq, p.o,
                           row_number() OVER w AS rn,
                           sum(octet_length(p.o::text)) OVER w AS run
                    FROM (SELECT m.seq, chat.message_obj(m) AS o
                          FROM chat.messages m
                          WHERE m.conversation_id = v_cid
                            AND m.seq > v_after
                            AND m.sender_id <> ALL (v_peers)
                          ORDER BY m.seq
                          LIMIT v_limit + 1) p
                    WINDOW w AS (ORDER BY p.seq)) y) x;
    ELSE
        SELECT coalesce(jsonb_agg(x.o ORDER BY x.seq)
                        FILTER (WHERE x.taken), '[]'::jsonb),
               count(*) FILTER (WHERE NOT x.taken) > 0
        INTO v_msgs, v_has_more
        FROM (SELECT y.seq, y.o,
                     y.rn <= v_limit AND (y.rn = 1 OR y.run <= v_max)
                         AS taken
              FROM (SELECT p.seq, p.o,
                           row_number() OVER w AS rn,
                           sum(octet_length(p.o::text)) OVER w AS run
                    FROM (SELECT m.seq, chat.message_obj(m) AS o
                          FROM chat.messages m
                          WHERE m.conversation_id = v_cid
                            AND m.seq < coalesce(v_before,
                                                 9223372036854775807)
                            AND m.sender_id <> ALL (v_peers)
                          ORDER BY m.seq DESC
                          LIMIT v_limit + 1) p
                    WINDOW w AS (ORDER BY p.seq DESC)) y) x;
    END IF;

    RETURN chat.ok(jsonb_build_object('messages', v_msgs,
                                      'has_more', v_has_more));
END
$$;

-- A conversation deleted (by the host or an operator: the API never
-- deletes one) takes its messages along, as the foreign key did before
-- sql/schema/0013_sends.sql: one statement for all the rows deleted.
CREATE OR REPLACE FUNCTION chat.messages_of_deleted() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
BEGIN
    DELETE FROM chat.messages m
    USING gone g
    WHERE m.conversation_id = g.id;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER conversations_delete_messages
    AFTER DELETE ON chat.conversations
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION chat.messages_of_deleted();

-- message.send for a batch, as columns: what the module calls.  Item i is
-- (p_users[i], p_cids[i], p_bodies[i], p_cmids[i], p_atts[i], p_replies[i]);
-- one row comes back per item, in item order (ord from 1):
--   code, message: the error, or NULL
--   id .. system: the Message object's fields (chat.message_obj says how
--       they are shown); created_at and edited_at already formatted
--   recipients: who gets message.created, NULL when nobody does (a retry
--       of a stored message, a repeat of an earlier item, an error)
--
-- Each item is answered as if the items ran one after the other, checked
-- in this order: shape, membership, a retry of a stored message, a repeat
-- of an earlier item of the batch (answered with that item's message,
-- delivered once), blocks, attachments (the sender's uploads:
-- chat.attachments_of), reply_to.  The messages of a conversation take
-- consecutive seq, and ids grow, in item order.
--
-- The module checks the shape of a request and answers its errors itself;
-- this function checks it again, as anyone granted it may call it with
-- anything, and answers a bad item with a plain bad_request.  Attachments
-- come normalized (chat.check_attachments returns them unchanged); links
-- among them only for the hosts of p_url_hosts, nginx's
-- chat_attachment_hosts (no other caller passes any).  The uploads a
-- stored message attaches (and their thumbnails) go into
-- chat.message_uploads in the same transaction, by a third statement that
-- only a batch with attachments runs: a batch of plain sends plans and
-- runs nothing more than before.
--
-- Two statements whatever the batch size (three with attachments): the
-- lock of the conversations, then the checks, the numbering, the insert
-- and the answer as one set operation (the lock comes first so that the
-- second sees what a batch it waited for committed).
CREATE OR REPLACE FUNCTION chat.api_message_send_rows(p_users text[],
                                                      p_cids bigint[],
                                                      p_bodies text[],
                                                      p_cmids text[],
                                                      p_atts jsonb[],
                                                      p_replies bigint[],
                                                      p_url_hosts text[]
                                                          DEFAULT NULL)
RETURNS TABLE (ord int, code text, message text, id bigint, seq bigint,
               body text, attachments jsonb, reply_to bigint,
               created_at text, edited_at text, deleted boolean,
               updated_seq bigint, system boolean, recipients text[])
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_n       int := cardinality(p_users);
    v_locked  bigint[];
    v_now     text := chat.fmt_time(now());   -- created_at of what is new
    v_sort    text := current_setting('enable_incremental_sort');
    v_atts    boolean;                        -- any item has attachments
BEGIN
    IF v_n IS NULL
       OR v_n > 100000
       OR coalesce(array_ndims(p_users), 1) <> 1
       OR coalesce(array_ndims(p_cids), 1) <> 1
       OR coalesce(array_ndims(p_bodies), 1) <> 1
       OR coalesce(array_ndims(p_cmids), 1) <> 1
       OR coalesce(array_ndims(p_atts), 1) <> 1
       OR coalesce(array_ndims(p_replies), 1) <> 1
       OR cardinality(p_cids) IS DISTINCT FROM v_n
       OR cardinality(p_bodies) IS DISTINCT FROM v_n
       OR cardinality(p_cmids) IS DISTINCT FROM v_n
       OR cardinality(p_atts) IS DISTINCT FROM v_n
       OR cardinality(p_replies) IS DISTINCT FROM v_n
    THEN
        RAISE EXCEPTION 'chat.api_message_send_rows: the arrays must have '
                        'one dimension and the same length (at most 100000)'
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_n = 0 THEN
        RETURN;
    END IF;
    -- a batch of plain sends plans and runs nothing of attachments
    v_atts := cardinality(array_remove(array_remove(p_atts, NULL),
                                       '[]'::jsonb)) > 0;

    -- 1. lock the conversations the senders belong to, in id order, so
    -- that concurrent batches cannot deadlock; only these are written to
    -- (a sender who joined since is answered as before the join)
    v_locked := ARRAY(SELECT c.id FROM chat.conversations c
                      WHERE c.id IN (SELECT mb.conversation_id
                                     FROM unnest(p_cids, p_users)
                                          AS u(cid, usr)
                                     JOIN chat.members mb
                                       ON mb.conversation_id = u.cid
                                      AND mb.user_id = u.usr)
                      ORDER BY c.id
                      FOR UPDATE OF c);

    -- an incremental sort of the items, one group per conversation, costs
    -- more than the rest of the statement: off for it alone
    PERFORM set_config('enable_incremental_sort', 'off', true);

    -- 2. everything else.  No join of two sets of items: what an item
    -- takes from another (the numbers of the item it repeats, the members
    -- of its conversation) comes through window functions, so the cost
    -- stays linear whatever the planner guesses of the arrays' sizes.
    RETURN QUERY
    WITH u AS (
        SELECT x.ord::int AS ord, x.usr, x.cid, x.body, x.cmid,
               coalesce(x.att, '[]') AS att, x.reply,
               NOT coalesce(octet_length(x.usr) BETWEEN 1 AND 128
                            AND x.usr !~ '[[:cntrl:]]'
                            AND x.cid >= 1
                            AND x.body <> ''
                            AND char_length(x.body) <= 1000000
                            AND x.cmid <> ''
                            AND char_length(x.cmid) <= 64
                            AND (x.reply IS NULL OR x.reply >= 1)
                            AND (x.att IS NULL OR x.att = '[]'
                                 OR chat.attachments_normal(x.att,
                                                            p_url_hosts)),
                            false) AS bad
        FROM unnest(p_users, p_cids, p_bodies, p_cmids, p_atts, p_replies)
             WITH ORDINALITY AS x(usr, cid, body, cmid, att, reply, ord)
    ), d0 AS MATERIALIZED (
        -- the facts of each item on its own (each looked up once), with
        -- the users the sender blocked or was blocked by
        SELECT u.ord, u.usr, u.cid, u.body, u.cmid, u.reply, u.bad,
               -- what a new message stores (the uploads looked up only
               -- for one that has attachments), else as asked
               CASE WHEN v_atts AND c.id IS NOT NULL AND old.id IS NULL
                         AND u.att <> '[]'
                    THEN chat.attachments_of(u.usr, u.att)
                    ELSE u.att END AS att,
               c.id IS NOT NULL AS member, c.kind, c.last_seq,
               old.id AS old_id, old AS stored,
               CASE WHEN c.id IS NOT NULL
                    THEN ARRAY(SELECT b.blocked_id FROM chat.blocks b
                               WHERE b.blocker_id = u.usr
                               UNION ALL
                               SELECT b.blocker_id FROM chat.blocks b
                               WHERE b.blocked_id = u.usr) END AS peers,
               (c.id IS NOT NULL AND u.reply IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM chat.messages rm
                                WHERE rm.id = u.reply
                                  AND rm.conversation_id = u.cid))
                   AS bad_reply
        FROM u
        LEFT JOIN chat.members mb
               ON NOT u.bad
              AND mb.conversation_id = u.cid AND mb.user_id = u.usr
        LEFT JOIN chat.conversations c
               ON mb.user_id IS NOT NULL AND c.id = u.cid
              AND c.id = ANY (v_locked)
        LEFT JOIN chat.messages old
               ON c.id IS NOT NULL
              AND old.conversation_id = u.cid AND old.sender_id = u.usr
              AND old.client_msg_id = u.cmid
    ), d AS (
        -- a direct conversation with someone blocked either way
        SELECT d0.*,
               (d0.kind = 'direct' AND cardinality(d0.peers) > 0
                AND EXISTS (SELECT 1 FROM chat.members o
                            WHERE o.conversation_id = d0.cid
                              AND o.user_id <> d0.usr
                              AND o.user_id = ANY (d0.peers)))
                   IS TRUE AS blocked
        FROM d0
    ), e AS (
        -- membership, a stored message and blocks are the same for every
        -- item of a key: the first item of the key that passes is stored
        -- (fresh), the later ones repeat it
        SELECT d.*,
               min(d.ord) FILTER (WHERE d.member AND d.old_id IS NULL
                                        AND NOT d.blocked
                                        AND (NOT v_atts
                                             OR jsonb_typeof(d.att) = 'array')
                                        AND NOT d.bad_reply)
                   OVER (PARTITION BY d.cid, d.usr, d.cmid) AS first
        FROM d
    ), f AS (
        -- the fresh items take the next numbers of their conversation
        SELECT e.*, e.first IS NOT DISTINCT FROM e.ord AS fresh,
               e.last_seq + count(*) FILTER (WHERE e.first = e.ord)
                                OVER (PARTITION BY e.cid ORDER BY e.ord)
                   AS nseq
        FROM e
    ), g AS MATERIALIZED (
        -- ids from the messages' own sequence, growing in item order (a
        -- volatile output is computed after the sort); the members of a
        -- conversation read once, on its first fresh item
        SELECT f.*,
               CASE WHEN f.fresh THEN nextval('chat.messages_id_seq') END
                   AS nid,
               CASE WHEN f.fresh
                         AND row_number() OVER (PARTITION BY f.cid, f.fresh
                                                ORDER BY f.ord) = 1
                    THEN ARRAY(SELECT mb.user_id FROM chat.members mb
                               WHERE mb.conversation_id = f.cid
                               ORDER BY mb.user_id COLLATE "C") END
                   AS ids1
        FROM f
        ORDER BY f.ord
    ), h AS (
        -- a repeat answers its key's fresh item
        SELECT g.*,
               first_value(g.nid) OVER k AS mid,
               first_value(g.nseq) OVER k AS mseq,
               first_value(g.body) OVER k AS mbody,
               first_value(g.att) OVER k AS matt,
               first_value(g.reply) OVER k AS mreply,
               max(g.ids1) OVER (PARTITION BY g.cid) AS ids
        FROM g
        WINDOW k AS (PARTITION BY g.cid, g.usr, g.cmid
                     ORDER BY g.fresh DESC, g.ord)
    ), bump AS (
        UPDATE chat.conversations c
        SET last_seq = n.top, last_activity = now()
        FROM (SELECT g.cid, max(g.nseq) AS top FROM g WHERE g.fresh
              GROUP BY g.cid) n
        WHERE c.id = n.cid
    ), made AS (
        INSERT INTO chat.messages (id, conversation_id, seq, updated_seq,
                                   sender_id, body, client_msg_id,
                                   attachments, reply_to, created_at)
        OVERRIDING SYSTEM VALUE
        SELECT g.nid, g.cid, g.nseq, g.nseq, g.usr, g.body, g.cmid, g.att,
               g.reply, now()
        FROM g
        WHERE g.fresh
        ORDER BY g.nid
    )
    SELECT h.ord,
           CASE WHEN h.bad THEN 'bad_request'
                WHEN NOT h.member THEN 'not_found'
                WHEN h.old_id IS NOT NULL OR h.first <= h.ord THEN NULL
                WHEN h.blocked THEN 'forbidden'
                WHEN jsonb_typeof(h.att) = 'object' THEN h.att ->> 'code'
                ELSE 'bad_request' END,
           CASE WHEN h.bad THEN 'the item is invalid'
                WHEN NOT h.member THEN 'conversation not found'
                WHEN h.old_id IS NOT NULL OR h.first <= h.ord THEN NULL
                WHEN h.blocked THEN 'blocked'
                WHEN jsonb_typeof(h.att) = 'object'
                    THEN h.att ->> 'message'
                ELSE 'reply_to is not a message of this conversation' END,
           CASE WHEN h.bad OR NOT h.member THEN NULL
                WHEN h.old_id IS NOT NULL THEN h.old_id
                WHEN h.first <= h.ord THEN h.mid END,
           CASE WHEN h.bad OR NOT h.member THEN NULL
                WHEN h.old_id IS NOT NULL THEN (h.stored).seq
                WHEN h.first <= h.ord THEN h.mseq END,
           CASE WHEN h.bad OR NOT h.member THEN NULL
                WHEN h.old_id IS NOT NULL
                    THEN CASE WHEN (h.stored).deleted_at IS NULL
                              THEN (h.stored).body END
                WHEN h.first <= h.ord THEN h.mbody END,
           CASE WHEN h.bad OR NOT h.member THEN NULL
                WHEN h.old_id IS NOT NULL
                    THEN CASE WHEN (h.stored).deleted_at IS NULL
                              THEN (h.stored).attachments
                              ELSE '[]'::jsonb END
                WHEN h.first <= h.ord THEN h.matt END,
           CASE WHEN h.bad OR NOT h.member THEN NULL
                WHEN h.old_id IS NOT NULL THEN (h.stored).reply_to
                WHEN h.first <= h.ord THEN h.mreply END,
           CASE WHEN h.bad OR NOT h.member THEN NULL
                WHEN h.old_id IS NOT NULL
                    THEN chat.fmt_time((h.stored).created_at)
                WHEN h.first <= h.ord THEN v_now END,
           chat.fmt_time((h.stored).edited_at),
           (h.stored).deleted_at IS NOT NULL,
           CASE WHEN h.bad OR NOT h.member THEN NULL
                WHEN h.old_id IS NOT NULL THEN (h.stored).updated_seq
                WHEN h.first <= h.ord THEN h.mseq END,
           coalesce((h.stored).kind = 'system', false),
           -- those who blocked the sender or were blocked by them do not
           -- hear it
           CASE WHEN NOT h.fresh OR h.old_id IS NOT NULL THEN NULL
                WHEN cardinality(h.peers) = 0 THEN h.ids
                ELSE ARRAY(SELECT x FROM unnest(h.ids) AS x
                           WHERE x <> ALL (h.peers)
                           ORDER BY x COLLATE "C") END
    FROM h
    ORDER BY h.ord;

    PERFORM set_config('enable_incremental_sort', v_sort, true);

    -- 3. only when an item has attachments: the uploads the messages this
    -- call stored attach, files and thumbnails, read from what was stored
    -- (created_at is the transaction's now(): a retry's older message has
    -- its rows already; an upload removed since is left out)
    IF v_atts THEN
        INSERT INTO chat.message_uploads (message_id, upload_id,
                                          conversation_id)
        SELECT m.id, a.upload_id, m.conversation_id
        FROM unnest(p_cids, p_users, p_cmids, p_atts) AS x(cid, usr, cmid,
                                                             att)
        JOIN chat.messages m
          ON m.conversation_id = x.cid AND m.sender_id = x.usr
         AND m.client_msg_id = x.cmid
        CROSS JOIN LATERAL (
            SELECT (e ->> 'upload_id')::bigint AS upload_id
            FROM jsonb_array_elements(m.attachments) AS e
            WHERE e ? 'upload_id'
            UNION
            SELECT (e -> 'thumbnail' ->> 'upload_id')::bigint
            FROM jsonb_array_elements(m.attachments) AS e
            WHERE jsonb_typeof(e -> 'thumbnail') = 'object') a
        JOIN chat.uploads up ON up.id = a.upload_id
        WHERE x.att IS NOT NULL AND x.att <> '[]'
          AND m.created_at = now() AND m.deleted_at IS NULL
          AND m.attachments <> '[]'
        ON CONFLICT DO NOTHING;
    END IF;
END
$$;

-- p_items: [{"user": "...", "max_length"?: N, "req": {...}}, ...]
-- -> [result, ...] in the same order: chat.api_message_send_rows for
-- callers with JSON (the host's chat.post_message, chat.api_dispatch),
-- with the shape checks and their messages here.
CREATE OR REPLACE FUNCTION chat.api_message_send_batch(p_items jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    v_n      int;
    v_out    jsonb[];
    v_item   jsonb;
    v_req    jsonb;
    v_user   text;
    v_max    bigint;
    v_cid    bigint;
    v_cmid   text;
    v_att    jsonb;
    v_reply  bigint;
    v_err    jsonb;
    v_obj    jsonb;
    -- the items that passed the shape checks, as parallel arrays
    a_ord    int[]    := '{}';
    a_user   text[]   := '{}';
    a_cid    bigint[] := '{}';
    a_body   text[]   := '{}';
    a_cmid   text[]   := '{}';
    a_att    jsonb[]  := '{}';
    a_reply  bigint[] := '{}';
    r        record;
BEGIN
    IF jsonb_typeof(p_items) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'chat.api_message_send_batch: p_items must be a '
                        'JSON array'
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_n := jsonb_array_length(p_items);
    IF v_n = 0 THEN
        RETURN '[]'::jsonb;
    END IF;
    v_out := array_fill(NULL::jsonb, ARRAY[v_n]);

    FOR i IN 1 .. v_n LOOP
        v_item := p_items -> (i - 1);
        IF jsonb_typeof(v_item) <> 'object'
           OR jsonb_typeof(v_item -> 'user') IS DISTINCT FROM 'string'
        THEN
            v_out[i] := chat.err('bad_request',
                                 'an item must be {"user", "req"}');
            CONTINUE;
        END IF;
        v_user := v_item ->> 'user';
        v_req := v_item -> 'req';

        v_err := chat.check_request(v_user, v_req);
        IF v_err IS NOT NULL THEN
            v_out[i] := v_err;
            CONTINUE;
        END IF;

        v_max := chat.max_length(coalesce(v_item -> 'max_length',
                                          v_req -> 'max_length'));
        IF v_max IS NULL THEN
            v_out[i] := chat.err('bad_request',
                'max_length must be an integer from 1 to 1000000');
            CONTINUE;
        END IF;

        v_cid := chat.json_id(v_req -> 'conversation_id');
        IF v_cid IS NULL THEN
            v_out[i] := chat.bad(v_req, 'conversation_id',
                                 'a positive integer');
            CONTINUE;
        END IF;

        v_err := chat.check_body(v_req, v_max);
        IF v_err IS NOT NULL THEN
            v_out[i] := v_err;
            CONTINUE;
        END IF;

        IF jsonb_typeof(v_req -> 'client_msg_id') IS DISTINCT FROM 'string'
           OR v_req ->> 'client_msg_id' = ''
        THEN
            v_out[i] := chat.bad(v_req, 'client_msg_id',
                                 'a non-empty string');
            CONTINUE;
        END IF;
        v_cmid := v_req ->> 'client_msg_id';
        IF char_length(v_cmid) > 64 THEN
            v_out[i] := chat.err('too_large',
                'client_msg_id is longer than 64 characters');
            CONTINUE;
        END IF;

        v_att := chat.check_attachments(v_req -> 'attachments');
        IF jsonb_typeof(v_att) = 'object' THEN
            v_out[i] := v_att;
            CONTINUE;
        END IF;

        v_reply := NULL;
        IF coalesce(jsonb_typeof(v_req -> 'reply_to'), 'null') <> 'null' THEN
            v_reply := chat.json_id(v_req -> 'reply_to');
            IF v_reply IS NULL THEN
                v_out[i] := chat.bad(v_req, 'reply_to', 'a message id');
                CONTINUE;
            END IF;
        END IF;

        a_ord   := a_ord   || i;
        a_user  := a_user  || v_user;
        a_cid   := a_cid   || v_cid;
        a_body  := a_body  || (v_req ->> 'body');
        a_cmid  := a_cmid  || v_cmid;
        a_att   := a_att   || v_att;
        a_reply := a_reply || v_reply;
    END LOOP;

    IF cardinality(a_ord) = 0 THEN
        RETURN to_jsonb(v_out);
    END IF;

    FOR r IN SELECT s.* FROM chat.api_message_send_rows(a_user, a_cid, a_body,
                                                        a_cmid, a_att,
                                                        a_reply) s
    LOOP
        IF r.code IS NOT NULL THEN
            v_out[a_ord[r.ord]] := chat.err(r.code, r.message);
            CONTINUE;
        END IF;
        SELECT chat.message_obj(m) INTO v_obj
        FROM chat.messages m WHERE m.id = r.id;
        IF r.recipients IS NULL THEN
            v_out[a_ord[r.ord]] := chat.ok(jsonb_build_object('message',
                                                              v_obj));
        ELSE
            v_out[a_ord[r.ord]] := chat.ok(
                jsonb_build_object('message', v_obj),
                jsonb_build_array(jsonb_build_object(
                    'to', to_jsonb(r.recipients),
                    'event', jsonb_build_object('type', 'message.created',
                                                'message', v_obj))));
        END IF;
    END LOOP;

    RETURN to_jsonb(v_out);
END
$$;

CREATE OR REPLACE FUNCTION chat.api_message_send(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY INVOKER
AS $$
    SELECT chat.api_message_send_batch(jsonb_build_array(
        jsonb_build_object('user', p_user, 'req', p_req))) -> 0
$$;

-- message.edit / message.delete

-- The message p_mid if p_user is a member of its conversation, read after
-- taking the conversation's row lock (NULL id: not found).
CREATE OR REPLACE FUNCTION chat.lock_message(p_user text, p_mid bigint)
RETURNS chat.messages
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    v_cid  bigint;
    v_msg  chat.messages;
BEGIN
    SELECT m.conversation_id INTO v_cid
    FROM chat.messages m
    JOIN chat.members mb
      ON mb.conversation_id = m.conversation_id AND mb.user_id = p_user
    WHERE m.id = p_mid;
    IF NOT FOUND THEN
        RETURN v_msg;
    END IF;
    PERFORM 1 FROM chat.conversations WHERE id = v_cid FOR UPDATE;
    SELECT * INTO v_msg FROM chat.messages WHERE id = p_mid;
    RETURN v_msg;
END
$$;

-- {"message_id", "body", "max_length"?} -> {"message": M}
CREATE OR REPLACE FUNCTION chat.api_message_edit(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_err  jsonb := chat.check_request(p_user, p_req);
    v_mid  bigint;
    v_max  bigint;
    v_msg  chat.messages;
    v_seq  bigint;
    v_obj  jsonb;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    v_mid := chat.json_id(p_req -> 'message_id');
    IF v_mid IS NULL THEN
        RETURN chat.bad(p_req, 'message_id', 'a positive integer');
    END IF;
    v_max := chat.max_length(p_req -> 'max_length');
    IF v_max IS NULL THEN
        RETURN chat.err('bad_request',
                        'max_length must be an integer from 1 to 1000000');
    END IF;
    v_err := chat.check_body(p_req, v_max);
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;

    v_msg := chat.lock_message(p_user, v_mid);
    IF v_msg.id IS NULL THEN
        RETURN chat.err('not_found', 'message not found');
    END IF;
    IF v_msg.sender_id <> p_user THEN
        RETURN chat.err('forbidden', 'only the sender can edit a message');
    END IF;
    IF v_msg.deleted_at IS NOT NULL THEN
        RETURN chat.err('conflict', 'the message is deleted');
    END IF;

    UPDATE chat.conversations SET last_seq = last_seq + 1
    WHERE id = v_msg.conversation_id
    RETURNING last_seq INTO v_seq;

    UPDATE chat.messages
    SET body = p_req ->> 'body', edited_at = now(), updated_seq = v_seq
    WHERE id = v_mid
    RETURNING * INTO v_msg;

    v_obj := chat.message_obj(v_msg);
    RETURN chat.ok(
        jsonb_build_object('message', v_obj),
        jsonb_build_array(jsonb_build_object(
            'to', chat.recipients(v_msg.conversation_id, v_msg.sender_id),
            'event', jsonb_build_object('type', 'message.updated',
                                        'message', v_obj))));
END
$$;

-- {"message_id"} -> {"message": M}
CREATE OR REPLACE FUNCTION chat.api_message_delete(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_err  jsonb := chat.check_request(p_user, p_req);
    v_mid  bigint;
    v_msg  chat.messages;
    v_seq  bigint;
    v_obj  jsonb;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    v_mid := chat.json_id(p_req -> 'message_id');
    IF v_mid IS NULL THEN
        RETURN chat.bad(p_req, 'message_id', 'a positive integer');
    END IF;

    v_msg := chat.lock_message(p_user, v_mid);
    IF v_msg.id IS NULL THEN
        RETURN chat.err('not_found', 'message not found');
    END IF;
    IF v_msg.sender_id <> p_user
       AND NOT EXISTS (SELECT 1 FROM chat.members mb
                       JOIN chat.conversations c
                         ON c.id = mb.conversation_id
                       WHERE mb.conversation_id = v_msg.conversation_id
                         AND mb.user_id = p_user
                         AND c.kind = 'group'
                         AND mb.role IN ('owner', 'admin'))
    THEN
        RETURN chat.err('forbidden',
            'only the sender or a group owner or admin can delete '
            'a message');
    END IF;
    -- an admin moderates members, not the owners who made them admin
    IF v_msg.sender_id <> p_user
       AND NOT EXISTS (SELECT 1 FROM chat.members mb
                       WHERE mb.conversation_id = v_msg.conversation_id
                         AND mb.user_id = p_user AND mb.role = 'owner')
       AND EXISTS (SELECT 1 FROM chat.members mb
                   WHERE mb.conversation_id = v_msg.conversation_id
                     AND mb.user_id = v_msg.sender_id AND mb.role = 'owner')
    THEN
        RETURN chat.err('forbidden',
                        'only an owner can delete an owner''s message');
    END IF;
    IF v_msg.deleted_at IS NOT NULL THEN
        -- deleted already: the same answer, nothing delivered again
        RETURN chat.ok(jsonb_build_object('message',
                                          chat.message_obj(v_msg)));
    END IF;

    UPDATE chat.conversations SET last_seq = last_seq + 1
    WHERE id = v_msg.conversation_id
    RETURNING last_seq INTO v_seq;

    UPDATE chat.messages
    SET deleted_at = now(), body = NULL, attachments = '[]',
        updated_seq = v_seq
    WHERE id = v_mid
    RETURNING * INTO v_msg;

    -- its files are served no more (and swept once nothing else has them);
    -- their uploads locked first, in id order, as chat.delete_user_uploads
    -- does: the links' trigger locks them after the links, and an erasure
    -- deleting them would wait for our links crosswise (R16H-4)
    PERFORM 1 FROM chat.uploads u
    WHERE u.id IN (SELECT mu.upload_id FROM chat.message_uploads mu
                   WHERE mu.message_id = v_mid)
    ORDER BY u.id
    FOR NO KEY UPDATE;
    DELETE FROM chat.message_uploads WHERE message_id = v_mid;

    v_obj := chat.message_obj(v_msg);
    RETURN chat.ok(
        jsonb_build_object('message', v_obj),
        jsonb_build_array(jsonb_build_object(
            'to', chat.recipients(v_msg.conversation_id, v_msg.sender_id),
            'event', jsonb_build_object('type', 'message.deleted',
                                        'message', v_obj))));
END
$$;

-- message.read / message.delivered

-- Moves p_user's read (p_kind 'read') or delivered mark of a conversation
-- to greatest(old, least(seq, last_seq)); a receipt event when it moved:
-- to every member (but those blocked either way), or in a big group
-- (chat.is_big_group) only to p_user's own connections and the senders of
-- the messages it newly covers (of its 100 newest) who are still members
-- and not blocked: a receipt costs the same in a group of 10,000.
CREATE OR REPLACE FUNCTION chat.mark(p_user text, p_req jsonb, p_kind text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    v_err      jsonb := chat.check_request(p_user, p_req);
    v_cid      bigint;
    v_seq      bigint;
    v_last     bigint;
    v_mark     bigint;
    v_old      bigint;
    v_moved    boolean;
    v_data     jsonb;
    v_to       jsonb;
    v_senders  text[];
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    v_cid := chat.json_id(p_req -> 'conversation_id');
    IF v_cid IS NULL THEN
        RETURN chat.bad(p_req, 'conversation_id', 'a positive integer');
    END IF;
    v_seq := chat.json_int(p_req -> 'seq');
    IF v_seq IS NULL OR v_seq < 0 THEN
        RETURN chat.bad(p_req, 'seq', 'an integer >= 0');
    END IF;

    SELECT c.last_seq, CASE WHEN p_kind = 'read' THEN mb.last_read_seq
                            ELSE mb.last_delivered_seq END
    INTO v_last, v_old
    FROM chat.members mb
    JOIN chat.conversations c ON c.id = mb.conversation_id
    WHERE mb.conversation_id = v_cid AND mb.user_id = p_user;
    IF NOT FOUND THEN
        RETURN chat.err('not_found', 'conversation not found');
    END IF;
    v_seq := least(v_seq, v_last);

    IF p_kind = 'read' THEN
        UPDATE chat.members SET last_read_seq = v_seq
        WHERE conversation_id = v_cid AND user_id = p_user
          AND last_read_seq < v_seq;
        v_moved := FOUND;
        SELECT last_read_seq INTO v_mark FROM chat.members
        WHERE conversation_id = v_cid AND user_id = p_user;
        v_data := jsonb_build_object(
            'last_read_seq', v_mark,
            'unread_count', chat.unread_count(v_cid, p_user, v_mark));
    ELSE
        UPDATE chat.members SET last_delivered_seq = v_seq
        WHERE conversation_id = v_cid AND user_id = p_user
          AND last_delivered_seq < v_seq;
        v_moved := FOUND;
        v_data := '{}';
    END IF;

    IF NOT v_moved THEN
        RETURN chat.ok(v_data);
    END IF;
    IF NOT chat.is_big_group(v_cid) THEN
        v_to := chat.recipients(v_cid, p_user);
    ELSE
        -- v_old: the mark read before the update (a concurrent move of
        -- the same user's mark only widens the range).  The senders first,
        -- then their membership by key: a join could walk the whole group.
        SELECT array_agg(DISTINCT m.sender_id) INTO v_senders
        FROM (SELECT sender_id FROM chat.messages
              WHERE conversation_id = v_cid
                AND seq > least(v_old, v_seq) AND seq <= v_seq
                AND deleted_at IS NULL
              ORDER BY seq DESC LIMIT 100) m;
        SELECT jsonb_agg(t.u ORDER BY t.u COLLATE "C") INTO v_to
        FROM (SELECT p_user AS u
              UNION
              SELECT o.user_id FROM chat.members o
              WHERE o.conversation_id = v_cid
                AND o.user_id = ANY (coalesce(v_senders, '{}'))
                AND o.user_id <> ALL (coalesce(chat.block_peers(p_user),
                                               '{}'))) t;
    END IF;
    RETURN chat.ok(v_data, jsonb_build_array(jsonb_build_object(
        'to', v_to,
        'event', jsonb_build_object('type', 'receipt',
                                    'conversation_id', v_cid,
                                    'user_id', p_user,
                                    'kind', p_kind,
                                    'seq', v_seq))));
END
$$;

-- {"conversation_id", "seq"} -> {"last_read_seq", "unread_count"}
CREATE OR REPLACE FUNCTION chat.api_message_read(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
    SELECT chat.mark(p_user, p_req, 'read')
$$;

-- {"conversation_id", "seq"} -> {}
CREATE OR REPLACE FUNCTION chat.api_message_delivered(p_user text,
                                                      p_req jsonb)
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
    SELECT chat.mark(p_user, p_req, 'delivered')
$$;

-- system.message: p_sender (the service), {"conversation_id", "body",
-- "client_msg_id"?, "max_length"?} -> {"message": M}, message.created to
-- the members.  A client_msg_id makes it idempotent like a send.
CREATE OR REPLACE FUNCTION chat.api_system_message(p_sender text,
                                                   p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_err   jsonb := chat.check_request(p_sender, p_req);
    v_cid   bigint;
    v_cmid  text;
    v_max   bigint;
    v_seq   bigint;
    v_msg   chat.messages;
    v_obj   jsonb;
BEGIN
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    v_max := chat.max_length(p_req -> 'max_length');
    IF v_max IS NULL THEN
        RETURN chat.err('bad_request',
                        'max_length must be an integer from 1 to 1000000');
    END IF;
    v_cid := chat.json_id(p_req -> 'conversation_id');
    IF v_cid IS NULL THEN
        RETURN chat.bad(p_req, 'conversation_id', 'a positive integer');
    END IF;
    v_err := chat.check_body(p_req, v_max);
    IF v_err IS NOT NULL THEN
        RETURN v_err;
    END IF;
    IF coalesce(jsonb_typeof(p_req -> 'client_msg_id'), 'null') <> 'null'
    THEN
        IF jsonb_typeof(p_req -> 'client_msg_id') <> 'string'
           OR p_req ->> 'client_msg_id' = ''
        THEN
            RETURN chat.bad(p_req, 'client_msg_id', 'a non-empty string');
        END IF;
        v_cmid := p_req ->> 'client_msg_id';
        IF char_length(v_cmid) > 64 THEN
            RETURN chat.err('too_large',
                            'client_msg_id is longer than 64 characters');
        END IF;
    END IF;

    PERFORM 1 FROM chat.conversations WHERE id = v_cid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN chat.err('not_found', 'conversation not found');
    END IF;

    IF v_cmid IS NOT NULL THEN
        SELECT * INTO v_msg FROM chat.messages
        WHERE conversation_id = v_cid AND sender_id = p_sender
          AND client_msg_id = v_cmid;
        IF FOUND THEN
            RETURN chat.ok(jsonb_build_object('message',
                                              chat.message_obj(v_msg)));
        END IF;
    END IF;

    UPDATE chat.conversations
    SET last_seq = last_seq + 1, last_activity = now()
    WHERE id = v_cid
    RETURNING last_seq INTO v_seq;

    INSERT INTO chat.messages (conversation_id, seq, updated_seq, sender_id,
                               body, client_msg_id, kind)
    VALUES (v_cid, v_seq, v_seq, p_sender, p_req ->> 'body', v_cmid,
            'system')
    RETURNING * INTO v_msg;

    v_obj := chat.message_obj(v_msg);
    RETURN chat.ok(
        jsonb_build_object('message', v_obj),
        jsonb_build_array(jsonb_build_object(
            'to', chat.member_ids(v_cid),
            'event', jsonb_build_object('type', 'message.created',
                                        'message', v_obj))));
END
$$;
