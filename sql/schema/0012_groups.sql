-- sql/schema/0012_groups.sql
-- Big groups: the members of a conversation in their order (joining time,
-- owners first among those who joined together, then the id), so that a
-- Conversation object's first members and the pages of conversation.members
-- are read from an index, never by sorting the whole group.
--
-- Applied once by sql/migrate.sh, in one transaction, and never edited
-- once shipped: a change is a new file.

-- The expression of the role is the one the SQL API orders by
-- (chat.conversation_obj_capped, chat.api_conversation_members): they must
-- stay the same for the index to serve them.
CREATE INDEX IF NOT EXISTS members_order_idx
    ON chat.members (conversation_id, joined_at,
                     array_position(ARRAY['owner', 'admin', 'member'], role),
                     user_id COLLATE "C");
