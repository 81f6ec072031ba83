-- sql/api/90_dispatch.sql
-- chat.api(user, type, request): the WebSocket request types in one entry
-- point.  Not called by the module (it prepares one statement per type);
-- kept for scripts and tests.
--
-- Part of the current API: every file of sql/api/ is applied whole, in one
-- transaction, by sql/migrate.sh on every deploy (never edit a function
-- elsewhere).  Entry points are SECURITY DEFINER with a pinned search_path
-- and are granted in 99_privileges.sql; everything else runs only inside
-- them.

-- Only the protocol's client requests: user.upsert, block and unblock are
-- not reachable here.
CREATE OR REPLACE FUNCTION chat.api(p_user text, p_type text, p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
BEGIN
    RETURN CASE p_type
        WHEN 'conversation.create' THEN
            chat.api_conversation_create(p_user, p_req)
        WHEN 'conversation.list' THEN
            chat.api_conversation_list(p_user, p_req)
        WHEN 'conversation.members' THEN
            chat.api_conversation_members(p_user, p_req)
        WHEN 'messages.history' THEN
            chat.api_messages_history(p_user, p_req)
        WHEN 'message.send' THEN chat.api_message_send(p_user, p_req)
        WHEN 'message.edit' THEN chat.api_message_edit(p_user, p_req)
        WHEN 'message.delete' THEN chat.api_message_delete(p_user, p_req)
        WHEN 'message.read' THEN chat.api_message_read(p_user, p_req)
        WHEN 'message.delivered' THEN
            chat.api_message_delivered(p_user, p_req)
        WHEN 'typing' THEN chat.api_typing(p_user, p_req)
        WHEN 'sync' THEN chat.api_sync(p_user, p_req)
        ELSE chat.err('bad_request', 'unknown type')
    END;
END
$$;
