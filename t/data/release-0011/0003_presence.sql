-- 0003_presence: who hears that a user came online or went offline.
--
-- Presence itself (connections, last seen) lives in nginx's shared memory
-- zone, not here; the module asks only who the audience is: the users who
-- share a conversation with the user, minus blocks in either direction.
-- Safe to re-run.
--
--   psql -v ON_ERROR_STOP=1 -d app -f sql/0003_presence.sql

BEGIN;

-- p_req: {"user_id": the user, "online": bool, "last_seen": text | null}
-- (the module passes p_user = user_id).  Returns the presence event routed
-- to the user's peers; no error is expected.
CREATE OR REPLACE FUNCTION chat.api_presence(p_user text, p_req jsonb)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT jsonb_build_object(
        'ok', '{}'::jsonb,
        'events', CASE WHEN peers.ids IS NULL THEN '[]'::jsonb
                  ELSE jsonb_build_array(jsonb_build_object(
                      'to', peers.ids,
                      'event', jsonb_build_object(
                          'type', 'presence',
                          'user_id', p_user,
                          'online', coalesce((p_req->>'online')::boolean,
                                             false),
                          'last_seen', p_req->'last_seen')))
                  END)
    FROM (
        SELECT jsonb_agg(DISTINCT other.user_id ORDER BY other.user_id) AS ids
        FROM chat.members mine
        JOIN chat.members other
          ON other.conversation_id = mine.conversation_id
         AND other.user_id <> p_user
        WHERE mine.user_id = p_user
          AND NOT chat.is_blocked(p_user, other.user_id)
    ) peers
$$;

INSERT INTO chat.schema_migrations (version, name)
VALUES (3, '0003_presence')
ON CONFLICT DO NOTHING;

COMMIT;
