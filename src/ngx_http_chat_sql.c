
/*
 * The SQL API the module calls: one prepared statement per chat.api_*
 * entry point (sql/api/), prepared by every PostgreSQL connection of the
 * pool.  Data only: the pool is handed the table at init, and whoever
 * queries names a statement by its NGX_HTTP_CHAT_STMT_* index.  The
 * grants of sql/api/99_privileges.sql list the same functions
 * (t/test_migrate.py compares them).
 */


#include <ngx_http_chat.h>


/*
 * changes of other nodes as rows: the columns in the order order.c reads,
 * a Message's (id ... system) as the send's (message.h)
 */
#define NGX_HTTP_CHAT_SQL_CHANGE_ROWS                                       \
    "SELECT cid, head, type, sender_id, client_msg_id, id, seq, body, "     \
    "attachments, reply_to, created_at, edited_at, deleted, updated_seq, " \
    "system, members, recipients " \
    "FROM chat.api_cluster_change_rows($1, $2::jsonb)"


/* by stmt: the pool refuses a hole at init */

static ngx_http_chat_pg_stmt_t
    ngx_http_chat_sql_stmts[NGX_HTTP_CHAT_STMTS] = {

    [NGX_HTTP_CHAT_STMT_USER_UPSERT] =
        { "chat_user_upsert",
          "SELECT chat.api_user_upsert($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_CONVERSATION_CREATE] =
        { "chat_conversation_create",
          "SELECT chat.api_conversation_create($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_CONVERSATION_LIST] =
        { "chat_conversation_list",
          "SELECT chat.api_conversation_list($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_HISTORY] =
        { "chat_messages_history",
          "SELECT chat.api_messages_history($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_EDIT] =
        { "chat_message_edit",
          "SELECT chat.api_message_edit($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_DELETE] =
        { "chat_message_delete",
          "SELECT chat.api_message_delete($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_READ] =
        { "chat_message_read",
          "SELECT chat.api_message_read($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_DELIVERED] =
        { "chat_message_delivered",
          "SELECT chat.api_message_delivered($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_SYNC] =
        { "chat_sync",
          "SELECT chat.api_sync($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_SEND] =
        { "chat_message_send_batch",
          "SELECT ord, code, message, id, seq, body, attachments, reply_to, "
                 "created_at, edited_at, deleted, updated_seq, system, "
                 "recipients "
          "FROM chat.api_message_send_rows($1::text[], $2::bigint[], "
                 "$3::text[], $4::text[], $5::jsonb[], $6::bigint[], "
                 "$7::text[])", 7 },
    [NGX_HTTP_CHAT_STMT_TYPING] =
        { "chat_typing",
          "SELECT chat.api_typing($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_SESSION_HELLO] =
        { "chat_session_hello",
          "SELECT chat.api_session_hello($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_CONVERSATION_GET] =
        { "chat_conversation_get",
          "SELECT chat.api_conversation_get($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_CONVERSATION_MEMBERS] =
        { "chat_conversation_members",
          "SELECT chat.api_conversation_members($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_BLOCK] =
        { "chat_block",
          "SELECT chat.api_block($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_UNBLOCK] =
        { "chat_unblock",
          "SELECT chat.api_unblock($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_UNREAD] =
        { "chat_unread",
          "SELECT chat.api_unread($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_BLOCKS] =
        { "chat_blocks",
          "SELECT chat.api_blocks($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_MEMBER_FLAG] =
        { "chat_member_flag",
          "SELECT chat.api_member_flag($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_CONTACTS] =
        { "chat_contacts",
          "SELECT chat.api_contacts($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_CONTACT_ADD] =
        { "chat_contact_add",
          "SELECT chat.api_contact_add($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_CONTACT_REMOVE] =
        { "chat_contact_remove",
          "SELECT chat.api_contact_remove($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_CONVERSATION_UPDATE] =
        { "chat_conversation_update",
          "SELECT chat.api_conversation_update($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_MEMBER_ADD] =
        { "chat_member_add",
          "SELECT chat.api_member_add($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_MEMBER_REMOVE] =
        { "chat_member_remove",
          "SELECT chat.api_member_remove($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_MESSAGES_SEARCH] =
        { "chat_messages_search",
          "SELECT chat.api_messages_search($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_USERS_SEARCH] =
        { "chat_users_search",
          "SELECT chat.api_users_search($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_SYSTEM_MESSAGE] =
        { "chat_system_message",
          "SELECT chat.api_system_message($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_OUTBOX] =
        { "chat_outbox",
          "SELECT chat.api_outbox($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_OUTBOX_TRIM] =
        { "chat_outbox_trim",
          "SELECT chat.api_outbox_trim($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_CLUSTER_NOTIFY] =
        { "chat_cluster_notify",
          "SELECT chat.api_cluster_notify($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_CLUSTER_OUTBOX] =
        { "chat_cluster_outbox",
          "SELECT chat.api_cluster_outbox($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_CLUSTER_CHANGES] =
        { "chat_cluster_changes", NGX_HTTP_CHAT_SQL_CHANGE_ROWS, 2 },
    /* the same call for a worker's gap reads (order.c): a name of its own
     * so that its counts are told apart from the cluster reader's */
    [NGX_HTTP_CHAT_STMT_GAP_CHANGES] =
        { "chat_gap_changes", NGX_HTTP_CHAT_SQL_CHANGE_ROWS, 2 },
    [NGX_HTTP_CHAT_STMT_CLUSTER_TICK] =
        { "chat_cluster_tick",
          "SELECT chat.api_cluster_tick($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_CLUSTER_PRESENCE] =
        { "chat_cluster_presence",
          "SELECT chat.api_cluster_presence($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_CLUSTER_ONLINE] =
        { "chat_cluster_online",
          "SELECT chat.api_cluster_online($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_CLUSTER_CLAIM] =
        { "chat_cluster_claim",
          "SELECT chat.api_cluster_claim($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_CLUSTER_JOIN] =
        { "chat_cluster_join",
          "SELECT chat.api_cluster_join($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_PRESENCE_AUDIENCE] =
        { "chat_presence_audience",
          "SELECT chat.api_presence_audience($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_PRESENCE_MEMBERS] =
        { "chat_presence_members",
          "SELECT chat.api_presence_members($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_UPLOAD_CREATE] =
        { "chat_upload_create",
          "SELECT chat.api_upload_create($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_FILE_GET] =
        { "chat_file_get",
          "SELECT chat.api_file_get($1, $2::jsonb)", 2 },
    [NGX_HTTP_CHAT_STMT_UPLOAD_SWEEP] =
        { "chat_upload_sweep",
          "SELECT chat.api_upload_sweep($1, $2::jsonb)", 2 }
};


ngx_http_chat_pg_stmt_t *
ngx_http_chat_sql_statements(ngx_uint_t *n)
{
    *n = NGX_HTTP_CHAT_STMTS;

    return ngx_http_chat_sql_stmts;
}
