-- 0004_order: the changes of a conversation between two sequence numbers,
-- for a worker that saw a later change before an earlier one (events from
-- several workers and PostgreSQL connections may arrive out of order) and
-- waited long enough for the missing one.  Safe to re-run.
--
--   psql -v ON_ERROR_STOP=1 -d app -f sql/0004_order.sql

BEGIN;

-- p_req: {"conversation_id": id, "after": n, "before": m}.  Returns the
-- changes with after < updated_seq < before, oldest first, each routed to
-- the conversation's members, in the current state of the message: a
-- number whose change was superseded by a later one has none (the later
-- event carries the message).  p_user is unused (the module is asking).
CREATE OR REPLACE FUNCTION chat.api_changes(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    WITH arg AS (
        SELECT (p_req->>'conversation_id')::bigint AS cid,
               (p_req->>'after')::bigint AS after,
               (p_req->>'before')::bigint AS before
    ), mem AS (
        SELECT coalesce(jsonb_agg(m.user_id ORDER BY m.user_id),
                        '[]'::jsonb) AS ids
        FROM chat.members m, arg
        WHERE m.conversation_id = arg.cid
    )
    SELECT jsonb_build_object(
        'ok', '{}'::jsonb,
        'events', coalesce(jsonb_agg(jsonb_build_object(
            'to', mem.ids,
            'event', jsonb_build_object(
                'type', CASE WHEN msg.seq > arg.after THEN 'message.created'
                             WHEN msg.deleted_at IS NOT NULL
                             THEN 'message.deleted'
                             ELSE 'message.updated' END,
                'message', chat.message_obj(msg)))
            ORDER BY msg.updated_seq) FILTER (WHERE msg.id IS NOT NULL),
            '[]'::jsonb))
    FROM arg CROSS JOIN mem
    LEFT JOIN chat.messages msg
      ON msg.conversation_id = arg.cid
     AND msg.updated_seq > arg.after
     AND msg.updated_seq < arg.before
    GROUP BY mem.ids
$$;

INSERT INTO chat.schema_migrations (version, name)
VALUES (4, '0004_order')
ON CONFLICT DO NOTHING;

COMMIT;
