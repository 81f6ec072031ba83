-- sql/api/80_cluster.sql
-- Several nginx nodes over this database (chat_cluster on): notices, leases,
-- cross-node presence.
--
-- Part of the current API: every file of sql/api/ is applied whole, in one
-- transaction, by sql/migrate.sh on every deploy (never edit a function
-- elsewhere).  Entry points are SECURITY DEFINER with a pinned search_path
-- and are granted in 99_privileges.sql; everything else runs only inside
-- them.

-- p_req: {"payloads": [text, ...]}: one NOTIFY each, in one transaction
-- (distinct payloads are not collapsed).
CREATE OR REPLACE FUNCTION chat.api_cluster_notify(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
    SELECT jsonb_build_object('ok', jsonb_build_object('sent', count(*)),
                              'events', '[]'::jsonb)
    FROM (SELECT pg_notify('chat_cluster', p)
          FROM jsonb_array_elements_text(p_req -> 'payloads') p) n
$$;

-- p_req: {"events": [{"to", "event"}, ...]} from node p_user: too large
-- for a payload, or conversation and member events, which must not be lost.
CREATE OR REPLACE FUNCTION chat.api_cluster_outbox(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_id  bigint;
BEGIN
    INSERT INTO chat.outbox (events, origin)
    VALUES (p_req -> 'events', p_user)
    RETURNING id INTO v_id;
    PERFORM pg_notify('chat_outbox', v_id::text);
    RETURN jsonb_build_object('ok', jsonb_build_object('id', v_id),
                              'events', '[]'::jsonb);
END
$$;

-- Kept for the module of API 3 (its reader and gap reads), for one
-- release (docs/upgrading.md): this module reads rows, below.
-- p_req: {"ranges": [[conversation id, after, before], ...]}: the message
-- changes with after < updated_seq < before of each, oldest first, each as
-- its last change (as sync), routed to the members who may see its sender
-- (for many conversations at once; a worker's gap reads call it too); ok.heads:
-- [[conversation id, its last_seq (0: no such one)], ...], so that a node
-- never waits for numbers a notice claimed but nobody made.
CREATE OR REPLACE FUNCTION chat.api_cluster_changes(p_user text,
                                                    p_req jsonb)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
    WITH r AS (
        SELECT (x ->> 0)::bigint AS cid, (x ->> 1)::bigint AS after,
               (x ->> 2)::bigint AS before
        FROM jsonb_array_elements(p_req -> 'ranges') x
    ), heads AS (
        SELECT coalesce(jsonb_agg(jsonb_build_array(
                            r.cid, coalesce(c.last_seq, 0))),
                        '[]'::jsonb) AS ids
        FROM r LEFT JOIN chat.conversations c ON c.id = r.cid
    ), mem AS (
        SELECT r.cid, coalesce(jsonb_agg(m.user_id ORDER BY m.user_id)
                               FILTER (WHERE m.user_id IS NOT NULL),
                               '[]'::jsonb) AS ids
        FROM r LEFT JOIN chat.members m ON m.conversation_id = r.cid
        GROUP BY r.cid
    )
    SELECT jsonb_build_object(
        'ok', jsonb_build_object('heads', (SELECT ids FROM heads)),
        'events', coalesce(jsonb_agg(jsonb_build_object(
            -- the members once per conversation, again for a sender with
            -- blocks (those blocked either way do not hear the message)
            'to', CASE WHEN cardinality(chat.block_peers(msg.sender_id)) = 0
                       THEN mem.ids
                       ELSE chat.recipients(msg.conversation_id,
                                            msg.sender_id) END,
            'event', jsonb_build_object(
                'type', CASE WHEN msg.deleted_at IS NOT NULL
                             THEN 'message.deleted'
                             WHEN msg.seq > r.after THEN 'message.created'
                             ELSE 'message.updated' END,
                'message', chat.message_obj(msg)))
            ORDER BY msg.conversation_id, msg.updated_seq), '[]'::jsonb))
    FROM r
    JOIN mem ON mem.cid = r.cid
    JOIN chat.messages msg
      ON msg.conversation_id = r.cid
     AND msg.updated_seq > r.after
     AND msg.updated_seq < r.before
$$;

-- p_req: {"ranges": [[conversation id, after, before], ...]}: the message
-- changes with after < updated_seq < before of each, oldest first, each as
-- its last change (as sync), for many conversations at once (the node's
-- reader, and a worker's gap reads).  Rows, not JSON: the module builds the
-- events from the columns (building and parsing JSON cost ten times the
-- read).  First one head row per range: cid and head, the conversation's
-- last_seq (0: no such one), so that a node never waits for numbers a
-- notice claimed but nobody made.  Then the changes, each with its event
-- type; members: the conversation's members (bytewise order), on its first
-- change only; recipients: on a change whose sender has blocks, the members
-- who may see it (chat.recipients), else NULL (the members).
CREATE OR REPLACE FUNCTION chat.api_cluster_change_rows(p_user text,
                                                        p_req jsonb)
RETURNS TABLE (cid bigint, head bigint, type text, id bigint, seq bigint,
               sender_id text, body text, client_msg_id text,
               attachments jsonb, reply_to bigint, created_at text,
               edited_at text, deleted boolean, updated_seq bigint,
               system boolean, members text[], recipients text[])
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
    WITH r AS (
        SELECT (x ->> 0)::bigint AS cid, (x ->> 1)::bigint AS after,
               (x ->> 2)::bigint AS before
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(p_req -> 'ranges')
                                            = 'array'
                                       THEN p_req -> 'ranges'
                                       ELSE '[]'::jsonb END) x
    ), heads AS (
        SELECT r.cid, coalesce(c.last_seq, 0) AS head
        FROM r LEFT JOIN chat.conversations c ON c.id = r.cid
    ), changes AS (
        SELECT msg.*, r.after,
               row_number() OVER (PARTITION BY msg.conversation_id
                                  ORDER BY msg.updated_seq) AS nth
        FROM r
        JOIN chat.messages msg
          ON msg.conversation_id = r.cid
         AND msg.updated_seq > r.after
         AND msg.updated_seq < r.before
    )
    SELECT h.cid, h.head, NULL::text, NULL::bigint, NULL::bigint,
           NULL::text, NULL::text, NULL::text, NULL::jsonb, NULL::bigint,
           NULL::text, NULL::text, NULL::boolean, NULL::bigint,
           NULL::boolean, NULL::text[], NULL::text[]
    FROM heads h
    UNION ALL
    SELECT * FROM (
        SELECT m.conversation_id, NULL::bigint,
               CASE WHEN m.deleted_at IS NOT NULL THEN 'message.deleted'
                    WHEN m.seq > m.after THEN 'message.created'
                    ELSE 'message.updated' END,
               m.id, m.seq, m.sender_id,
               CASE WHEN m.deleted_at IS NULL THEN m.body END,
               m.client_msg_id,
               CASE WHEN m.deleted_at IS NULL THEN m.attachments
                    ELSE '[]'::jsonb END,
               m.reply_to, chat.fmt_time(m.created_at),
               chat.fmt_time(m.edited_at), m.deleted_at IS NOT NULL,
               m.updated_seq, m.kind = 'system',
               CASE WHEN m.nth = 1 THEN
                   ARRAY(SELECT mb.user_id FROM chat.members mb
                         WHERE mb.conversation_id = m.conversation_id
                         ORDER BY mb.user_id COLLATE "C") END,
               CASE WHEN cardinality(chat.block_peers(m.sender_id)) > 0 THEN
                   ARRAY(SELECT jsonb_array_elements_text(
                             chat.recipients(m.conversation_id,
                                             m.sender_id))) END
        FROM changes m
        ORDER BY m.conversation_id, m.updated_seq) c
$$;

-- The users listed for nodes p_nodes (before p_before, if given) are let
-- go; those no other live node holds go offline: their presence events.
CREATE OR REPLACE FUNCTION chat.cluster_forget(p_nodes text[],
                                               p_before timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    v_user    text;
    v_events  jsonb := '[]'::jsonb;
BEGIN
    FOR v_user IN
        WITH left_users AS (
            DELETE FROM chat.cluster_presence
            WHERE node_id = ANY (p_nodes)
              AND (p_before IS NULL OR since < p_before)
            RETURNING user_id)
        SELECT DISTINCT l.user_id FROM left_users l
        WHERE NOT EXISTS (
            SELECT 1 FROM chat.cluster_presence p
            JOIN chat.cluster_nodes n ON n.node_id = p.node_id
            WHERE p.user_id = l.user_id
              AND NOT (p.node_id = ANY (p_nodes))
              AND n.expires_at >= now())
    LOOP
        v_events := v_events || (chat.presence_event(v_user,
            jsonb_build_object('online', false,
                               'last_seen', chat.fmt_time(now())))
            -> 'events');
    END LOOP;
    RETURN v_events;
END
$$;

-- The node's round trip, every few seconds on its listening connection:
-- p_user is the node, p_req {"lease": seconds, "heads": [[id, seq], ...]}.
-- Renews the lease; answers the conversations among heads that went past
-- seq ("ahead": [[id, last_seq]]), the live nodes, and, for the nodes whose
-- lease expired (removed here, by whichever node comes first), the
-- presence events of their users that no live node holds.
CREATE OR REPLACE FUNCTION chat.api_cluster_tick(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_lease   int   := greatest(coalesce(chat.json_int(p_req -> 'lease'), 10),
                                1);
    v_ahead   jsonb;
    v_live    jsonb;
    v_events  jsonb := '[]'::jsonb;
    v_gone    text[];
    v_user    text;
    v_new     boolean;
BEGIN
    -- soft state: a lost lease renewal is made good by the next one
    SET LOCAL synchronous_commit = off;

    -- (xmax = 0: inserted, so the node was taken for dead meanwhile and
    -- its users were let go: it claims them again)
    INSERT INTO chat.cluster_nodes AS n (node_id, expires_at)
    VALUES (p_user, now() + make_interval(secs => v_lease))
    ON CONFLICT (node_id) DO UPDATE
        SET expires_at = excluded.expires_at
    RETURNING (xmax = 0) INTO v_new;

    WITH gone AS (
        DELETE FROM chat.cluster_nodes
        WHERE expires_at < now() AND node_id <> p_user
        RETURNING node_id)
    SELECT array_agg(node_id) INTO v_gone FROM gone;

    IF v_gone IS NOT NULL THEN
        v_events := chat.cluster_forget(v_gone, NULL);
    END IF;

    SELECT coalesce(jsonb_agg(jsonb_build_array(c.id, c.last_seq)),
                    '[]'::jsonb)
    INTO v_ahead
    FROM jsonb_array_elements(coalesce(p_req -> 'heads', '[]')) h
    JOIN chat.conversations c ON c.id = (h ->> 0)::bigint
    WHERE c.last_seq > (h ->> 1)::bigint;

    SELECT jsonb_agg(node_id ORDER BY node_id) INTO v_live
    FROM chat.cluster_nodes;

    RETURN jsonb_build_object(
        'ok', jsonb_build_object('ahead', v_ahead, 'new', v_new,
                                 'live', coalesce(v_live, '[]'::jsonb),
                                 'gone', coalesce(to_jsonb(v_gone),
                                                  '[]'::jsonb)),
        'events', v_events);
END
$$;

-- A user's first connection on node p_req.node, or (online false) the
-- end of the last one there (O(1) per user: the rows of one user).
-- Presence events (to the watchers) come only when the user's
-- state across live nodes changes; one lock per user keeps two nodes from
-- both staying silent (or both speaking) at once.
CREATE OR REPLACE FUNCTION chat.api_cluster_presence(p_user text,
                                                     p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_node    text    := p_req ->> 'node';
    v_online  boolean := coalesce((p_req ->> 'online')::boolean, false);
    v_other   boolean;
BEGIN
    SET LOCAL synchronous_commit = off;
    PERFORM pg_advisory_xact_lock(hashtext('chat.presence'),
                                  hashtext(p_user));

    IF v_online THEN
        INSERT INTO chat.cluster_presence (user_id, node_id)
        VALUES (p_user, v_node) ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM chat.cluster_presence
        WHERE user_id = p_user AND node_id = v_node;
    END IF;

    SELECT EXISTS (
        SELECT 1 FROM chat.cluster_presence p
        JOIN chat.cluster_nodes n ON n.node_id = p.node_id
        WHERE p.user_id = p_user AND p.node_id <> v_node
          AND n.expires_at >= now())
    INTO v_other;

    IF v_other THEN
        RETURN jsonb_build_object('ok', '{}'::jsonb, 'events', '[]'::jsonb);
    END IF;

    -- to the watchers, wherever they are: no audience is read
    RETURN chat.presence_event(p_user, p_req - 'node');
END
$$;

-- Who is online on the other live nodes: [[user id, node id], ...], for a
-- node that starts or lost its listening connection.
CREATE OR REPLACE FUNCTION chat.api_cluster_online(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
    SELECT jsonb_build_object('ok', jsonb_build_object('online',
               coalesce(jsonb_agg(jsonb_build_array(p.user_id, p.node_id)),
                        '[]'::jsonb)),
           'events', '[]'::jsonb)
    FROM chat.cluster_presence p
    JOIN chat.cluster_nodes n ON n.node_id = p.node_id
    WHERE p.node_id <> p_user AND n.expires_at >= now()
$$;

-- p_req {"users": [...]}: users with connections on node p_user, claimed
-- again after the node was taken for dead; those no other node held come
-- online for their peers.
CREATE OR REPLACE FUNCTION chat.api_cluster_claim(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
DECLARE
    v_user    text;
    v_events  jsonb := '[]'::jsonb;
BEGIN
    FOR v_user IN
        SELECT DISTINCT u FROM jsonb_array_elements_text(p_req -> 'users') u
    LOOP
        v_events := v_events || coalesce(chat.api_cluster_presence(v_user,
            jsonb_build_object('node', p_user, 'online', true,
                               'last_seen', NULL)) -> 'events', '[]'::jsonb);
    END LOOP;
    RETURN jsonb_build_object('ok', '{}'::jsonb, 'events', v_events);
END
$$;

-- A node that starts (p_req {"started": epoch seconds}) forgets what an
-- earlier run of it listed; those users go offline for their peers.
CREATE OR REPLACE FUNCTION chat.api_cluster_join(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, chat, pg_temp
AS $$
BEGIN
    RETURN jsonb_build_object('ok', '{}'::jsonb,
        'events', chat.cluster_forget(ARRAY[p_user],
                      to_timestamp(coalesce(
                          chat.json_int(p_req -> 'started'), 0))));
END
$$;
