#!/usr/bin/env bash
# Brings the chat schema and its SQL API of one database up to date:
#
#   sql/migrate.sh "host=127.0.0.1 dbname=app user=chat_owner"
#
# Run it as the owner of schema chat (sql/roles.sql makes chat_owner), never
# as a superuser: the API's entry points are SECURITY DEFINER and run as the
# role that made them.  Safe to run at any time, while nginx serves traffic
# too, and from several places at once (an advisory lock takes turns).
#
# 1. Each file of schema/ whose number is not yet in chat.schema_migrations
#    is applied in a transaction of its own, recorded in the same one.
#    These take locks on tables in use: with lock_timeout they give way to
#    the traffic instead of queueing it behind them, and are tried again.
# 2. Every file of api/ is applied, all of them in ONE transaction: nobody
#    ever sees a function missing, or a new caller next to an old callee.
#
# The connection string is libpq's (a URI works too); PGPASSWORD, a
# passfile= or ~/.pgpass give the password.  MIGRATE_LOCK_TIMEOUT (default
# 2s) and MIGRATE_TRIES (default 30) tune step 1.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

[ $# -eq 1 ] || { echo "usage: $0 CONNINFO" >&2; exit 2; }
conninfo=$1
lock_timeout=${MIGRATE_LOCK_TIMEOUT:-2s}
tries=${MIGRATE_TRIES:-30}

psql_bin=$(command -v psql || true)
if [ -z "$psql_bin" ]; then
    psql_bin=$(ls -d /usr/lib/postgresql/*/bin/psql 2>/dev/null | tail -n 1)
fi
[ -n "$psql_bin" ] || {
    echo "migrate: psql is missing (apt-get install postgresql-client)" >&2
    exit 1
}

say() { echo "migrate: $*"; }
die() { echo "migrate: $*" >&2; exit 1; }

# -X: no ~/.psqlrc; warnings only; the first error stops and fails
psql_() {
    PGOPTIONS="${PGOPTIONS:-} --client-min-messages=warning" \
        "$psql_bin" -X -q -v ON_ERROR_STOP=1 -d "$conninfo" "$@"
}

# taken by every transaction below: two runs at once take turns
lock="DO \$\$ BEGIN PERFORM pg_advisory_xact_lock(hashtext('chat.migrate'));
      END \$\$"

# --- who we are, and whether the roles and the schema are ready ----------

IFS='|' read -r user super roles owner others < <(psql_ -tA -c "
    SELECT current_user,
           (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
           (SELECT count(*) FROM pg_roles
            WHERE rolname IN ('chat_runtime', 'chat_host')),
           coalesce((SELECT nspowner::regrole::text FROM pg_namespace
                     WHERE nspname = 'chat'), ''),
           (SELECT count(*) FROM pg_class
            WHERE relnamespace = to_regnamespace('chat')
              AND relowner <> current_user::regrole)
         + (SELECT count(*) FROM pg_proc
            WHERE pronamespace = to_regnamespace('chat')
              AND proowner <> current_user::regrole)") ||
    die "cannot connect (psql says why, above)"

[ "$super" = t ] &&
    die "$user is a superuser: run this as the schema's owner (chat_owner," \
        "made by sql/roles.sql), so that no function runs as a superuser"
[ "$roles" = 2 ] ||
    die "roles chat_runtime and chat_host are missing: run sql/roles.sql" \
        "once as a superuser first"
[ -n "$owner" ] ||
    die "there is no schema chat: run sql/roles.sql once as a superuser" \
        "first (it makes the schema, owned by chat_owner)"
[ "$owner" = "$user" ] ||
    die "schema chat belongs to $owner, not $user: run sql/roles.sql as a" \
        "superuser (it gives the schema to chat_owner), then this as" \
        "chat_owner"
[ "$others" = 0 ] ||
    die "$others objects in schema chat belong to another role than $user:" \
        "run sql/roles.sql as a superuser (it gives them to chat_owner)"

# --- 1. the schema files that are missing ----------------------------------

applied=
if [ "$(psql_ -tA -c "SELECT to_regclass('chat.schema_migrations') IS NOT NULL")" = t ]
then
    applied=$(psql_ -tA -c "SELECT version FROM chat.schema_migrations")
fi

for f in "$here"/schema/[0-9][0-9][0-9][0-9]_*.sql; do
    name=$(basename "$f" .sql)
    version=$((10#${name%%_*}))
    grep -qx "$version" <<<"$applied" && continue

    # the advisory lock first, without a lock_timeout (another run may hold it
# for a whole index build); once it is ours, a run that came first may have
# applied the file
    done_="DO \$\$ BEGIN
        IF to_regclass('chat.schema_migrations') IS NOT NULL THEN
            IF EXISTS (SELECT FROM chat.schema_migrations
                       WHERE version = $version) THEN
                RAISE EXCEPTION 'chat.migrate: applied meanwhile';
            END IF;
        END IF;
    END \$\$"

    for ((try = 1; ; try++)); do
        if out=$(psql_ -1 \
                -c "$lock" \
                -c "$done_" \
                -c "SET LOCAL lock_timeout = '$lock_timeout'" \
                -c "SET LOCAL statement_timeout = 0" \
                -f "$f" \
                -c "INSERT INTO chat.schema_migrations (version, name)
                    VALUES ($version, '$name')" 2>&1)
        then
            say "applied schema/$name.sql"
            break
        fi
        grep -q "chat.migrate: applied meanwhile" <<<"$out" && break
        if [ "$try" -lt "$tries" ] &&
           grep -q "lock timeout\|deadlock detected" <<<"$out"
        then
            # the tables are busy: let the traffic pass, then again
            sleep 1
            continue
        fi
        echo "$out" >&2
        die "schema/$name.sql failed; nothing of it was applied"
    done
done

# --- 2. the API, whole ------------------------------------------------------

api=()
for f in "$here"/api/*.sql; do
    api+=(-f "$f")
done

# check_function_bodies off: a function may name one defined in a later
# file (pg_dump restores the same way); each is checked when first called
psql_ -1 \
    -c "SET LOCAL statement_timeout = 0" \
    -c "SET LOCAL check_function_bodies = off" \
    -c "$lock" \
    "${api[@]}" ||
    die "the API failed to apply; the database keeps the one it had"

# Grants the API does not make (an earlier release told operators to grant
# the tables to nginx's role) survive it: say which roles still have some.
others=$(psql_ -tA -c "
    SELECT string_agg(DISTINCT a.grantee::regrole::text, ', ')
    FROM (SELECT relacl AS acl, relowner AS owner FROM pg_class
          WHERE relnamespace = 'chat'::regnamespace
          UNION ALL
          SELECT proacl, proowner FROM pg_proc
          WHERE pronamespace = 'chat'::regnamespace) o,
         aclexplode(o.acl) a
    WHERE a.grantee <> 0 AND a.grantee <> o.owner
      AND a.grantee::regrole::text NOT IN ('chat_runtime', 'chat_host')")
[ -z "$others" ] ||
    echo "migrate: warning: roles $others still hold privileges in schema" \
         "chat that the API does not grant (docs/upgrading.md: revoke" \
         "them)" >&2

psql_ -tA -c "SELECT 'migrate: schema version ' || chat.schema_version()
                     || ', API version ' || chat.api_version()"
