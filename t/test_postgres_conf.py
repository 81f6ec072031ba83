"""chat_postgres as an operator meets it: configuration errors nginx -t
reports, and the schema check a worker makes when it connects."""

import os
import subprocess

import pytest

from chatlib import make_token, ws_connect

WS = "location = /chat/ws { chat_websocket; }"
PSQL = "/usr/lib/postgresql/15/bin/psql"


def conninfo(postgres, db="chat"):
    return "host=%s dbname=%s user=postgres" % (postgres.socket_dir, db)


@pytest.mark.parametrize("value,message", [
    ('"host=db.example dbname=chat"',
     'host "db.example" would be resolved by a blocking lookup'),
    ('"host=localhost"', 'host "localhost" would be resolved'),
    ('"dbname=chat colour=red"', "invalid chat_postgres connection string"),
    ('"dbname=chat nonsense"', "invalid chat_postgres connection string"),
    ('"host=/run/postgresql" pool=0', 'invalid chat_postgres parameter "pool=0"'),
    ('"host=/run/postgresql" pool=65', 'invalid chat_postgres parameter'),
    ('"host=/run/postgresql" query_timeout=x',
     'invalid chat_postgres parameter "query_timeout=x"'),
    ('"host=/run/postgresql" flavour=1',
     'invalid chat_postgres parameter "flavour=1"'),
])
def test_configuration_errors(nginx, value, message):
    rc, out = nginx.check_config(WS, http="chat_postgres %s;" % value)
    assert rc != 0
    assert message in out, out


@pytest.mark.parametrize("value", [
    '"host=127.0.0.1 dbname=chat"',
    '"host=db.example hostaddr=127.0.0.1 dbname=chat"',
    '"host=::1 dbname=chat"',
    '"host=/run/postgresql dbname=chat" pool=8 connect_timeout=2s '
    'query_timeout=5s queue_timeout=500ms',
])
def test_configurations_without_blocking_lookups_pass(nginx, value):
    rc, out = nginx.check_config(WS, http="chat_postgres %s;" % value)
    assert rc == 0, out


def psql(postgres, db, *args):
    r = subprocess.run([PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1",
                        "-h", postgres.socket_dir, "-U", "postgres",
                        "-d", db] + list(args),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture
def scratch_db(postgres):
    psql(postgres, "chat", "-c", "DROP DATABASE IF EXISTS chat_schema_check")
    psql(postgres, "chat", "-c", "CREATE DATABASE chat_schema_check")
    yield "chat_schema_check"
    psql(postgres, "chat", "-c",
         "DROP DATABASE IF EXISTS chat_schema_check WITH (FORCE)")


def test_a_database_without_the_schema_is_named(nginx, postgres, scratch_db):
    ng = nginx(WS, http='chat_postgres "%s" pool=1;'
               % conninfo(postgres, scratch_db))
    ng.wait_log(r"the database has no chat schema: apply sql/0001_init.sql",
                timeout=10)
    # the connection keeps working for what needs no storage
    with ws_connect(ng, make_token(ng.key, "alice")) as c:
        reply = c.request("conversation.list")
        assert reply["error"]["code"] == "unavailable"
        c.ok("ping")


def test_a_missing_migration_is_named(nginx, postgres, scratch_db):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    psql(postgres, scratch_db, "-f", os.path.join(repo, "sql/0001_init.sql"),
         "-f", os.path.join(repo, "sql/0002_chat.sql"))
    ng = nginx(WS, http='chat_postgres "%s" pool=1;'
               % conninfo(postgres, scratch_db))
    ng.wait_log(r"the database schema is at version 2, the module needs 11: "
                r"apply sql/0003_presence.sql", timeout=10)
    # once applied, the pool connects by itself
    psql(postgres, scratch_db, "-f",
         os.path.join(repo, "sql/0003_presence.sql"), "-f",
         os.path.join(repo, "sql/0004_order.sql"), "-f",
         os.path.join(repo, "sql/0005_send_batch.sql"), "-f",
         os.path.join(repo, "sql/0006_people.sql"), "-f",
         os.path.join(repo, "sql/0007_groups.sql"), "-f",
         os.path.join(repo, "sql/0008_search.sql"), "-f",
         os.path.join(repo, "sql/0009_service.sql"), "-f",
         os.path.join(repo, "sql/0010_outbox.sql"), "-f",
         os.path.join(repo, "sql/0011_cluster.sql"))
    ng.wait_log(r"PostgreSQL connection ready", timeout=15)
    with ws_connect(ng, make_token(ng.key, "alice")) as c:
        assert c.ok("conversation.list") == {"conversations": [],
                                              "next": None}
