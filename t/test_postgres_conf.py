"""chat_postgres as an operator meets it: configuration errors nginx -t
reports, and how the pool logs PostgreSQL's failures (the schema check a
worker makes when it connects: test_migrate.py)."""

import os
import re
import subprocess
import tempfile
import time

import pytest

from conftest import base_dir

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


# Every line the module writes to the error log is one entry: nginx's
# timestamp first.  libpq's and PostgreSQL's messages are folded.
ENTRY = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[[a-z]+\] \d+#\d+: ")


def assert_one_line_entries(ng):
    log = ng.error_log()
    loose = [line for line in log.splitlines() if not ENTRY.match(line)]
    assert loose == [], log
    assert ng.stderr_log().strip() == "", ng.stderr_log()


def module_errors(ng):
    return [line for line in ng.error_log().splitlines()
            if "[error]" in line and " chat: " in line]


@pytest.mark.allow_log(r"cannot connect to PostgreSQL")
def test_no_server_is_logged_rarely_and_on_one_line(nginx):
    # a socket directory where nothing listens: every attempt fails at once
    empty = tempfile.mkdtemp(prefix="no-pg-", dir=base_dir())
    os.chmod(empty, 0o755)      # the worker (nobody) looks in it
    ng = nginx(WS, http='chat_postgres "host=%s dbname=chat" pool=2;'
               % empty)
    time.sleep(6)
    errors = module_errors(ng)
    # the first failure, then the same one at most after 1 s, 2 s, 4 s...
    assert 1 <= len(errors) <= 5, "\n".join(errors)
    assert ('chat: cannot connect to PostgreSQL: connection to server on '
            'socket "%s/.s.PGSQL.5432" failed: No such file or directory / '
            'Is the server running locally and accepting connections on '
            'that socket?' % empty) in errors[0], errors[0]
    assert errors[0].endswith("that socket?"), errors[0]
    # the attempts back off: about 5 per connection in 6 s, not 30
    attempts = [int(m.group(1)) for m in
                (re.search(r"\(\d+ more times since it was last logged; "
                           r"(\d+) failed attempts in \d+ s\)$", e)
                 for e in errors[1:]) if m]
    assert attempts and len(attempts) == len(errors) - 1, errors
    assert attempts[-1] <= 14, errors
    assert_one_line_entries(ng)


FAILING = r"""
CREATE SCHEMA chat;
CREATE FUNCTION chat.schema_version() RETURNS int
LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'checking%', E'\n  the version';
    RAISE WARNING 'about to fail';
    RAISE EXCEPTION 'broken on purpose'
        USING DETAIL = E'first line\nsecond line', HINT = 'a hint';
END
$$;
CREATE FUNCTION chat.api_version() RETURNS int LANGUAGE sql AS 'SELECT 1000';
"""


@pytest.mark.allow_log(r"PostgreSQL setup failed", r"cannot prepare")
def test_postgresql_messages_are_folded(nginx, postgres, scratch_db):
    psql(postgres, scratch_db, "-c", FAILING)
    ng = nginx(WS, http='chat_postgres "%s" pool=1;'
               % conninfo(postgres, scratch_db))
    # ERROR, DETAIL over two lines, HINT, CONTEXT: one line
    ng.wait_log(r"(?m)\[error\] \d+#\d+: chat: PostgreSQL setup failed: "
                r"ERROR:  broken on purpose / DETAIL:  first line / second "
                r"line / HINT:  a hint / CONTEXT:  PL/pgSQL function "
                r"chat\.schema_version\(\) line \d+ at RAISE$", timeout=10)
    # notices and warnings reach the log through nginx, not libpq's stderr
    ng.wait_log(r"(?m)\[notice\] \d+#\d+: chat: PostgreSQL said: NOTICE:  "
                r"checking / the version$")
    ng.wait_log(r"(?m)\[warn\] \d+#\d+: chat: PostgreSQL said: WARNING:  "
                r"about to fail$")
    # a statement with a caret under it: the caret line goes
    psql(postgres, scratch_db, "-c",
         "CREATE OR REPLACE FUNCTION chat.schema_version() RETURNS int "
         "LANGUAGE sql AS 'SELECT 1000'")
    m = ng.wait_log(r"(?m)\[error\] \d+#\d+: chat: cannot prepare \"\w+\": "
                    r"ERROR:  .* does not exist / LINE 1: .*$", timeout=20)
    assert "^" not in m.group(0), m.group(0)
    assert_one_line_entries(ng)
