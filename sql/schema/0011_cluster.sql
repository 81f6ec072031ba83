-- sql/schema/0011_cluster.sql
-- Several nginx nodes over this database: each node's lease and the users it
-- holds connections of; the origin of outbox rows.
--
-- Applied once by sql/migrate.sh, in one transaction, and never edited
-- once shipped: a change is a new file.

ALTER TABLE chat.outbox ADD COLUMN IF NOT EXISTS origin text;

CREATE TABLE IF NOT EXISTS chat.cluster_nodes (
    node_id     text        PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS chat.cluster_presence (
    user_id     text        NOT NULL,
    node_id     text        NOT NULL,
    since       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, node_id)
);

CREATE INDEX IF NOT EXISTS cluster_presence_node_idx
    ON chat.cluster_presence (node_id);
