-- 0009_service: system messages, posted by a service identity (a token
-- with chat_service_claim) or by the host application's SQL, in any
-- conversation, without being a member.  A system message is a Message
-- with "system": true; its sender_id is the service's id.
-- Safe to re-run.
--
--   psql -v ON_ERROR_STOP=1 -d app -f sql/0009_service.sql

BEGIN;

-- 0002's Message object, with "system": true on system messages only (so
-- that the object of every other message stays as it was).
CREATE OR REPLACE FUNCTION chat.message_obj(m chat.messages) RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT jsonb_build_object(
        'id',              m.id,
        'conversation_id', m.conversation_id,
        'seq',             m.seq,
        'sender_id',       m.sender_id,
        'body',            CASE WHEN m.deleted_at IS NULL THEN m.body END,
        'client_msg_id',   m.client_msg_id,
        'attachments',     CASE WHEN m.deleted_at IS NULL
                                THEN m.attachments ELSE '[]'::jsonb END,
        'reply_to',        m.reply_to,
        'created_at',      chat.fmt_time(m.created_at),
        'edited_at',       chat.fmt_time(m.edited_at),
        'deleted',         m.deleted_at IS NOT NULL,
        'updated_seq',     m.updated_seq)
        || CASE WHEN m.kind = 'system' THEN '{"system": true}'::jsonb
                ELSE '{}'::jsonb END
$$;

-- ------------------------------------------------------------------------
-- system.message: p_sender (the service), {"conversation_id", "body",
-- "client_msg_id"?, "max_length"?} -> {"message": M}, message.created to
-- the members.  A client_msg_id makes it idempotent like a send.

CREATE OR REPLACE FUNCTION chat.api_system_message(p_sender text,
                                                   p_req jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
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

INSERT INTO chat.schema_migrations (version, name)
VALUES (9, '0009_service')
ON CONFLICT DO NOTHING;

COMMIT;
