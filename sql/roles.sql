-- sql/roles.sql: the database roles of the chat, made once per database by
-- a superuser, before the first sql/migrate.sh:
--
--   sudo -u postgres psql -X -v ON_ERROR_STOP=1 -d app -f sql/roles.sql \
--       -v owner_password="$(cat owner.pw)" -v nginx_password="$(cat nginx.pw)" \
--       -v host_role=app
--
-- Every variable is optional; without a password a role keeps the one it
-- has (or none: it then cannot log in with a password).  Safe to re-run.
--
--   chat_owner    LOGIN; owns schema chat and everything in it; runs
--                 sql/migrate.sh.  Never a superuser.
--   chat_runtime  NOLOGIN group: EXECUTE on the functions nginx calls
--                 (granted by sql/api/99_privileges.sql), nothing else.
--   chat_nginx    LOGIN, member of chat_runtime: the user of nginx's
--                 chat_postgres connection string.
--   chat_host     NOLOGIN group: EXECUTE on the host application's SQL API
--                 (chat.create_conversation, chat.add_member,
--                 chat.post_message); host_role, if given, is made a member.
--
-- A database whose schema chat was made by an earlier release (its objects
-- owned by whoever applied the files) has them handed to chat_owner here.
--
-- Passwords are sent to the server as given and stored as the server's
-- password_encryption says (scram-sha-256 by default): keep this session
-- out of statement logging if log_statement is 'all'.

SET client_min_messages = warning;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'chat_owner') THEN
        CREATE ROLE chat_owner LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'chat_runtime') THEN
        CREATE ROLE chat_runtime NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'chat_host') THEN
        CREATE ROLE chat_host NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'chat_nginx') THEN
        CREATE ROLE chat_nginx LOGIN;
    END IF;
END
$$;

-- whatever they were made with before, these are what they are
ALTER ROLE chat_owner NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
ALTER ROLE chat_nginx NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS INHERIT;
GRANT chat_runtime TO chat_nginx;

\if :{?owner_password}
SELECT format('ALTER ROLE chat_owner PASSWORD %L', :'owner_password') \gexec
\endif
\if :{?nginx_password}
SELECT format('ALTER ROLE chat_nginx PASSWORD %L', :'nginx_password') \gexec
\endif
\if :{?host_role}
SELECT format('GRANT chat_host TO %I', :'host_role') \gexec
\endif

-- The schema is the owner's; pg_trgm (user search anywhere in a name) is
-- installed here, where the rights to do so are, when the server has it.
CREATE SCHEMA IF NOT EXISTS chat AUTHORIZATION chat_owner;

DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'pg_trgm is not available (%): user search matches name '
                  'and id prefixes only', SQLERRM;
END
$$;

-- Everything already in schema chat becomes the owner's.  ALTER TABLE takes
-- the table's indexes and identity sequences along.
DO $$
DECLARE
    r  record;
BEGIN
    EXECUTE 'ALTER SCHEMA chat OWNER TO chat_owner';
    FOR r IN
        SELECT c.oid::regclass AS name, c.relkind
        FROM pg_class c
        WHERE c.relnamespace = 'chat'::regnamespace
          AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND c.relowner <> 'chat_owner'::regrole
          AND NOT EXISTS (SELECT FROM pg_depend d
                          WHERE d.classid = 'pg_class'::regclass
                            AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO chat_owner',
                       CASE r.relkind WHEN 'S' THEN 'SEQUENCE'
                                      WHEN 'v' THEN 'VIEW'
                                      WHEN 'm' THEN 'MATERIALIZED VIEW'
                                      WHEN 'f' THEN 'FOREIGN TABLE'
                                      ELSE 'TABLE' END, r.name);
    END LOOP;
    FOR r IN
        SELECT p.oid::regprocedure AS name
        FROM pg_proc p
        WHERE p.pronamespace = 'chat'::regnamespace
          AND p.proowner <> 'chat_owner'::regrole
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO chat_owner', r.name);
    END LOOP;
END
$$;

-- A function the owner makes is nobody else's to call until
-- sql/api/99_privileges.sql grants it.
ALTER DEFAULT PRIVILEGES FOR ROLE chat_owner
    REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
