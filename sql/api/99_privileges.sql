-- sql/api/99_privileges.sql
-- Who may call what.  Applied last, with the rest of the API, so that a
-- function is never callable by anyone it is not granted to here, and the
-- grants follow every function that is replaced.
--
-- Roles (sql/roles.sql creates them): the owner (chat_owner) owns schema chat
-- and everything in it and runs the migrations; chat_runtime is what nginx's
-- login role is a member of; chat_host is what the host application's role
-- is a member of.  The entry points granted below are SECURITY DEFINER with
-- search_path pinned: they run as the owner, so neither group can read or
-- write a table directly, and tables added later never need a grant.

-- Functions of earlier releases that are no longer part of the API
DROP FUNCTION IF EXISTS chat.send_one(text, jsonb, bigint);
-- presence goes to watchers: no audience per change (chat.presence_event)
DROP FUNCTION IF EXISTS chat.api_presence(text, jsonb);
-- attachments of uploads, links only for nginx's hosts (API 5): the
-- signatures without the hosts
DROP FUNCTION IF EXISTS chat.check_attachments(jsonb);
DROP FUNCTION IF EXISTS chat.api_message_send_rows(text[], bigint[], text[],
                                                   text[], jsonb[], bigint[]);

-- Nothing in schema chat is open to PUBLIC (a new function is, until this
-- file runs in the same transaction); the two groups start from nothing.
REVOKE ALL ON SCHEMA chat FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA chat FROM PUBLIC, chat_runtime, chat_host;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA chat
    FROM PUBLIC, chat_runtime, chat_host;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA chat
    FROM PUBLIC, chat_runtime, chat_host;

GRANT USAGE ON SCHEMA chat TO chat_runtime, chat_host;

-- nginx: the versions it checks at connect and exactly the statements of
-- src/ngx_http_chat_sql.c (t/test_migrate.py holds the two lists equal)
GRANT EXECUTE ON FUNCTION
    chat.schema_version,
    chat.api_version,
    chat.api_block,
    chat.api_blocks,
    chat.api_cluster_change_rows,
    chat.api_cluster_claim,
    chat.api_cluster_join,
    chat.api_cluster_notify,
    chat.api_cluster_online,
    chat.api_cluster_outbox,
    chat.api_cluster_presence,
    chat.api_cluster_tick,
    chat.api_contact_add,
    chat.api_contact_remove,
    chat.api_contacts,
    chat.api_conversation_create,
    chat.api_conversation_get,
    chat.api_conversation_list,
    chat.api_conversation_members,
    chat.api_conversation_update,
    chat.api_file_get,
    chat.api_member_add,
    chat.api_member_flag,
    chat.api_member_remove,
    chat.api_message_delete,
    chat.api_message_delivered,
    chat.api_message_edit,
    chat.api_message_read,
    chat.api_message_send_rows,
    chat.api_messages_history,
    chat.api_messages_search,
    chat.api_outbox,
    chat.api_outbox_trim,
    chat.api_presence_audience,
    chat.api_presence_members,
    chat.api_session_hello,
    chat.api_sync,
    chat.api_system_message,
    chat.api_typing,
    chat.api_unblock,
    chat.api_unread,
    chat.api_upload_create,
    chat.api_upload_sweep,
    chat.api_user_upsert,
    chat.api_users_search
TO chat_runtime;

-- what the module of API 3 calls and this one no longer does: kept, for
-- one release, for the old workers of a rolling upgrade (docs/upgrading.md)
GRANT EXECUTE ON FUNCTION
    chat.api_changes,
    chat.api_cluster_changes
TO chat_runtime;

-- the host application: its SQL API, inside its own transactions
GRANT EXECUTE ON FUNCTION
    chat.create_conversation,
    chat.add_member,
    chat.post_message,
    chat.delete_user_uploads
TO chat_host;
