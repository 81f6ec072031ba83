-- sql/schema/0013_sends.sql
-- Messages without a foreign key to their conversation.
--
-- Every message is written by the SQL API under its conversation's row
-- lock, once the conversation was found (chat.api_message_send_rows writes
-- only to conversations its first statement locked; chat.api_system_message
-- locks the conversation first), so the key's check never failed; but it
-- ran for every row (a query and a row lock per message), about a third of
-- a batched insert's cost.  Deleting a conversation still deletes its
-- messages: the trigger of sql/api/30_messages.sql does what ON DELETE
-- CASCADE did.

ALTER TABLE chat.messages
    DROP CONSTRAINT IF EXISTS messages_conversation_id_fkey;
