-- sql/schema/0008_search.sql
-- Message full-text search (a GIN index on the 'simple' configuration: no
-- stemming, every language alike) and user search by prefix, and anywhere in
-- the name where pg_trgm can be had.
--
-- Applied once by sql/migrate.sh, in one transaction, and never edited
-- once shipped: a change is a new file.

CREATE INDEX IF NOT EXISTS messages_search_idx
    ON chat.messages USING gin (to_tsvector('simple', body))
    WHERE deleted_at IS NULL;

CREATE INDEX IF NOT EXISTS users_name_prefix_idx
    ON chat.users (lower(name) text_pattern_ops);

CREATE INDEX IF NOT EXISTS users_id_prefix_idx
    ON chat.users (lower(id) text_pattern_ops);

-- pg_trgm is a trusted extension (PostgreSQL 13+): a role that may create
-- in the database installs it; if it cannot, search still works.
DO $$
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'pg_trgm is not available (%): user search matches '
                     'name and id prefixes without a trigram index', SQLERRM;
    END;
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        EXECUTE 'CREATE INDEX IF NOT EXISTS users_name_trgm_idx '
                'ON chat.users USING gin (lower(name) gin_trgm_ops)';
    END IF;
END
$$;
