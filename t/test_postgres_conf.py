"""chat_postgres as an operator meets it: configuration errors nginx -t
reports."""

import pytest

WS = "location = /chat/ws { chat_websocket; }"


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


# the schema check a worker makes when it connects: test_migrate.py
