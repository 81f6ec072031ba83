"""What nginx -t says about configurations that would bite later: several
workers without chat_zone and endpoints without chat_postgres (warnings:
the configuration is valid, nginx starts), chat_identity without a
variable and any origin with token cookies (errors)."""

import re

import pytest

WS = "location = /chat/ws { chat_websocket; }"
API = "location /api/chat/ { chat_api; }"
PG = 'chat_postgres "host=/run/postgresql dbname=chat";'
ZONE = "chat_zone chat 1m;"
COOKIE = "chat_token_cookie chat_token;"

# on nginx -t's stderr "nginx: [warn] ...", in the log "[warn] PID#TID: ..."
WARN = r'\[warn\] (?:\d+#\d+: )?'
M_WORKERS = re.compile(WARN + r'chat: 2 worker processes without '
                       r'"chat_zone": a message, typing or presence reaches '
                       r'only the WebSockets of the worker that made it; '
                       r'add "chat_zone chat 64m;" to the http block')
M_STORAGE = ('without "chat_postgres": every request that needs storage '
             'will answer "unavailable" in ')


def ok(rc, out):
    assert rc == 0, out
    assert "test is successful" in out, out


def failed(rc, out, message):
    assert rc != 0, out
    assert message in out, out
    assert "test failed" in out, out


# worker_processes above 1 without chat_zone

@pytest.mark.parametrize("workers", [2, "auto"])
def test_workers_without_zone_warn(nginx, workers):
    # the test machine has two cores: "auto" is 2 here
    rc, out = nginx.check_config(WS, http=PG, workers=workers)
    ok(rc, out)
    assert M_WORKERS.search(out), out
    assert len(M_WORKERS.findall(out)) == 1, out


def test_workers_with_zone_or_one_worker_do_not_warn(nginx):
    for workers, http in ((2, PG + ZONE), (1, PG)):
        rc, out = nginx.check_config(WS, http=http, workers=workers)
        ok(rc, out)
        assert "[warn]" not in out, out


def test_workers_without_chat_endpoints_do_not_warn(nginx):
    # echo, status, dev tokens: nothing crosses workers
    rc, out = nginx.check_config(
        "location = /echo { chat_echo; }\n"
        "location = /status { chat_status; }", workers=2)
    ok(rc, out)
    assert "[warn]" not in out, out


def test_workers_without_zone_start_and_warn(nginx, postgres):
    ng = nginx(WS, http='chat_postgres "%s" pool=1;' % postgres.dsn,
               workers=2)
    ng.wait_log(M_WORKERS.pattern)


# an endpoint that needs storage, without chat_postgres

@pytest.mark.parametrize("loc,directive", [(WS, "chat_websocket"),
                                           (API, "chat_api")])
def test_endpoint_without_postgres_warns(nginx, loc, directive):
    rc, out = nginx.check_config(loc)
    ok(rc, out)
    assert re.search(WARN + r'"%s" %s\S*nginx\.conf:\d+$'
                     % (directive, re.escape(M_STORAGE)), out, re.M), out


def test_endpoints_without_storage_needs_do_not_warn(nginx):
    rc, out = nginx.check_config(
        "location = /echo { chat_echo; }\n"
        "location = /status { chat_status; }\n"
        "location = /token { chat_dev_token; }")
    ok(rc, out)
    assert "chat_postgres" not in out, out


def test_endpoint_with_postgres_does_not_warn(nginx):
    rc, out = nginx.check_config(WS + "\n" + API, http=PG)
    ok(rc, out)
    assert "[warn]" not in out, out


def test_endpoint_without_postgres_starts(nginx):
    ng = nginx(WS)
    ng.wait_log(WARN + '"chat_websocket" ' + re.escape(M_STORAGE))


# chat_identity without a variable

@pytest.mark.parametrize("value,message", [
    ("user", '[emerg] "chat_identity" value "user" has no variable in it, '
             'so every request would be the same user: write the variable '
             'that holds the user id, such as "$remote_user" or "$user"'),
    ("$http_x_user name=Alice",
     '[emerg] "chat_identity" name "Alice" has no variable in it, so every '
     'user would have that name: write the variable that holds the display '
     'name, such as "name=$Alice"'),
])
def test_identity_without_variable(nginx, value, message):
    rc, out = nginx.check_config(
        "location /chat/ws { chat_websocket; chat_identity %s; }" % value,
        http=PG)
    failed(rc, out, message)
    assert re.search(r"nginx\.conf:\d+", out), out


@pytest.mark.parametrize("value", [
    "$http_x_user", "$http_x_user name=$http_x_name",
    '"user:$http_x_user" "name=${http_x_name}!"'])
def test_identity_with_variables(nginx, value):
    rc, out = nginx.check_config(
        "location /chat/ws { chat_websocket; chat_identity %s; }" % value,
        http=PG)
    ok(rc, out)


# any origin with a token cookie

@pytest.mark.parametrize("loc,http", [
    # all in the location
    ("location = /chat/ws { chat_websocket; %s "
     "chat_allowed_origins https://app.example *; }" % COOKIE, ""),
    # inherited: the cookie from http, the origins from the server
    ("chat_allowed_origins *;\n" + WS, COOKIE),
    # and the other way round
    ("location = /chat/ws { chat_websocket; %s }" % COOKIE,
     "chat_allowed_origins *;"),
])
def test_any_origin_with_cookie_websocket(nginx, loc, http):
    rc, out = nginx.check_config(loc, http=PG + http)
    failed(rc, out, '[emerg] "chat_allowed_origins *" with '
                    '"chat_token_cookie" lets any web site act as whoever '
                    'has the cookie')
    assert re.search(r"nginx\.conf:\d+", out), out


@pytest.mark.parametrize("loc,http", [
    ("location /api/chat/ { chat_api; chat_cors_origins *; }", COOKIE),
    ("location /api/chat/ { chat_api; %s }" % COOKIE,
     "chat_cors_origins https://a.example *;"),
])
def test_any_origin_with_cookie_api(nginx, loc, http):
    rc, out = nginx.check_config(loc, http=PG + http)
    failed(rc, out, '[emerg] "chat_cors_origins *" with "chat_token_cookie" '
                    'lets any web site act as whoever has the cookie')


@pytest.mark.parametrize("loc,http", [
    # listed origins with a cookie
    (WS, COOKIE + "chat_allowed_origins https://app.example;"),
    # any origin without a cookie
    (WS + "\n" + API, "chat_allowed_origins *; chat_cors_origins *;"),
    # CORS origins are for chat_api, WebSocket origins for chat_websocket
    (WS, COOKIE + "chat_cors_origins *;"),
    (API, COOKIE + "chat_allowed_origins *;"),
    (WS + "\n" + API, COOKIE + "chat_allowed_origins https://a.example;"
                               "chat_cors_origins https://a.example;"),
])
def test_origins_and_cookies_that_pass(nginx, loc, http):
    rc, out = nginx.check_config(loc, http=PG + http)
    ok(rc, out)


# a bad conninfo is one line

def test_bad_conninfo_message_is_one_line(nginx):
    rc, out = nginx.check_config(WS, http='chat_postgres "dbname=chat x";')
    assert rc != 0, out
    line = [x for x in out.splitlines() if "[emerg]" in x]
    assert len(line) == 1, out
    assert re.search(r'\[emerg\] invalid chat_postgres connection string: '
                     r'missing "=" after "x" in connection info string in '
                     r'\S+nginx\.conf:\d+$', line[0]), out
