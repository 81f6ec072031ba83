"""Issue 13, the configuration's and the edges' findings of the security
review, each against real nginx, PostgreSQL and clients:

  M4  nginx.conf.example minted tokens for anyone: it is now shaped for
      production, and the development parts live in demo/nginx-demo.conf
      (for 127.0.0.1 only), which `make run` adds; chat_dev_token on a
      server reachable beyond loopback is an [alert]
  L8  the example has send and typing rate limits, and no echo endpoint
  L4  the example's chat locations log no token
  L1  an origin's scheme counts (https is not http), default ports do not
  I4  same-origin mode trusts Host: documented (docs/directives.md)
  I7  the token cookie counts only on a request with an Origin header
  I1  a token's name has no control characters and at most 200 characters,
      its avatar is an https:// URL or a path of this site
  I6  the demo page does not sign in from its URL (web/browser-test/,
      run by test_browser.py)

L2 (any origin with a token cookie) is refused by nginx -t:
test_config_checks.py.  I2 (ES256 high-S) is a decision, not a change:
both forms verify (t/unit/test_jwt.c pins it, docs/protocol.md says why).
The zone's log context, written past the one byte it pointed at, over
the slab pool's page lists: a zone with a long name crashed workers (at
the end; AddressSanitizer does not see it, the memory is one mapping).
"""

import http.client
import os
import re
import signal
import socket
import subprocess
import time

import pytest

import chatlib
from chatlib import http_upgrade, make_token
from conftest import (NGINX, MODULE, REPO, bad_log_lines, base_dir,
                      free_port, port_open, read_text, tail)

EXAMPLE = os.path.join(REPO, "nginx.conf.example")
DEMO = os.path.join(REPO, "demo", "nginx-demo.conf")
RENDER = os.path.join(REPO, "scripts", "render-conf.sh")
README = os.path.join(REPO, "README.md")

LOG_FORMAT = ("log_format chat '$remote_addr $chat_user [$time_local] "
              "\"$request_method $uri\" $status';")


def read(path):
    with open(path) as f:
        return f.read()


def directives(text):
    """The configuration without its comments."""
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def location(text, name):
    """The body of `location <name> {...}` (no nested blocks)."""
    m = re.search(r"location\s+%s\s*\{(.*?)\n\s*\}" % re.escape(name), text,
                  re.S)
    assert m, "no location %s" % name
    return m.group(1)


# --------------------------------------------------------------------------
# the example and the demo, as text

def test_m4_example_mints_no_tokens():
    """M4, L8: what the example enables, anyone who copies it enables."""
    conf = directives(read(EXAMPLE))
    assert "chat_dev_token" not in conf
    assert "chat_echo" not in conf
    assert "/chat/dev/token" not in conf
    assert "chat_max_message_size" not in conf
    assert "chat_max_fragments" not in conf


def test_l8_example_has_rate_limits():
    conf = directives(read(EXAMPLE))
    assert re.search(r"^\s*chat_send_rate\s+\d+r/[sm]( burst=\d+)?;", conf,
                     re.M), conf
    assert re.search(r"^\s*chat_typing_rate\s+\d+r/[sm]( burst=\d+)?;", conf,
                     re.M), conf


def test_l4_example_logs_no_token():
    """L4: the example logs $uri, never $request (whose query holds
    access_token), in every location: a token sent to a wrong path is a
    token too."""
    conf = directives(read(EXAMPLE))
    assert LOG_FORMAT in conf
    logs = re.findall(r"access_log\s+[^;]*;", conf)
    assert logs and all(re.match(r"access_log\s+\S+\s+chat;", a)
                        for a in logs), logs


def test_m4_demo_holds_the_development_parts_for_this_machine():
    """M4: the dev route and the echo only for 127.0.0.1, in a file of its
    own that says what it is."""
    text = read(DEMO)
    assert "NEVER COPY" in text
    conf = directives(text)
    for name in ("= /chat/dev/token", "= /chat/echo"):
        body = location(conf, name)
        assert re.search(r"allow 127\.0\.0\.1;\s*deny all;", body), body
    assert "chat_dev_token;" in location(conf, "= /chat/dev/token")


def test_m4_readme_never_says_to_copy_the_demo():
    """The README names the demo's development parts as the demo's, and
    never tells anyone to copy a configuration that mints tokens."""
    text = read(README)
    assert "demo/nginx-demo.conf" in text
    for m in re.finditer(r"[^.]*\bcop(y|ies|ied)\b[^.]*\.", text):
        assert "nginx-demo" not in m.group(0), m.group(0)
    assert "copy it and replace the placeholders" not in read(EXAMPLE)


# --------------------------------------------------------------------------
# the example and the demo, running

class Rendered:
    """nginx running nginx.conf.example (or the demo) as scripts/render-conf.sh
    renders it, with this suite's PostgreSQL."""

    def __init__(self, mode, postgres):
        self.prefix = os.path.join(base_dir(), "conf-%s-%d" % (
            mode, free_port()))
        os.makedirs(os.path.join(self.prefix, "logs"))
        os.makedirs(os.path.join(self.prefix, "tmp"))
        # the demo's upload store, as scripts/run.sh makes it
        os.makedirs(os.path.join(self.prefix, "uploads"))
        if os.getuid() == 0:
            os.chown(os.path.join(self.prefix, "uploads"), 65534, -1)
        os.chmod(self.prefix, 0o755)
        self.key = os.urandom(64)
        fd = os.open(os.path.join(self.prefix, "jwt.key"),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.key)
        self.port = free_port()
        self.conf = os.path.join(self.prefix, "nginx.conf")
        env = dict(os.environ, CHAT_PREFIX=self.prefix,
                   CHAT_PORT=str(self.port), CHAT_MODULE=MODULE,
                   CHAT_WEB=os.path.join(REPO, "web"),
                   CHAT_PGSOCKET=postgres.socket_dir)
        subprocess.run(["bash", RENDER, mode, self.conf], env=env,
                       check=True)
        self.proc = None

    def nginx_t(self):
        return subprocess.run(
            [NGINX, "-t", "-p", self.prefix + "/", "-c", self.conf,
             "-e", self.error_log_path], capture_output=True, text=True)

    @property
    def error_log_path(self):
        return os.path.join(self.prefix, "logs", "error.log")

    def access_log(self):
        return read_text(os.path.join(self.prefix, "logs", "access.log"))

    def start(self):
        self.proc = subprocess.Popen(
            [NGINX, "-p", self.prefix + "/", "-c", self.conf,
             "-e", self.error_log_path, "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            assert self.proc.poll() is None, tail(
                read_text(self.error_log_path))
            assert time.monotonic() < deadline, "nginx does not answer"
            time.sleep(0.05)
        return self

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail("nginx did not exit on QUIT")
        self.proc = None
        bad = bad_log_lines(read_text(self.error_log_path))
        assert not bad, bad

    def token(self, sub, **kw):
        return make_token(self.key, sub, **kw)


@pytest.fixture
def rendered(postgres):
    started = []

    def make(mode):
        postgres.reset()
        r = Rendered(mode, postgres)
        started.append(r)
        return r.start()

    yield make
    for r in started:
        r.stop()


def get_from(port, path, source="127.0.0.1"):
    """GET path from a given local address (127.0.0.2 is loopback too, but
    not the address the demo allows)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5,
                                      source_address=(source, 0))
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def upgrade_from(port, path, token, source):
    sock = socket.socket()
    sock.settimeout(5)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    r = http_upgrade(port, path, token=token, token_in="query", sock=sock)
    if r.sock is not None:
        r.sock.close()
    return r.status


def send_burst(ng, n=60):
    """n message.send and n typing as fast as one socket goes: the error
    codes met."""
    ws = chatlib.ws_connect(ng.port, ng.token("alice"))
    try:
        cid = ws.ok("conversation.create", kind="group", title="flood",
                    members=["bob"])["conversation"]["id"]
        codes = {"send": set(), "typing": set()}
        for i in range(n):
            r = ws.request("message.send", conversation_id=cid,
                           body="m%d" % i, client_msg_id="m%d" % i)
            codes["send"].add(r.get("error", {}).get("code", "ok"))
            r = ws.request("typing", conversation_id=cid, active=True)
            codes["typing"].add(r.get("error", {}).get("code", "ok"))
        return codes
    finally:
        ws.close()


def test_m4_l8_l4_example_live(rendered):
    """The example as it is: no token for the asking, no echo, rate
    limits, and the token that a browser puts into the URL stays out of
    the access log."""
    ng = rendered("example")
    assert get_from(ng.port, "/chat/dev/token?user=alice")[0] == 404
    tok = ng.token("alice")
    assert upgrade_from(ng.port, "/chat/echo", tok, "127.0.0.1") == 404
    assert http_upgrade(ng.port, "/chat/ws", token=tok, token_in="query"
                        ).status == 101
    assert chatlib.http(ng.port, "GET", "/api/chat/users/me?access_token="
                        + tok).status == 200
    codes = send_burst(ng)
    assert codes == {"send": {"ok", "rate_limited"},
                     "typing": {"ok", "rate_limited"}}, codes
    log = ng.access_log()
    assert "/chat/ws" in log and "/api/chat/users/me" in log
    assert " alice [" in log
    assert tok not in log and "access_token" not in log


def test_m4_demo_live(rendered):
    """The demo (make run): development tokens and the echo from
    127.0.0.1 only, and no rate limits for the quick benchmarks."""
    ng = rendered("demo")
    status, body = get_from(ng.port, "/chat/dev/token?user=alice")
    assert status == 200, body
    import json
    tok = json.loads(body)["token"]
    assert http_upgrade(ng.port, "/chat/ws", token=tok).status == 101
    assert upgrade_from(ng.port, "/chat/echo", tok, "127.0.0.1") == 101
    # another loopback address is another machine to allow/deny
    assert get_from(ng.port, "/chat/dev/token?user=alice",
                    source="127.0.0.2")[0] == 403
    assert upgrade_from(ng.port, "/chat/echo", tok, "127.0.0.2") == 403
    assert send_burst(ng) == {"send": {"ok"}, "typing": {"ok"}}


def test_m4_rendered_configurations_pass_nginx_t(postgres):
    """Both pass nginx -t; only the demo warns of development tokens."""
    for mode in ("example", "demo"):
        r = Rendered(mode, postgres).nginx_t()
        assert r.returncode == 0, r.stderr
        assert ("chat_dev_token" in r.stderr) == (mode == "demo"), r.stderr
        assert "[alert]" not in r.stderr and "[emerg]" not in r.stderr


# --------------------------------------------------------------------------
# M4: chat_dev_token where others can reach it

DEV = "location = /chat/dev/token { chat_dev_token; }"


@pytest.mark.parametrize("listen,alert", [
    ("127.0.0.1:{port}", False),
    ("127.0.0.2:{port}", False),
    ("[::1]:{port}", False),
    ("unix:{prefix}/dev.sock", False),
    ("{port}", True),                   # every address
    ("0.0.0.0:{port}", True),
    ("[::]:{port}", True),
])
def test_m4_dev_token_beyond_loopback_is_an_alert(nginx, listen, alert):
    port = free_port()
    server = ("server { listen %s; %s }"
              % (listen.format(port=port, prefix=base_dir()), DEV))
    rc, out = nginx.check_config("", http=server)
    assert rc == 0, out
    assert "chat_dev_token\" mints a token for anyone" in out
    got = re.findall(r"\[alert\] \"chat_dev_token\" in \S+:\d+ mints tokens "
                     r"for anyone who reaches (\S+), which is not a "
                     r"loopback address", out)
    assert bool(got) == alert, out


def test_m4_dev_token_alert_knows_listens_after_the_location(nginx):
    """A server's listen may come after its locations."""
    server = "server { %s listen 0.0.0.0:%d; }" % (DEV, free_port())
    rc, out = nginx.check_config("", http=server)
    assert rc == 0 and "[alert]" in out, out
    # the test fixture's own server (127.0.0.1) stays quiet
    rc, out = nginx.check_config(DEV)
    assert rc == 0 and "[alert]" not in out, out


# --------------------------------------------------------------------------
# L1: the scheme of an origin

WS = "location = /chat/ws { chat_websocket; }"
API = "location /api/chat/ { chat_api; }"
COOKIE = "chat_token_cookie chat_token;"


def test_l1_websocket_https_origin_on_http_is_refused(nginx):
    n = nginx(WS)
    tok = make_token(n.key, "alice")
    here = "127.0.0.1:%d" % n.port
    for origin in ("https://" + here, "HTTPS://" + here, "ws://" + here,
                   "wss://" + here, "ftp://" + here):
        r = http_upgrade(n.port, token=tok, origin=origin)
        assert r.status == 403, (origin, r)
        assert r.json()["error"]["message"] == "origin not allowed"
    assert http_upgrade(n.port, token=tok, origin="http://" + here
                        ).status == 101


def test_l1_default_ports(nginx):
    """Host and Origin may name the scheme's default port or not."""
    n = nginx(WS)
    tok = make_token(n.key, "alice")
    for host, origin, status in [
            ("chat.example", "http://chat.example:80", 101),
            ("chat.example:80", "http://chat.example", 101),
            ("chat.example:80", "http://chat.example:80", 101),
            ("chat.example:443", "http://chat.example", 403),
            ("chat.example", "https://chat.example", 403),
            ("chat.example", "https://chat.example:443", 403),
            ("chat.example", "http://chat.example:8080", 403)]:
        r = http_upgrade(n.port, token=tok, origin=origin,
                         headers={"Host": host})
        assert r.status == status, (host, origin, r)
        if r.sock is not None:
            r.sock.close()


def test_l1_rest_https_origin_on_http_gets_no_cors(nginx):
    n = nginx(API)
    tok = make_token(n.key, "alice")
    r = chatlib.http(n, "GET", "/api/chat/users/me", token=tok,
                     headers={"Origin": "https://127.0.0.1:%d" % n.port})
    assert r.status == 403, r
    assert "access-control-allow-origin" not in r.headers
    r = chatlib.http(n, "GET", "/api/chat/users/me", token=tok,
                     headers={"Origin": "http://127.0.0.1:%d" % n.port})
    assert r.status == 200, r
    assert r.headers["access-control-allow-origin"] == \
        "http://127.0.0.1:%d" % n.port


def test_l1_cookie_with_the_other_scheme_is_refused(nginx):
    """The review's case: a page of plain http://host opening the
    WebSocket of https://host with the visitor's cookie."""
    n = nginx(WS + "\n" + API, http=COOKIE)
    tok = make_token(n.key, "alice")
    cookie = {"Cookie": "chat_token=" + tok}
    r = http_upgrade(n.port, headers=dict(
        cookie, Origin="https://127.0.0.1:%d" % n.port))
    assert r.status == 403, r
    r = chatlib.http(n, "GET", "/api/chat/users/me", headers=dict(
        cookie, Origin="https://127.0.0.1:%d" % n.port))
    assert r.status == 403, r


def test_l1_listed_origins_compare_schemes_and_default_ports(nginx):
    n = nginx("location = /chat/ws { chat_websocket; chat_allowed_origins "
              "https://app.example http://dev.example:8080; }")
    tok = make_token(n.key, "alice")
    for origin, status in [("https://app.example", 101),
                           ("https://app.example:443", 101),
                           ("http://app.example", 403),
                           ("http://app.example:443", 403),
                           ("wss://app.example", 403),
                           ("http://dev.example:8080", 101),
                           ("https://dev.example:8080", 403)]:
        r = http_upgrade(n.port, token=tok, origin=origin)
        assert r.status == status, (origin, r)
        if r.sock is not None:
            r.sock.close()


# --------------------------------------------------------------------------
# I7: a cookie's token only with an Origin

NO_ORIGIN = "the token cookie counts only with an Origin header"


def test_i7_websocket_cookie_without_origin_is_refused(nginx):
    n = nginx(WS, http=COOKIE)
    tok = make_token(n.key, "alice")
    for extra in ({}, {"Sec-Fetch-Site": "cross-site"}):
        r = http_upgrade(n.port, headers=dict(
            {"Cookie": "chat_token=" + tok}, **extra))
        assert r.status == 401, r
        assert r.json() == {"error": {"code": "unauthorized",
                                      "message": NO_ORIGIN}}
    r = http_upgrade(n.port, headers={
        "Cookie": "chat_token=" + tok,
        "Origin": "http://127.0.0.1:%d" % n.port})
    assert r.status == 101, r
    r.sock.close()
    # a token the client sends itself needs no Origin (not a browser)
    for kw in (dict(token=tok), dict(token=tok, token_in="query")):
        r = http_upgrade(n.port, headers={"Cookie": "chat_token=x"}, **kw)
        assert r.status == 101, (kw, r)
        r.sock.close()


def test_i7_rest_cookie_without_origin_is_refused(nginx, postgres):
    postgres.reset()
    n = nginx(API, http=COOKIE + 'chat_postgres "%s";' % postgres.dsn)
    tok = make_token(n.key, "alice")
    cookie = {"Cookie": "chat_token=" + tok}
    # an <img src> or a top-level navigation: a GET without Origin
    r = chatlib.http(n, "GET", "/api/chat/users/me", headers=cookie)
    assert r.status == 401, r
    assert r.json()["error"]["message"] == NO_ORIGIN
    for site in ("cross-site", "same-site", "none", "same-origin, x"):
        r = chatlib.http(n, "GET", "/api/chat/users/me", headers=dict(
            cookie, **{"Sec-Fetch-Site": site}))
        assert r.status == 401, (site, r)
    # a same-origin fetch() GET carries no Origin, but the browser says
    # where it comes from (pages cannot set Sec-Fetch-Site)
    r = chatlib.http(n, "GET", "/api/chat/users/me", headers=dict(
        cookie, **{"Sec-Fetch-Site": "same-origin"}))
    assert r.status == 200, r
    # a POST without Origin (not a browser's) changes nothing, whatever
    # else it says
    for extra in ({}, {"Sec-Fetch-Site": "same-origin"}):
        r = chatlib.http(n, "POST", "/api/chat/conversations",
                         headers=dict(cookie, **extra),
                         json_body={"kind": "group", "title": "x"})
        assert r.status == 401, r
    assert postgres.query("SELECT count(*) FROM chat.conversations") == \
        [(0,)]
    same = dict(cookie, Origin="http://127.0.0.1:%d" % n.port)
    r = chatlib.http(n, "POST", "/api/chat/conversations", headers=same,
                     json_body={"kind": "group", "title": "x"})
    assert r.status == 201, r
    assert chatlib.http(n, "GET", "/api/chat/users/me", token=tok
                        ).status == 200


# --------------------------------------------------------------------------
# I1: name and avatar claims

def refused_with(n, tok, message):
    r = http_upgrade(n.port, token=tok)
    assert r.status == 401, r
    assert r.json()["error"]["message"] == message, r


@pytest.mark.parametrize("claims,message", [
    (dict(name="\u001b[31mADMIN\u0007"), "invalid name claim"),
    (dict(name="Alice\r\nX-Admin: 1"), "invalid name claim"),
    (dict(name="tab\there"), "invalid name claim"),
    (dict(name="del\u007f"), "invalid name claim"),
    (dict(name="n" * 201), "name claim too long"),
    (dict(name="\u00e9" * 201), "name claim too long"),
    (dict(avatar="javascript:alert(1)"), "invalid avatar claim"),
    (dict(avatar="data:image/svg+xml,<svg onload=alert(1)>"),
     "invalid avatar claim"),
    (dict(avatar="http://img.example/a.png"), "invalid avatar claim"),
    (dict(avatar="//evil.example/a.png"), "invalid avatar claim"),
    (dict(avatar="/\\evil.example/a.png"), "invalid avatar claim"),
    (dict(avatar="https://img.example/a\n.png"), "invalid avatar claim"),
    (dict(avatar="a.png"), "invalid avatar claim"),
])
def test_i1_bad_name_or_avatar_claims_are_refused(nginx, claims, message):
    n = nginx(WS)
    refused_with(n, make_token(n.key, "mallory", **claims), message)


def test_i1_names_and_avatars_that_pass_are_stored(nginx, postgres):
    """200 characters, as the directory keeps them (256 bytes used to pass
    the token and be dropped, silently, by chat.api_user_upsert)."""
    postgres.reset()
    n = nginx(WS, http='chat_postgres "%s";' % postgres.dsn)
    for sub, name, avatar in [
            ("u1", "\u00e9" * 200, "https://img.example/a.png"),
            ("u2", "J\u00fcrgen \"J\" <b>", "/avatars/u2.png"),
            ("u3", "n" * 200, None)]:
        ws = chatlib.ws_connect(n.port, make_token(n.key, sub, name=name,
                                                   avatar=avatar))
        assert ws.welcome["user"]["name"] == name
        ws.close()
        deadline = time.monotonic() + 5
        while postgres.query("SELECT name, avatar FROM chat.users "
                             "WHERE id = %s", (sub,)) != [(name, avatar)]:
            assert time.monotonic() < deadline, postgres.query(
                "SELECT id, name, avatar FROM chat.users")
            time.sleep(0.05)


# --------------------------------------------------------------------------
# the zone's log context: ngx_slab_init() leaves it pointing at a one-byte
# field of the pool, and " in chat_zone \"NAME\"" was written there, over
# the pool's fields and then its page lists: a long name crashed workers

@pytest.mark.parametrize("length", [4, 200, 1000])
def test_zone_long_name_keeps_the_slab_pool_whole(nginx, length):
    n = nginx(WS, http="chat_zone %s 8m;" % ("z" * length), workers=2)
    socks = [chatlib.ws_connect(n.port, make_token(n.key, "u%d" % i))
             for i in range(20)]
    for s in socks:
        s.ok("ping")
        s.close()
