"""Deploying and upgrading the database: sql/roles.sql, sql/migrate.sh,
the split of sql/schema/ (applied once each) and sql/api/ (applied whole),
the least privileges of the runtime and host roles, a database built by
the previous release's files (t/data/release-0011) migrated in place, and
migrations while nginx serves sends.

Each test that builds a database makes its own in the session's cluster;
the roles are the cluster's (made by scripts/pg.sh through roles.sql)."""

import glob
import os
import re
import shutil
import subprocess
import threading
import time

import psycopg
import pytest

from chatlib import make_token, ws_connect
from conftest import REPO, base_dir

PGBIN = "/usr/lib/postgresql/15/bin"
MIGRATE = os.path.join(REPO, "sql", "migrate.sh")
ROLES = os.path.join(REPO, "sql", "roles.sql")
RELEASE_0011 = os.path.join(REPO, "t", "data", "release-0011")
WS = "location = /chat/ws { chat_websocket; }"


def psql(postgres, db, *args, user="postgres"):
    r = subprocess.run(
        [os.path.join(PGBIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
         "-h", postgres.socket_dir, "-U", user, "-d", db] + list(args),
        capture_output=True, text=True,
        env=dict(os.environ, PGOPTIONS="--client-min-messages=warning"))
    assert r.returncode == 0, r.stderr
    return r.stdout


def dsn(postgres, db, user):
    return "host=%s dbname=%s user=%s" % (postgres.socket_dir, db, user)


def migrate(postgres, db, user="chat_owner", script=MIGRATE):
    return subprocess.run(["bash", script, dsn(postgres, db, user)],
                          capture_output=True, text=True)


def migrate_ok(postgres, db, **kw):
    r = migrate(postgres, db, **kw)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def one(postgres, db, sql, *params, user="postgres"):
    with psycopg.connect(dsn(postgres, db, user), autocommit=True) as c:
        return c.execute(sql, params or None).fetchone()[0]


class Databases:
    """Scratch databases of one test, dropped after it."""

    def __init__(self, postgres):
        self.pg = postgres
        self.names = []

    def new(self, name, roles=True):
        psql(self.pg, "postgres", "-c",
             "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
        psql(self.pg, "postgres", "-c", "CREATE DATABASE %s" % name)
        self.names.append(name)
        if roles:
            psql(self.pg, name, "-f", ROLES)
        return name

    def drop(self):
        for name in self.names:
            psql(self.pg, "postgres", "-c",
                 "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)


@pytest.fixture
def dbs(postgres):
    d = Databases(postgres)
    yield d
    d.drop()


def release_0011(postgres, db):
    """The database as that release's README made it: every file, as the
    superuser, twice (each was re-run at every deploy)."""
    files = sorted(glob.glob(os.path.join(RELEASE_0011, "*.sql")))
    args = []
    for f in files:
        args += ["-f", f]
    psql(postgres, db, *args)
    psql(postgres, db, *args)


def schema_dump(postgres, db):
    """The definition of schema chat, comparable across databases."""
    r = subprocess.run(
        [os.path.join(PGBIN, "pg_dump"), "-h", postgres.socket_dir,
         "-U", "postgres", "--schema-only", "--schema=chat", db],
        capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines()
            if line and not line.startswith(("--", "\\restrict", "\\unrestrict"))]


def api_functions():
    """Every function the files of sql/api/ define."""
    names = set()
    for f in glob.glob(os.path.join(REPO, "sql", "api", "*.sql")):
        names |= set(re.findall(r"CREATE OR REPLACE FUNCTION chat\.(\w+)\(",
                                open(f).read()))
    return names


def store_statements():
    """The chat.* functions the module prepares (src/ngx_http_chat_sql.c)."""
    src = open(os.path.join(REPO, "src", "ngx_http_chat_sql.c")).read()
    # "SELECT chat.f(...)", or "SELECT columns ... FROM chat.f(...)"
    return set(re.findall(r'(?:"SELECT |"FROM )chat\.(\w+)\(', src))


HOST_API = {"create_conversation", "add_member", "post_message",
            "delete_user_uploads"}

# what the module of the API before calls and this one no longer does:
# granted for one release more (sql/api/99_privileges.sql)
PREVIOUS_MODULE = {"api_changes", "api_cluster_changes"}


# ---------------------------------------------------------------------------
# the suite's own database

def test_ledger_and_versions(postgres):
    ledger = postgres.query("SELECT version, name FROM chat.schema_migrations "
                            "ORDER BY version")
    files = sorted(os.path.basename(f)[:-4] for f in glob.glob(
        os.path.join(REPO, "sql", "schema", "*.sql")))
    for name in files:
        assert (int(name[:4]), name) in ledger
    assert postgres.query("SELECT chat.schema_version(), "
                          "chat.api_version()") == [(16, 6)]


def test_the_module_checks_the_versions_it_was_built_for():
    src = open(os.path.join(REPO, "src", "ngx_http_chat_pg.c")).read()
    schema = int(re.search(r"CHAT_SCHEMA_VERSION\s+(\d+)", src).group(1))
    api = int(re.search(r"CHAT_API_VERSION\s+(\d+)", src).group(1))
    newest = max(int(os.path.basename(f)[:4]) for f in glob.glob(
        os.path.join(REPO, "sql", "schema", "*.sql")))
    assert schema == newest
    base = open(os.path.join(REPO, "sql", "api", "00_base.sql")).read()
    assert re.search(r"api_version\(\).*?SELECT (\d+)", base,
                     re.S).group(1) == str(api)


def test_rerunning_keeps_data_and_applies_the_api_again(postgres, dbs):
    db = dbs.new("chat_rerun")
    out = migrate_ok(postgres, db)
    assert "applied schema/0002_chat.sql" in out
    one(postgres, db, "SELECT chat.create_conversation('alice', 'group', "
                      "ARRAY['bob'], 'g')")
    one(postgres, db, "SELECT chat.post_message(1, 'alice', 'kept')")
    # an API function someone changed by hand is put back
    psql(postgres, db, "-c", "CREATE OR REPLACE FUNCTION chat.api_version() "
                             "RETURNS int LANGUAGE sql AS 'SELECT 0'",
         user="chat_owner")
    for _ in range(2):
        out = migrate_ok(postgres, db)
        assert "applied schema" not in out
        assert "schema version 16, API version 6" in out
    assert one(postgres, db, "SELECT string_agg(body, ',') "
                             "FROM chat.messages") == "kept"


def test_migrate_refuses_what_would_go_wrong(postgres, dbs):
    db = dbs.new("chat_refuse", roles=False)
    r = migrate(postgres, db)
    assert r.returncode != 0
    assert "there is no schema chat: run sql/roles.sql" in r.stderr
    psql(postgres, db, "-f", ROLES)
    r = migrate(postgres, db, user="postgres")
    assert r.returncode != 0
    assert "postgres is a superuser: run this as the schema's owner" \
        in r.stderr
    r = migrate(postgres, db, user="chat_nginx")
    assert r.returncode != 0
    assert "schema chat belongs to chat_owner, not chat_nginx" in r.stderr
    assert one(postgres, db, "SELECT to_regclass('chat.messages') "
                             "IS NULL") is True


def test_a_failing_api_file_leaves_the_api_as_it_was(postgres, dbs):
    db = dbs.new("chat_api_atomic")
    migrate_ok(postgres, db)
    copy = os.path.join(base_dir(), "sql-broken")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(os.path.join(REPO, "sql"), copy)
    with open(os.path.join(copy, "api", "00_base.sql"), "a") as f:
        f.write("CREATE OR REPLACE FUNCTION chat.api_version() RETURNS int "
                "LANGUAGE sql AS 'SELECT 5';\n")
    with open(os.path.join(copy, "api", "50_people.sql"), "a") as f:
        f.write("\nDROP FUNCTION chat.api_block;\nSELECT 1/0;\n")
    r = migrate(postgres, db, script=os.path.join(copy, "migrate.sh"))
    assert r.returncode != 0
    assert "the API failed to apply; the database keeps the one it had" \
        in r.stderr
    assert one(postgres, db, "SELECT chat.api_version()") == 6
    assert one(postgres, db, "SELECT to_regproc('chat.api_block') "
                             "IS NOT NULL") is True


def test_two_migrations_at_once(postgres, dbs):
    db = dbs.new("chat_concurrent")
    procs = [subprocess.Popen(["bash", MIGRATE,
                               dsn(postgres, db, "chat_owner")],
                              stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, out + err
    assert one(postgres, db, "SELECT count(*) FROM chat.schema_migrations") \
        == len(glob.glob(os.path.join(REPO, "sql", "schema", "*.sql")))


# ---------------------------------------------------------------------------
# privileges

def test_the_runtime_role_calls_only_what_nginx_calls(postgres):
    granted = {r[0] for r in postgres.query(
        "SELECT p.proname FROM pg_proc p "
        "WHERE p.pronamespace = 'chat'::regnamespace "
        "AND has_function_privilege('chat_nginx', p.oid, 'EXECUTE')")}
    assert granted == (store_statements() | PREVIOUS_MODULE
                       | {"schema_version", "api_version"})
    host = {r[0] for r in postgres.query(
        "SELECT p.proname FROM pg_proc p "
        "WHERE p.pronamespace = 'chat'::regnamespace "
        "AND has_function_privilege('chat_host', p.oid, 'EXECUTE')")}
    assert host == HOST_API
    # nobody else: a role that is neither
    public = postgres.query(
        "SELECT p.proname FROM pg_proc p, "
        "aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a "
        "WHERE p.pronamespace = 'chat'::regnamespace AND a.grantee = 0")
    assert public == []


def test_entry_points_run_as_the_owner_with_a_pinned_search_path(postgres):
    rows = postgres.query(
        "SELECT p.proname, p.prosecdef, p.proconfig, p.proowner::regrole "
        "FROM pg_proc p WHERE p.pronamespace = 'chat'::regnamespace")
    entry = store_statements() | HOST_API | PREVIOUS_MODULE | {
        "schema_version", "api_version"}
    for name, secdef, config, owner in rows:
        assert owner == "chat_owner", name
        if name in entry:
            assert secdef, name
            assert config == ["search_path=pg_catalog, chat, pg_temp"], name
        else:
            assert not secdef, name


def test_the_runtime_role_reads_and_writes_no_table(postgres):
    tables = [r[0] for r in postgres.query(
        "SELECT c.oid::regclass::text FROM pg_class c "
        "WHERE c.relnamespace = 'chat'::regnamespace "
        "AND c.relkind IN ('r', 'S')")]
    assert "chat.messages" in tables
    with psycopg.connect(postgres.dsn, autocommit=True) as c:
        for t in tables:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute("SELECT 1 FROM %s LIMIT 1" % t)
        for sql in ["INSERT INTO chat.blocks VALUES ('a', 'b')",
                    "SELECT chat.message_obj(NULL::chat.messages)",
                    "SELECT chat.post_message(1, 'a', 'x')",
                    "CREATE TABLE chat.mine (x int)",
                    "CREATE FUNCTION chat.api_version() RETURNS int "
                    "LANGUAGE sql AS 'SELECT 9'"]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(sql)
        # and what it may call works
        assert "total" in c.execute(
            "SELECT chat.api_unread('nobody-here', '{}')").fetchone()[0]["ok"]


def test_the_host_role_writes_through_its_api_only(postgres):
    postgres.reset()
    postgres.query("DROP ROLE IF EXISTS chat_test_app")
    postgres.query("CREATE ROLE chat_test_app LOGIN")
    try:
        psql(postgres, "chat", "-f", ROLES, "-v", "host_role=chat_test_app")
        with psycopg.connect(dsn(postgres, "chat", "chat_test_app"),
                             autocommit=True) as c:
            cid = c.execute("SELECT chat.create_conversation('alice', "
                            "'group', ARRAY['bob'], 'orders')").fetchone()[0]
            c.execute("SELECT chat.post_message(%s, 'alice', 'hi')", (cid,))
            for sql in ["SELECT count(*) FROM chat.messages",
                        "UPDATE chat.members SET role = 'owner'",
                        "SELECT chat.api_sync('alice', '{}')",
                        "SELECT chat.publish('{}')",
                        # L3: no forged events through the outbox either
                        "INSERT INTO chat.outbox (events) VALUES ('[]')",
                        "SELECT pg_notify('chat_outbox', '1') "
                        "FROM chat.outbox"]:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    c.execute(sql)
        assert postgres.query("SELECT body FROM chat.messages") == [("hi",)]
    finally:
        postgres.query("REVOKE chat_host FROM chat_test_app")
        postgres.query("DROP ROLE chat_test_app")
        postgres.reset()


# ---------------------------------------------------------------------------
# the previous release's database, upgraded

def test_a_release_0011_database_is_upgraded_in_place(postgres, dbs):
    old = dbs.new("chat_old", roles=False)
    release_0011(postgres, old)
    psql(postgres, old, "-c",
         "SELECT chat.api_conversation_create('alice', "
         "'{\"kind\": \"group\", \"title\": \"g\", \"members\": [\"bob\"]}')",
         "-c", "SELECT chat.api_message_send_batch('[{\"user\": \"alice\", "
               "\"req\": {\"conversation_id\": 1, \"body\": \"before\", "
               "\"client_msg_id\": \"1\"}}]')")
    # its owner is the superuser that applied it: migrate.sh says what to do
    r = migrate(postgres, old)
    assert r.returncode != 0
    assert "run sql/roles.sql as a superuser" in r.stderr
    # and the runtime role that release's docs told to grant everything
    postgres.query("DROP ROLE IF EXISTS chat_old_runtime")
    postgres.query("CREATE ROLE chat_old_runtime")
    old_grants = ("GRANT USAGE ON SCHEMA chat TO chat_old_runtime; "
                  "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN "
                  "SCHEMA chat TO chat_old_runtime; GRANT EXECUTE ON ALL "
                  "FUNCTIONS IN SCHEMA chat TO chat_old_runtime")
    psql(postgres, old, "-c", old_grants)
    psql(postgres, old, "-f", ROLES)
    r = migrate(postgres, old)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    # its tables are all there: only the schema files after the release
    assert re.findall(r"applied schema/(\S+)", out) == [
        "0012_groups.sql", "0013_sends.sql", "0014_uploads.sql",
        "0015_upload_sweep.sql", "0016_upload_store.sql"]
    assert "schema version 16, API version 6" in out
    # what the API does not grant survives it: migrate.sh says so
    assert "warning: roles chat_old_runtime still hold privileges" \
        in r.stderr
    psql(postgres, old, "-c", old_grants.replace("GRANT", "REVOKE")
         .replace(" TO ", " FROM "))
    r = migrate(postgres, old)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    postgres.query("DROP ROLE chat_old_runtime")

    fresh = dbs.new("chat_fresh")
    migrate_ok(postgres, fresh)
    # the same schema, function for function, grant for grant
    assert schema_dump(postgres, old) == schema_dump(postgres, fresh)
    names = {r[0] for r in postgres.query(
        "SELECT proname FROM pg_proc "
        "WHERE pronamespace = 'chat'::regnamespace")}
    assert names == api_functions()

    # the data is there and the runtime role carries on with it
    with psycopg.connect(dsn(postgres, old, "chat_nginx"),
                         autocommit=True) as c:
        r = c.execute("SELECT chat.api_messages_history('bob', "
                      "'{\"conversation_id\": 1}')").fetchone()[0]
        assert [m["body"] for m in r["ok"]["messages"]] == ["before"]


def test_nginx_names_the_command_for_an_old_or_empty_database(
        nginx, postgres, dbs):
    old = dbs.new("chat_old_nginx", roles=False)
    release_0011(postgres, old)
    empty = dbs.new("chat_empty_nginx", roles=False)
    for db, message in [
            (empty, r"the database has no chat API, or one made by an "
                    r"earlier release: run sql/migrate.sh"),
            # the superuser made it: chat_nginx may not even use the schema
            (old, r'role "chat_nginx" may not call the chat API: it must be '
                  r'a member of chat_runtime, in a database migrated by '
                  r'sql/migrate.sh')]:
        ng = nginx(WS, http='chat_postgres "%s" pool=1;'
                   % dsn(postgres, db, "chat_nginx"))
        ng.wait_log(message, timeout=10)
        with ws_connect(ng, make_token(ng.key, "alice")) as c:
            reply = c.request("conversation.list")
            assert reply["error"]["code"] == "unavailable"
            c.ok("ping")
    # the old one migrated, the same nginx connects by itself
    psql(postgres, old, "-f", ROLES)
    migrate_ok(postgres, old)
    ng.wait_log(r"PostgreSQL connection ready", timeout=15)
    with ws_connect(ng, make_token(ng.key, "alice")) as c:
        assert c.ok("conversation.list") == {"conversations": [],
                                              "next": None}


def test_nginx_names_a_role_without_the_runtime_grant(nginx, postgres):
    postgres.query("DROP ROLE IF EXISTS chat_stranger")
    postgres.query("CREATE ROLE chat_stranger LOGIN")
    try:
        ng = nginx(WS, http='chat_postgres "%s" pool=1;'
                   % dsn(postgres, "chat", "chat_stranger"))
        ng.wait_log(r'PostgreSQL role "chat_stranger" may not call the '
                    r'chat API: it must be a member of chat_runtime',
                    timeout=10)
    finally:
        postgres.query("DROP ROLE chat_stranger")


# ---------------------------------------------------------------------------
# migrating while nginx serves

def test_migrating_under_load_fails_no_send(nginx, postgres, dbs):
    """8 clients send without pause while migrate.sh runs five times: the
    API applied whole each time, and once a new schema file that locks
    chat.messages to build an index (a copy of sql/ with one more file).
    Every send is answered ok, nothing is logged as an error."""
    db = dbs.new("chat_load")
    migrate_ok(postgres, db)
    copy = os.path.join(base_dir(), "sql-next")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(os.path.join(REPO, "sql"), copy)
    with open(os.path.join(copy, "schema", "9000_test_index.sql"), "w") as f:
        f.write("CREATE INDEX IF NOT EXISTS messages_test_idx\n"
                "    ON chat.messages (sender_id, created_at);\n"
                "ALTER TABLE chat.users ADD COLUMN IF NOT EXISTS note text;\n")

    ng = nginx(WS, http='chat_postgres "%s" pool=2;'
               % dsn(postgres, db, "chat_nginx"))
    users = ["u%d" % i for i in range(8)]
    with ws_connect(ng, make_token(ng.key, "u0")) as c:
        cid = c.ok("conversation.create", kind="group", title="load",
                   members=users[1:])["conversation"]["id"]

    stop = threading.Event()
    results = {u: [] for u in users}
    errors = []

    def sender(user):
        try:
            with ws_connect(ng, make_token(ng.key, user)) as c:
                n = 0
                while not stop.is_set():
                    n += 1
                    r = c.request("message.send", timeout=15,
                                  conversation_id=cid, body="m%d" % n,
                                  client_msg_id="%s-%d" % (user, n))
                    results[user].append(r["type"] == "ok" or r)
        except Exception as e:      # reported below, with the others
            errors.append(repr(e))

    threads = [threading.Thread(target=sender, args=(u,)) for u in users]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        for i in range(5):
            script = os.path.join(copy if i == 2 else os.path.join(
                REPO, "sql"), "migrate.sh")
            out = migrate_ok(postgres, db, script=script)
            if i == 2:
                assert "applied schema/9000_test_index.sql" in out
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert errors == []
    failed = [r for rs in results.values() for r in rs if r is not True]
    sent = sum(len(rs) for rs in results.values())
    assert failed == [] and sent > 100, (sent, failed[:5])
    assert one(postgres, db, "SELECT count(*) FROM chat.messages") == sent
    assert not re.search(r"\[error\]", ng.logs()), ng.logs()[-3000:]
