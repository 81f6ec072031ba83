"""/chat/status as operations read it (docs/metrics.md): the latency
histograms move with real requests and PostgreSQL queries, closes and
authentication failures carry their reason as a label, REST answers are
counted by route and status class, chat_build_info says what runs, and no
series is labelled with a pid.

Debian's own Prometheus tools check the whole kit: `promtool check
metrics` on a real scrape, `promtool check rules` and `promtool test
rules` on docs/alerts.yml, and a real Prometheus that scrapes nginx, loads
docs/alerts.yml and answers every query of docs/grafana-dashboard.json.
promtool and prometheus come from Debian's `prometheus` package (make deps
installs it); a test fails, never skips, when they are missing.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from chatlib import RawWS, http, http_upgrade, make_token, tamper, \
    ws_connect, OP_BINARY, OP_TEXT
from conftest import REPO, NGINX, base_dir, free_port, tail, read_text


LOCATIONS = """
    location = /chat/ws { chat_websocket; }
    location /api/chat/ { chat_api; }
    location = /chat/status { chat_status; }
"""

ALERTS = os.path.join(REPO, "docs", "alerts.yml")
DASHBOARD = os.path.join(REPO, "docs", "grafana-dashboard.json")
ALERT_TESTS = os.path.join(REPO, "t", "data", "alerts_test.yml")

# the protocol's request types (src/ngx_http_chat_session.c), then other
REQUEST_TYPES = ["ping", "auth.refresh", "message.send", "message.read",
                 "message.delivered", "messages.history", "message.edit",
                 "message.delete", "conversation.create",
                 "conversation.list", "conversation.members", "sync", "typing",
                 "presence.query", "presence.subscribe", "presence.count",
                 "other"]
BOUNDS = ["0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
          "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
          "10", "+Inf"]
CLOSE_REASONS = ["protocol", "limit", "idle", "ping_timeout",
                 "token_expired", "shutdown", "slow", "overflow",
                 "internal"]
AUTH_REASONS = ["missing_token", "malformed", "bad_signature", "algorithm",
                "expired", "not_yet_valid", "wrong_issuer",
                "wrong_audience", "bad_claims", "bad_identity",
                "not_accepted", "wrong_user", "other"]
ROUTES = ["unknown", "conversations", "conversations/{id}",
          "conversations/{id}/archive", "conversations/{id}/mute",
          "conversations/{id}/members", "conversations/{id}/members/{user}",
          "conversations/{id}/messages", "conversations/{id}/read",
          "messages/{id}", "messages/search", "unread", "users/search",
          "users/me", "contacts", "contacts/{user}", "blocks",
          "blocks/{user}", "presence", "uploads", "files/{id}"]


# --------------------------------------------------------------------------
# reading /chat/status

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(ng):
    r = http(ng, "GET", "/chat/status")
    assert r.status == 200, r
    return r.body.decode()


class Metrics:
    """The samples of one scrape: (name, {labels}) -> value."""

    def __init__(self, text):
        self.text = text
        self.samples = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = SAMPLE.match(line)
            assert m, line
            labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
            self.samples[(m.group(1), labels)] = float(m.group(3))

    def get(self, name, **labels):
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def series(self, name):
        """[({labels}, value)] of one metric name."""
        return [(dict(k[1]), v) for k, v in self.samples.items()
                if k[0] == name]

    def values(self, name, label):
        """{label value: sample value} of a metric with one label."""
        return {lab[label]: v for lab, v in self.series(name)}

    def histogram(self, family, **labels):
        """([(le, cumulative count)] in the order served, sum, count)."""
        buckets = []
        for line in self.text.splitlines():
            m = SAMPLE.match(line)
            if m and m.group(1) == family + "_bucket":
                lab = dict(LABEL.findall(m.group(2)))
                le = lab.pop("le")
                if lab == labels:
                    buckets.append((le, float(m.group(3))))
        return (buckets, self.get(family + "_sum", **labels),
                self.get(family + "_count", **labels))


def metrics(ng):
    return Metrics(scrape(ng))


def check_histogram(m, family, **labels):
    """The rules of a Prometheus histogram; returns (count, sum)."""
    buckets, total, count = m.histogram(family, **labels)
    assert [le for le, _ in buckets] == BOUNDS, buckets
    counts = [c for _, c in buckets]
    assert counts == sorted(counts), ("not cumulative", labels, buckets)
    assert counts[-1] == count, ("+Inf is not the count", labels, buckets)
    assert total is not None and total >= 0
    return count, total


def tool(name):
    """A binary of Debian's prometheus package; fails (never skips) when it
    is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail("%s is missing: apt-get install prometheus (Debian's "
                    "package; `make deps` installs it)" % name,
                    pytrace=False)
    return path


# --------------------------------------------------------------------------
# fixtures

@pytest.fixture
def ng(nginx, postgres):
    postgres.reset()
    n = nginx(LOCATIONS, http='chat_postgres "%s" pool=2;' % postgres.dsn)
    n.pg = postgres
    return n


def settled(ng, timeout=10):
    """A scrape once every PostgreSQL query sent has its result observed
    (a connection's default watch set is read while it may close)."""
    deadline = time.monotonic() + timeout
    while True:
        m = metrics(ng)
        observed = sum(m.values("chat_postgres_query_duration_seconds_count",
                                "statement").values())
        if observed == m.get("chat_postgres_queries_total"):
            return m
        assert time.monotonic() < deadline, \
            ("queries sent and observed differ", observed,
             m.get("chat_postgres_queries_total"))
        time.sleep(0.05)


def some_traffic(ng):
    """Requests of several types over WebSocket and REST, and the
    PostgreSQL queries they make; returns what was asked, by type."""
    alice = ws_connect(ng, make_token(ng.key, "alice"))
    bob = ws_connect(ng, make_token(ng.key, "bob"))
    try:
        conv = alice.ok("conversation.create", kind="direct",
                        user_id="bob")["conversation"]
        for i in range(5):
            alice.ok("message.send", conversation_id=conv["id"],
                     body="hello %d" % i, client_msg_id="m%d" % i)
        alice.ok("messages.history", conversation_id=conv["id"])
        alice.ok("conversation.list")
        bob.ok("sync", conversations={str(conv["id"]): 0})
        for _ in range(3):
            alice.ok("ping")
        assert alice.request("no.such.type")["type"] == "error"
        alice.send("not json")
        while True:
            frame = alice.recv_json()
            if frame["type"] == "error":
                assert frame["error"]["code"] == "bad_request"
                break
    finally:
        alice.close()
        bob.close()
    r = http(ng, "GET", "/api/chat/users/me",
             token=make_token(ng.key, "alice"))
    assert r.status == 200, r
    return {"conversation.create": 1, "message.send": 5,
            "messages.history": 1, "conversation.list": 1, "sync": 1,
            "ping": 3, "other": 2}


# --------------------------------------------------------------------------
# histograms

def test_request_and_query_histograms_move(ng):
    before = metrics(ng)
    for t in REQUEST_TYPES:
        assert check_histogram(before, "chat_request_duration_seconds",
                               type=t) == (0, 0)
    asked = some_traffic(ng)
    # every query sent is observed once its result is read
    after = settled(ng)

    assert sorted(after.values("chat_request_duration_seconds_count",
                               "type")) == sorted(REQUEST_TYPES)
    for t in REQUEST_TYPES:
        count, total = check_histogram(after,
                                       "chat_request_duration_seconds",
                                       type=t)
        # every request answered is observed once, when its reply is
        # queued; the requests counter counts them as they arrive
        assert count == asked.get(t, 0), t
        assert after.get("chat_requests_total", type=t) == count, t
        assert total <= count * 5, (t, total)   # seconds each, at most
    _, send_time = check_histogram(after, "chat_request_duration_seconds",
                                   type="message.send")
    assert send_time > 0

    # PostgreSQL: every statement that ran has its histogram, and every
    # query sent has been observed once its result was read
    stmts = after.values("chat_postgres_query_duration_seconds_count",
                         "statement")
    for s in ("chat_session_hello", "chat_conversation_create",
              "chat_message_send_batch", "chat_messages_history",
              "chat_conversation_list", "chat_sync"):
        assert stmts.get(s, 0) >= 1, (s, stmts)
        check_histogram(after, "chat_postgres_query_duration_seconds",
                        statement=s)
    assert stmts["chat_conversation_create"] == 1
    assert stmts["chat_message_send_batch"] == 5
    assert "chat_cluster_tick" not in stmts     # used statements only


def test_histograms_and_counters_survive_a_reload(ng):
    some_traffic(ng)
    before = settled(ng)
    ng.reload()
    after = settled(ng)
    for t in REQUEST_TYPES:
        assert after.histogram("chat_request_duration_seconds", type=t) \
            == before.histogram("chat_request_duration_seconds", type=t)
    assert after.get("chat_upgrades_total") == 2
    # the new workers' pools read the outbox when they connect (perhaps
    # not yet): as many chat_outbox queries or more, the rest as they were
    old = before.values("chat_postgres_query_duration_seconds_count",
                        "statement")
    new = after.values("chat_postgres_query_duration_seconds_count",
                       "statement")
    assert new.pop("chat_outbox") >= old.pop("chat_outbox")
    assert new == old


# --------------------------------------------------------------------------
# reasons as labels

def test_close_reasons_are_labels(nginx):
    ng = nginx("location = /chat/ws { chat_websocket; }\n"
               "location = /chat/status { chat_status; }",
               http="chat_max_message_size 1k;")
    m = metrics(ng)
    assert m.values("chat_closes_total", "reason") == \
        {r: 0 for r in CLOSE_REASONS}

    ws = RawWS.connect(ng.port, token=make_token(ng.key, "alice"))
    ws.recv_json()
    ws.send_frame(OP_BINARY, b"\x00")
    assert ws.expect_close()[0] == 1003
    ws = RawWS.connect(ng.port, token=make_token(ng.key, "alice"))
    ws.recv_json()
    ws.send_frame(OP_TEXT, b"x" * 2000)
    assert ws.expect_close()[0] == 1009

    m = metrics(ng)
    want = {r: 0 for r in CLOSE_REASONS}
    want.update(protocol=1, limit=1)
    assert m.values("chat_closes_total", "reason") == want
    # one family, no counter per reason any more
    assert not re.search(r"^chat_closes_\w+_total", m.text, re.M)
    assert "# HELP chat_closes_total WebSocket connections the server " \
           "closed, by reason" in m.text


def test_auth_failure_reasons_are_labels(ng):
    key = ng.key
    want = {r: 0 for r in AUTH_REASONS}
    assert metrics(ng).values("chat_auth_failures_total", "reason") == want

    # WebSocket handshakes
    assert http_upgrade(ng.port).status == 401
    assert http_upgrade(ng.port,
                        token=tamper(make_token(key, "alice"))).status == 401
    assert http_upgrade(ng.port,
                        token=make_token(key, "alice", exp_in=-3600)
                        ).status == 401
    # REST requests
    assert http(ng, "GET", "/api/chat/unread",
                token="not.a.token").status == 401
    assert http(ng, "GET", "/api/chat/unread",
                token=make_token(key, "alice",
                                 nbf=int(time.time()) + 3600)).status == 401
    assert http(ng, "GET", "/api/chat/unread",
                token=make_token(key, None)).status == 401
    # auth.refresh on a connection
    with ws_connect(ng, make_token(key, "alice")) as c:
        r = c.request("auth.refresh", token=make_token(key, "bob"))
        assert r["error"]["code"] == "forbidden"
        r = c.request("auth.refresh",
                      token=tamper(make_token(key, "alice")))
        assert r["error"]["code"] == "unauthorized"
        c.ok("auth.refresh", token=make_token(key, "alice"))

    want.update(missing_token=1, bad_signature=2, expired=1, malformed=1,
                not_yet_valid=1, bad_claims=1, wrong_user=1)
    m = metrics(ng)
    assert m.values("chat_auth_failures_total", "reason") == want
    assert "# HELP chat_auth_failures_total Requests refused as " \
           "unauthenticated" in m.text


def test_auth_failure_reasons_of_the_token_rules(nginx):
    ng = nginx("location = /chat/ws { chat_websocket; }\n"
               "location = /chat/status { chat_status; }",
               http="chat_jwt_issuer https://app.example; "
                    "chat_jwt_audience chat;")
    key = ng.key
    good = dict(iss="https://app.example", aud="chat")
    assert http_upgrade(ng.port, token=make_token(key, "a", **good)
                        ).status == 101
    assert http_upgrade(ng.port, token=make_token(key, "a", alg="HS384",
                                                  **good)).status == 401
    assert http_upgrade(ng.port, token=make_token(
        key, "a", iss="https://evil.example", aud="chat")).status == 401
    assert http_upgrade(ng.port, token=make_token(
        key, "a", iss="https://app.example", aud="other")).status == 401
    got = {k: v for k, v in metrics(ng).values("chat_auth_failures_total",
                                               "reason").items() if v}
    assert got == {"algorithm": 1, "wrong_issuer": 1, "wrong_audience": 1}


def test_every_verifier_refusal_has_its_reason():
    """The reasons are told apart by the verifier's words: each refusal
    of ngx_http_chat_jwt_verify() is in auth.c's table, so that none
    falls into "other" unnoticed."""
    jwt = open(os.path.join(REPO, "src", "ngx_http_chat_jwt.c")).read()
    auth = open(os.path.join(REPO, "src", "ngx_http_chat_auth.c")).read()
    verify = jwt[jwt.index("\nngx_http_chat_jwt_verify("):]
    words = set(re.findall(r'\*err = "([^"]+)"', verify))
    # the caller's mistakes, not the token's
    words -= {"no verification key", "no verification options"}
    assert len(words) >= 14, words
    table = set(re.findall(r'\{ "([^"]+)", NGX_HTTP_CHAT_AUTH_\w+ \}', auth))
    assert words - table == set()


# --------------------------------------------------------------------------
# REST

def test_rest_requests_are_counted_by_route_and_status(ng, nginx):
    tok = make_token(ng.key, "alice")
    m = metrics(ng)
    series = m.series("chat_http_requests_total")
    assert {s["route"] for s, _ in series} == set(ROUTES)
    assert all(v == 0 for _, v in series)
    assert {s["status"] for s, _ in series} == {"2xx", "4xx", "5xx"}

    assert http(ng, "GET", "/api/chat/users/me", token=tok).status == 200
    assert http(ng, "HEAD", "/api/chat/users/me", token=tok).status == 200
    assert http(ng, "POST", "/api/chat/users/me", token=tok,
                json_body={}).status == 405
    assert http(ng, "GET", "/api/chat/conversations/424242",
                token=tok).status == 404
    assert http(ng, "GET", "/api/chat/unread").status == 401
    assert http(ng, "GET", "/api/chat/no/such/route",
                token=tok).status == 404

    m = metrics(ng)
    got = {(s["route"], s["status"]): v
           for s, v in m.series("chat_http_requests_total") if v}
    assert got == {("users/me", "2xx"): 2, ("users/me", "4xx"): 1,
                   ("conversations/{id}", "4xx"): 1, ("unread", "4xx"): 1,
                   ("unknown", "4xx"): 1}

    # without storage, storage routes answer 503: 5xx
    n2 = nginx(LOCATIONS)
    assert http(n2, "GET", "/api/chat/unread",
                token=make_token(n2.key, "alice")).status == 503
    m2 = metrics(n2)
    assert m2.get("chat_http_requests_total", route="unread",
                  status="5xx") == 1


# --------------------------------------------------------------------------
# build info, pid labels

def test_build_info(nginx):
    import psycopg
    ng = nginx("location = /chat/status { chat_status; }")
    m = metrics(ng)
    series = m.series("chat_build_info")
    assert len(series) == 1
    labels, value = series[0]
    assert value == 1
    assert set(labels) == {"version", "nginx", "libpq", "jansson",
                           "openssl"}

    header = open(os.path.join(REPO, "src", "ngx_http_chat.h")).read()
    assert labels["version"] == re.search(
        r'#define NGX_HTTP_CHAT_VERSION\s+"([^"]+)"', header).group(1)

    v = subprocess.run([NGINX, "-v"], capture_output=True, text=True)
    assert labels["nginx"] == re.search(r"nginx/(\S+)", v.stderr).group(1)

    pq = psycopg.pq.version()       # the same libpq, as psycopg sees it
    assert labels["libpq"] == "%d.%d" % (pq // 10000, pq % 10000)

    ssl = subprocess.run(["openssl", "version"], capture_output=True,
                         text=True).stdout.split()
    assert labels["openssl"] == ssl[1]

    jansson = subprocess.run(["dpkg-query", "-W", "-f=${Version}",
                              "libjansson4"], capture_output=True,
                             text=True).stdout
    assert jansson.startswith(labels["jansson"]), (jansson, labels)


def test_no_pid_label_and_slots_across_a_reload(nginx):
    ng = nginx("location = /chat/ws { chat_websocket; }\n"
               "location = /chat/status { chat_status; }",
               http="chat_zone chat 4m;", workers=2)
    for _ in range(2):
        m = metrics(ng)
        assert "pid=" not in m.text
        for name in ("chat_queue_bytes", "chat_queue_dropped_total",
                     "chat_queue_delivered_total"):
            slots = [s for s, _ in m.series(name)]
            assert len(slots) == 2, (name, slots)
            assert all(set(s) == {"slot"} and s["slot"].isdigit()
                       for s in slots), slots
        ng.reload()
    # the new workers took slots again: as many series, no new label
    assert len(metrics(ng).series("chat_queue_bytes")) == 2


# --------------------------------------------------------------------------
# Debian's promtool and Prometheus

def test_promtool_check_metrics(ng):
    promtool = tool("promtool")
    some_traffic(ng)
    text = scrape(ng)
    assert "chat_postgres_query_duration_seconds_bucket" in text
    r = subprocess.run([promtool, "check", "metrics"], input=text,
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout + r.stderr == "", \
        r.stdout + r.stderr


def test_promtool_check_and_test_rules():
    promtool = tool("promtool")
    r = subprocess.run([promtool, "check", "rules", ALERTS],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 8 rules found" in r.stdout
    # every rule fires on the series the module serves, with its
    # annotations filled in (t/data/alerts_test.yml)
    r = subprocess.run([promtool, "test", "rules", ALERT_TESTS],
                       capture_output=True, text=True,
                       cwd=os.path.dirname(ALERT_TESTS))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


class Prometheus:
    """Debian's prometheus, in a temporary directory, on a free port."""

    def __init__(self, targets):
        self.dir = tempfile.mkdtemp(prefix="prometheus-", dir=base_dir())
        self.port = free_port()
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            json.dump({
                "global": {"scrape_interval": "1s",
                           "evaluation_interval": "1s"},
                "rule_files": [ALERTS],
                "scrape_configs": [{
                    "job_name": "chat", "metrics_path": "/chat/status",
                    "static_configs": [{"targets": targets}]}]}, f)
        self.log = os.path.join(self.dir, "prometheus.log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [tool("prometheus"), "--config.file=" + config,
                 "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
                 "--web.listen-address=127.0.0.1:%d" % self.port,
                 "--web.console.templates=" + self.dir,
                 "--web.console.libraries=" + self.dir],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def api(self, path, **params):
        url = "http://127.0.0.1:%d/api/v1/%s?%s" % (
            self.port, path, urllib.parse.urlencode(params))
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            return json.load(e)

    def query(self, expr):
        """The result of an instant query; fails on a query error."""
        r = self.api("query", query=expr)
        assert r["status"] == "success", (expr, r)
        return r["data"]["result"]

    def wait(self, expr, timeout=30):
        """Polls until expr has a result; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail("prometheus exited:\n" + tail(read_text(self.log)))
            try:
                result = self.query(expr)
                if result:
                    return result
            except OSError:
                pass            # not listening yet
            if time.monotonic() > deadline:
                pytest.fail("no result for %s after %s s:\n%s"
                            % (expr, timeout, tail(read_text(self.log))))
            time.sleep(0.25)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def dashboard_queries():
    """Every PromQL expression of the dashboard, its variables set."""
    doc = json.load(open(DASHBOARD))
    exprs = []
    for p in doc["panels"]:
        for t in p.get("targets", []):
            exprs.append((p["title"], t["expr"]
                          .replace("$__rate_interval", "1m")
                          .replace("$instance", ".*")))
    return doc, exprs


def test_prometheus_scrapes_the_module(ng):
    some_traffic(ng)
    prom = Prometheus(["127.0.0.1:%d" % ng.port])
    try:
        up = prom.wait('up{job="chat"} == 1')
        assert up[0]["metric"]["instance"] == "127.0.0.1:%d" % ng.port

        # the families parse: a histogram, labelled counters, build info
        got = prom.wait('chat_request_duration_seconds_count'
                        '{type="message.send"}')
        assert got[0]["value"][1] == "5"
        got = prom.wait('sum(chat_postgres_query_duration_seconds_count)')
        assert int(got[0]["value"][1]) >= 9
        got = prom.wait('chat_build_info')
        assert got[0]["metric"]["version"] and got[0]["value"][1] == "1"
        got = prom.wait('chat_closes_total{reason="slow"}')
        assert got[0]["value"][1] == "0"
        got = prom.wait('chat_auth_failures_total{reason="expired"}')
        got = prom.wait('chat_http_requests_total'
                        '{route="users/me",status="2xx"}')
        assert got[0]["value"][1] == "1"

        # a quantile over the scraped buckets: between two of the bounds
        with ws_connect(ng, make_token(ng.key, "carol")) as c:
            for _ in range(5):
                c.ok("ping")
                time.sleep(0.3)
        q = prom.wait('histogram_quantile(0.5, sum by (le) (rate('
                      'chat_request_duration_seconds_bucket{type="ping"}'
                      '[1m])))')
        assert 0 < float(q[0]["value"][1]) <= 10

        # every panel of the dashboard asks a valid query, and the
        # panels of what happened show it
        doc, exprs = dashboard_queries()
        empty = []
        for title, expr in exprs:
            if not prom.query(expr):
                empty.append(title)
        for title in ("Versions", "Request latency p99, by type",
                      "PostgreSQL query latency",
                      "Closes per second, by reason",
                      "REST requests per second, by status"):
            assert title not in empty, (title, empty)

        # the alert rules loaded, evaluate, and none fires on a healthy
        # server
        deadline = time.monotonic() + 20
        while True:
            groups = prom.api("rules")["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            if rules and all(r.get("lastEvaluation", "").startswith("20")
                             for r in rules):
                break
            assert time.monotonic() < deadline, rules
            time.sleep(0.5)
        assert len(rules) == 8
        assert all(r["health"] == "ok" for r in rules), rules
        for r in rules:
            assert r["annotations"]["summary"], r
            assert len(r["annotations"]["description"]) > 80, r
            assert r["labels"]["severity"] in ("warning", "critical"), r
        assert [r["name"] for r in rules if r["state"] != "inactive"] == []
    finally:
        prom.stop()


def test_dashboard_is_importable():
    """The JSON Grafana imports: a datasource variable instead of a fixed
    datasource, unique panel ids, every panel placed on the 24-column grid,
    the panels the operations kit promises."""
    doc, exprs = dashboard_queries()
    assert doc["uid"] and doc["title"] and doc["schemaVersion"] >= 30
    names = [v["name"] for v in doc["templating"]["list"]]
    assert names == ["datasource", "instance"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for p in doc["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus",
                                       "uid": "${datasource}"}
            assert p["targets"]
    text = " ".join(e for _, e in exprs)
    for metric in ("chat_connections", "chat_messages_in_total",
                   "chat_request_duration_seconds_bucket",
                   "chat_postgres_query_duration_seconds_bucket",
                   "chat_postgres_connections",
                   "chat_postgres_unavailable_total",
                   "chat_zone_used_bytes", "chat_queue_dropped_total",
                   "chat_closes_total", "chat_auth_failures_total",
                   "chat_http_requests_total", "chat_build_info"):
        assert metric in text, metric


# the counters outlive a reload (the chat_status zone is kept); so do the
# names of the statements they count, storage or not
STATUS_LOCATIONS = """
        location /api/chat/ { chat_api; %s }
        location = /chat/ws { chat_websocket; }
        location = /chat/status { chat_status; }
"""


@pytest.mark.parametrize("chat_env", [dict(locations=STATUS_LOCATIONS)],
                         indirect=True)
def test_statement_names_survive_a_reload_without_storage(chat_env):
    from chatlib import direct

    chat = chat_env.start()
    direct(chat.conn("alice"), "bob")
    chat.ok("bob", "GET", "conversations")

    def counted(text):
        return sorted(re.findall(
            r'^chat_postgres_query_duration_seconds_count'
            r'\{statement="([^"]+)"\}', text, re.M))

    before = counted(http(chat.ng, "GET", "/chat/status").body.decode())
    assert "chat_conversation_create" in before
    assert "other" not in before

    chat.ng.reload(http="")
    after = counted(http(chat.ng, "GET", "/chat/status").body.decode())
    assert after == before
