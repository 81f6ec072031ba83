"""The WebSocket opening handshake (docs/protocol.md, "The handshake"):
every rule of the table, each refusal checked for its exact status, JSON
body and the absence of an upgrade; the accept key, the subprotocol, the
origin rules, bytes sent before the 101, the access log, the counters of
chat_status and the configuration checks."""

import base64
import hashlib
import json
import os
import re
import signal
import socket
import struct
import time

import pytest

import chatlib
from chatlib import OP_TEXT, RawWS
from conftest import free_port

# RFC 6455, section 1.3
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

WS = "location /chat/ws { chat_websocket; }"
STATUS = "location = /chat/status { chat_status; }"


# --------------------------------------------------------------------------
# a raw HTTP client: any method, version, header order and repetition

class Resp:
    def __init__(self, status, reason, headers, body, sock=None, rest=b""):
        self.status = status
        self.reason = reason
        self.headers = headers          # [(lowercase name, value)]
        self.body = body
        self.sock = sock                # open after a 101
        self.rest = rest

    def all(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def header(self, name):
        """The value of a header sent once, None if absent; a header sent
        twice fails the test."""
        values = self.all(name)
        assert len(values) <= 1, "%s sent %d times" % (name, len(values))
        return values[0] if values else None

    def json(self):
        return json.loads(self.body)

    def ws(self):
        return RawWS(self.sock, self.rest)

    def close(self):
        if self.sock is not None:
            self.sock.close()

    def __repr__(self):
        return "<Resp %d %r %r>" % (self.status, self.headers, self.body)


def send_raw(port, data, head_request=False, timeout=5):
    """Sends bytes on a fresh connection and parses one HTTP response.
    After a 101 the socket stays open (Resp.sock, bytes past the head in
    Resp.rest); otherwise it is closed."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed before a response "
                                     "head: %r" % buf)
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.1 (\d{3}) (.*)$", lines[0])
        assert m, "bad status line %r" % lines[0]
        status, reason = int(m.group(1)), m.group(2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        if status == 101:
            return Resp(status, reason, headers, b"", sock, rest)

        lengths = [v for k, v in headers if k == "content-length"]
        assert len(lengths) == 1, "no Content-Length: %r" % headers
        n = 0 if head_request else int(lengths[0])
        body = rest
        while len(body) < n:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        assert len(body) == n, "body of %d bytes, expected %d" % (len(body),
                                                                  n)
        sock.close()
        return Resp(status, reason, headers, body)
    except BaseException:
        sock.close()
        raise


def build(port, method="GET", path="/chat/ws", version="HTTP/1.1",
          drop=(), replace=None, add=(), token=None, body=b""):
    """The bytes of a handshake request: the usual headers (Host, Upgrade,
    Connection, Sec-WebSocket-Key, Sec-WebSocket-Version, and the token
    as Bearer if given) minus drop, with replace's values instead, then
    the add pairs (which may repeat a header), then the body."""
    hdrs = [["Host", "127.0.0.1:%d" % port], ["Upgrade", "websocket"],
            ["Connection", "Upgrade"], ["Sec-WebSocket-Key", RFC_KEY],
            ["Sec-WebSocket-Version", "13"]]
    if token is not None:
        hdrs.append(["Authorization", "Bearer " + token])
    drop = {d.lower() for d in drop}
    hdrs = [h for h in hdrs if h[0].lower() not in drop]
    for name, value in (replace or {}).items():
        for h in hdrs:
            if h[0].lower() == name.lower():
                h[1] = value
    hdrs += [list(a) for a in add]
    text = "%s %s %s\r\n" % (method, path, version)
    text += "".join("%s: %s\r\n" % (k, v) for k, v in hdrs) + "\r\n"
    return text.encode("latin-1") + body


def handshake(n, head_request=False, extra=b"", **kw):
    return send_raw(n.port, build(n.port, **kw) + extra,
                    head_request=head_request)


def accept_of(key):
    return base64.b64encode(hashlib.sha1(
        key.encode() + chatlib.WS_GUID).digest()).decode()


def assert_refused(r, status, code, message):
    """An HTTP refusal with the JSON error body, and nothing upgraded."""
    assert r.status == status, r
    assert r.sock is None
    assert r.header("content-type") == "application/json", r
    assert r.json() == {"error": {"code": code, "message": message}}, r
    assert r.body.endswith(b"\n")
    assert r.header("content-length") == str(len(r.body))
    assert r.header("upgrade") is None, r
    assert r.header("sec-websocket-accept") is None, r
    assert r.header("sec-websocket-protocol") is None, r


def assert_upgraded(r, key=RFC_KEY, user="alice"):
    """A 101 with the right accept key; the first frame is the welcome of
    user.  Closes the socket.  Returns the welcome."""
    try:
        assert r.status == 101, r
        assert r.reason == "Switching Protocols"
        assert r.header("upgrade") == "websocket"
        assert r.header("connection") == "Upgrade"
        assert r.header("sec-websocket-accept") == accept_of(key)
        assert r.header("content-type") is None
        welcome = r.ws().recv_json()
        assert welcome["type"] == "welcome"
        assert welcome["user"]["id"] == user
        return welcome
    finally:
        r.close()


@pytest.fixture
def ws(nginx):
    """nginx with /chat/ws, and a valid token for alice."""
    n = nginx(WS)
    n.tok = chatlib.make_token(n.key, "alice")
    return n


BAD = "bad_request"
M_METHOD = "a WebSocket handshake is a GET request"
M_VERSION_HTTP = "a WebSocket handshake needs HTTP/1.1"
M_BODY = "a WebSocket handshake has no body"
M_UPGRADE = "Upgrade: websocket is missing"
M_CONNECTION = "Connection: upgrade is missing"
M_WSVERSION = "Sec-WebSocket-Version must be 13"
M_KEY = "Sec-WebSocket-Key must be the base64 of 16 bytes"
M_ORIGIN = "origin not allowed"


# --------------------------------------------------------------------------
# method, HTTP version, body

@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_method_not_get(ws, method):
    assert_refused(handshake(ws, method=method, token=ws.tok),
                   400, BAD, M_METHOD)


def test_method_head(ws):
    # HEAD gets the same status and headers, without the body
    r = handshake(ws, method="HEAD", token=ws.tok, head_request=True)
    assert r.status == 400
    assert r.header("content-type") == "application/json"
    expected = json.dumps({"error": {"code": BAD, "message": M_METHOD}},
                          separators=(",", ":")) + "\n"
    assert r.header("content-length") == str(len(expected))
    assert r.body == b""
    assert r.header("upgrade") is None
    assert r.header("sec-websocket-accept") is None


def test_http_10(ws):
    assert_refused(handshake(ws, version="HTTP/1.0", token=ws.tok),
                   400, BAD, M_VERSION_HTTP)


def test_body_content_length(ws):
    r = handshake(ws, token=ws.tok, add=[("Content-Length", "5")],
                  body=b"hello")
    assert_refused(r, 400, BAD, M_BODY)


def test_body_chunked(ws):
    r = handshake(ws, token=ws.tok, add=[("Transfer-Encoding", "chunked")],
                  body=b"5\r\nhello\r\n0\r\n\r\n")
    assert_refused(r, 400, BAD, M_BODY)


def test_body_empty_chunked(ws):
    # chunked is a body even when it carries no data
    r = handshake(ws, token=ws.tok, add=[("Transfer-Encoding", "chunked")],
                  body=b"0\r\n\r\n")
    assert_refused(r, 400, BAD, M_BODY)


def test_content_length_zero_is_no_body(ws):
    assert_upgraded(handshake(ws, token=ws.tok,
                              add=[("Content-Length", "0")]))


# --------------------------------------------------------------------------
# Upgrade and Connection

@pytest.mark.parametrize("kw", [
    dict(drop=["Upgrade"]),
    dict(replace={"Upgrade": "h2c"}),
    dict(replace={"Upgrade": "websockets"}),
    dict(replace={"Upgrade": "web socket"}),
    dict(replace={"Upgrade": "foo, bar"}),
], ids=["missing", "h2c", "websockets", "web-socket", "other-list"])
def test_upgrade_refused(ws, kw):
    assert_refused(handshake(ws, token=ws.tok, **kw), 400, BAD, M_UPGRADE)


@pytest.mark.parametrize("value", ["WebSocket", "WEBSOCKET",
                                   "foo, websocket", "websocket ,foo",
                                   "h2c,  WebSocket  "])
def test_upgrade_accepted(ws, value):
    assert_upgraded(handshake(ws, token=ws.tok,
                              replace={"Upgrade": value}))


@pytest.mark.parametrize("kw", [
    dict(drop=["Connection"]),
    dict(replace={"Connection": "keep-alive"}),
    dict(replace={"Connection": "close"}),
    dict(replace={"Connection": "upgraded"}),
    dict(replace={"Connection": "keep-alive"},
         add=[("Connection", "close")]),
], ids=["missing", "keep-alive", "close", "upgraded", "two-lines-no-token"])
def test_connection_refused(ws, kw):
    assert_refused(handshake(ws, token=ws.tok, **kw), 400, BAD,
                   M_CONNECTION)


@pytest.mark.parametrize("kw", [
    dict(replace={"Connection": "keep-alive, Upgrade"}),
    dict(replace={"Connection": "UPGRADE"}),
    dict(replace={"Connection": "upgrade"}),
    dict(replace={"Connection": "keep-alive"},
         add=[("Connection", "upgrade")]),
], ids=["list", "upper", "lower", "two-lines"])
def test_connection_accepted(ws, kw):
    assert_upgraded(handshake(ws, token=ws.tok, **kw))


# --------------------------------------------------------------------------
# Sec-WebSocket-Version

@pytest.mark.parametrize("kw", [
    dict(drop=["Sec-WebSocket-Version"]),
    dict(replace={"Sec-WebSocket-Version": "8"}),
    dict(replace={"Sec-WebSocket-Version": "14"}),
    dict(replace={"Sec-WebSocket-Version": "13, 8"}),
    dict(replace={"Sec-WebSocket-Version": "130"}),
    dict(add=[("Sec-WebSocket-Version", "13")]),
], ids=["missing", "8", "14", "13-8", "130", "repeated"])
def test_version_refused(ws, kw):
    r = handshake(ws, token=ws.tok, **kw)
    assert_refused(r, 426, BAD, M_WSVERSION)
    assert r.reason == "Upgrade Required"
    assert r.header("sec-websocket-version") == "13"


# --------------------------------------------------------------------------
# Sec-WebSocket-Key

@pytest.mark.parametrize("kw", [
    dict(drop=["Sec-WebSocket-Key"]),
    dict(replace={"Sec-WebSocket-Key": "dGhlIHNhbXBsZQ=="}),
    dict(replace={"Sec-WebSocket-Key": "!!!!!!!!!!!!!!!!!!!!!!=="}),
    dict(replace={"Sec-WebSocket-Key":
                  base64.b64encode(b"x" * 15).decode()}),
    dict(replace={"Sec-WebSocket-Key":
                  base64.b64encode(b"x" * 17).decode()}),
    dict(replace={"Sec-WebSocket-Key":
                  base64.b64encode(b"x" * 16).decode().rstrip("=")}),
    dict(replace={"Sec-WebSocket-Key": ""}),
    dict(replace={"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAA=A=="}),
    dict(replace={"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAA==A"}),
    dict(add=[("Sec-WebSocket-Key", RFC_KEY)]),
], ids=["missing", "short", "not-base64", "15-bytes", "17-bytes",
        "unpadded", "empty", "inner-pad", "trailing-junk", "repeated"])
def test_key_refused(ws, kw):
    assert_refused(handshake(ws, token=ws.tok, **kw), 400, BAD, M_KEY)


def test_accept_rfc_example(ws):
    r = handshake(ws, token=ws.tok)
    assert r.header("sec-websocket-accept") == RFC_ACCEPT
    assert_upgraded(r)


def test_accept_random_key(ws):
    key = base64.b64encode(os.urandom(16)).decode()
    r = handshake(ws, token=ws.tok, replace={"Sec-WebSocket-Key": key})
    assert_upgraded(r, key=key)


# --------------------------------------------------------------------------
# subprotocol

@pytest.mark.parametrize("offer,chosen", [
    ("chat.v1", "chat.v1"),
    ("foo, chat.v1", "chat.v1"),
    ("chat.v1, foo", "chat.v1"),
    ("Chat.V1", None),
    ("foo", None),
    ("chat.v2", None),
    ("chat.v1x", None),
])
def test_subprotocol(ws, offer, chosen):
    r = handshake(ws, token=ws.tok,
                  add=[("Sec-WebSocket-Protocol", offer)])
    assert r.all("sec-websocket-protocol") == ([chosen] if chosen else [])
    assert_upgraded(r)


def test_subprotocol_two_lines(ws):
    r = handshake(ws, token=ws.tok, add=[("Sec-WebSocket-Protocol", "foo"),
                                         ("Sec-WebSocket-Protocol",
                                          "chat.v1")])
    assert r.all("sec-websocket-protocol") == ["chat.v1"]
    assert_upgraded(r)


def test_subprotocol_none_offered(ws):
    r = handshake(ws, token=ws.tok)
    assert r.all("sec-websocket-protocol") == []
    assert_upgraded(r)


# --------------------------------------------------------------------------
# Origin

def test_origin_default_absent(ws):
    assert_upgraded(handshake(ws, token=ws.tok))


@pytest.mark.parametrize("origin", ["http://127.0.0.1:{port}",
                                    "HTTP://127.0.0.1:{port}"])
def test_origin_default_same(ws, origin):
    r = handshake(ws, token=ws.tok,
                  add=[("Origin", origin.format(port=ws.port))])
    assert_upgraded(r)


@pytest.mark.parametrize("origin", [
    "http://evil.example", "null", "http://127.0.0.1",
    "http://127.0.0.1:{other}", "http://127.0.0.1:{port}.evil.example",
    "http://localhost:{port}", "127.0.0.1:{port}", "",
    # the scheme counts too: this connection is plain http (L1)
    "https://127.0.0.1:{port}", "ws://127.0.0.1:{port}"])
def test_origin_default_other(ws, origin):
    r = handshake(ws, token=ws.tok, add=[
        ("Origin", origin.format(port=ws.port, other=ws.port + 1))])
    assert_refused(r, 403, "forbidden", M_ORIGIN)


def test_origin_default_repeated(ws):
    same = "http://127.0.0.1:%d" % ws.port
    r = handshake(ws, token=ws.tok, add=[("Origin", same), ("Origin", same)])
    assert_refused(r, 403, "forbidden", M_ORIGIN)


LISTED = ("location /chat/ws { chat_websocket; chat_allowed_origins "
          "https://app.example http://other.example:8080; }")


@pytest.mark.parametrize("origin", ["https://app.example",
                                    "https://APP.Example",
                                    "HTTPS://APP.EXAMPLE",
                                    "http://other.example:8080",
                                    # a default port is no port (L1)
                                    "https://app.example:443"])
def test_origin_listed_allowed(nginx, origin):
    n = nginx(LISTED)
    r = handshake(n, token=chatlib.make_token(n.key, "alice"),
                  add=[("Origin", origin)])
    assert_upgraded(r)


@pytest.mark.parametrize("origin", [
    "http://app.example", "https://app.example:8443", "https://app.example/",
    "http://app.example:443", "https://other.example:8080",
    "https://app.example.evil", "https://sub.app.example",
    "http://other.example", "http://other.example:8081", "null",
    "http://127.0.0.1:{port}"])
def test_origin_listed_refused(nginx, origin):
    n = nginx(LISTED)
    r = handshake(n, token=chatlib.make_token(n.key, "alice"),
                  add=[("Origin", origin.format(port=n.port))])
    assert_refused(r, 403, "forbidden", M_ORIGIN)


def test_origin_listed_absent(nginx):
    n = nginx(LISTED)
    assert_upgraded(handshake(n, token=chatlib.make_token(n.key, "alice")))


def test_origin_listed_repeated(nginx):
    n = nginx(LISTED)
    r = handshake(n, token=chatlib.make_token(n.key, "alice"),
                  add=[("Origin", "https://app.example"),
                       ("Origin", "https://app.example")])
    assert_refused(r, 403, "forbidden", M_ORIGIN)


def test_origin_star(nginx):
    n = nginx("location /chat/ws { chat_websocket; "
              "chat_allowed_origins https://app.example *; }")
    tok = chatlib.make_token(n.key, "alice")
    for origin in ("https://app.example", "http://anything.example:1",
                   "null"):
        assert_upgraded(handshake(n, token=tok, add=[("Origin", origin)]))
    # two Origin headers are refused even when any origin is allowed
    r = handshake(n, token=tok, add=[("Origin", "https://a.example"),
                                     ("Origin", "https://a.example")])
    assert_refused(r, 403, "forbidden", M_ORIGIN)


def test_origin_inherited_from_server(nginx):
    n = nginx(WS, http="chat_allowed_origins https://app.example;")
    tok = chatlib.make_token(n.key, "alice")
    assert_upgraded(handshake(n, token=tok,
                              add=[("Origin", "https://app.example")]))
    assert_refused(handshake(n, token=tok,
                             add=[("Origin", "https://b.example")]),
                   403, "forbidden", M_ORIGIN)


@pytest.mark.parametrize("value", ["app.example", "https://a/path",
                                   "https://a/", "https://", "//a.example"])
def test_origin_config_invalid(nginx, value):
    rc, out = nginx.check_config(
        "location /chat/ws { chat_websocket; chat_allowed_origins "
        "https://ok.example %s; }" % value)
    assert rc != 0, out
    assert re.search(r'\[emerg\] invalid origin "%s": expected "\*" or '
                     r'scheme://host\[:port\]' % re.escape(value), out), out


def test_origin_config_valid(nginx):
    rc, out = nginx.check_config(
        "location /chat/ws { chat_websocket; chat_allowed_origins "
        "https://ok.example http://b.example:8080 *; }")
    assert rc == 0, out
    assert "[emerg]" not in out


# --------------------------------------------------------------------------
# the order of the checks

def test_order_of_checks(ws):
    # each request breaks every rule from some row on: the first wins
    everything = dict(drop=["Upgrade", "Connection", "Sec-WebSocket-Key",
                            "Sec-WebSocket-Version"],
                      add=[("Origin", "http://evil.example")])
    assert_refused(handshake(ws, method="POST", version="HTTP/1.0",
                             **everything), 400, BAD, M_METHOD)
    assert_refused(handshake(ws, version="HTTP/1.0", **everything),
                   400, BAD, M_VERSION_HTTP)
    assert_refused(handshake(ws, drop=everything["drop"],
                             add=everything["add"] +
                             [("Content-Length", "2")], body=b"{}"),
                   400, BAD, M_BODY)
    assert_refused(handshake(ws, **everything), 400, BAD, M_UPGRADE)
    assert_refused(handshake(ws, drop=["Connection", "Sec-WebSocket-Key",
                                       "Sec-WebSocket-Version"],
                             add=everything["add"]),
                   400, BAD, M_CONNECTION)
    r = handshake(ws, drop=["Sec-WebSocket-Key", "Sec-WebSocket-Version"],
                  add=everything["add"])
    assert_refused(r, 426, BAD, M_WSVERSION)
    assert_refused(handshake(ws, drop=["Sec-WebSocket-Key"],
                             add=everything["add"]), 400, BAD, M_KEY)
    # the origin is checked before the token
    assert_refused(handshake(ws, add=everything["add"]), 403, "forbidden",
                   M_ORIGIN)
    r = handshake(ws)
    assert_refused(r, 401, "unauthorized",
                   "no token: send Authorization: Bearer, the access_token "
                   "argument or the token cookie")
    assert r.header("www-authenticate") == "Bearer"


# --------------------------------------------------------------------------
# bytes sent before the 101

def ping_frame(rid, pad=None):
    req = {"type": "ping", "id": rid}
    if pad:
        req["pad"] = pad
    return chatlib.build_frame(OP_TEXT, json.dumps(req))


def test_early_data(ws):
    r = handshake(ws, token=ws.tok, extra=ping_frame(7))
    try:
        assert r.status == 101
        client = r.ws()
        welcome = client.recv_json()
        assert welcome["type"] == "welcome"
        assert welcome["user"] == {"id": "alice", "name": "alice"}
        reply = client.recv_json()
        assert reply["type"] == "ok" and reply["id"] == 7, reply
        assert set(reply) == {"type", "id", "data"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                            reply["data"]["time"]), reply
        # and the connection goes on
        client.send_json({"type": "ping", "id": 8})
        assert client.recv_json()["id"] == 8
    finally:
        r.close()


def test_early_data_beyond_header_buffer(ws):
    # client_header_buffer_size is 1k: the first frame starts in the
    # request's buffer and ends in the socket, the others follow it
    frames = b"".join(ping_frame(i, pad="x" * 700) for i in (1, 2, 3))
    req = build(ws.port, token=ws.tok)
    assert len(req) < 1024 < len(req) + len(frames)
    r = send_raw(ws.port, req + frames)
    try:
        assert r.status == 101
        client = r.ws()
        assert client.recv_json()["type"] == "welcome"
        ids = [client.recv_json() for _ in range(3)]
        assert [(f["type"], f["id"]) for f in ids] == [("ok", 1), ("ok", 2),
                                                        ("ok", 3)]
        client.send_json({"type": "ping", "id": 4})
        assert client.recv_json()["id"] == 4
    finally:
        r.close()


def test_early_data_partial_frame(ws):
    # half a frame before the 101, the rest after it
    frame = ping_frame(9)
    r = handshake(ws, token=ws.tok, extra=frame[:5])
    try:
        assert r.status == 101
        client = r.ws()
        assert client.recv_json()["type"] == "welcome"
        time.sleep(0.1)
        client.send_raw(frame[5:])
        assert client.recv_json()["id"] == 9
    finally:
        r.close()


def test_early_close(ws):
    # a client that closes right away, without waiting for the 101
    close = chatlib.build_frame(chatlib.OP_CLOSE, struct.pack("!H", 1000))
    r = handshake(ws, token=ws.tok, extra=close)
    try:
        assert r.status == 101
        client = r.ws()
        client.close_sent = True
        assert client.expect_close() == (1000, "")
    finally:
        r.close()


# --------------------------------------------------------------------------
# the access log line of the upgrade

def wait_lines(path, count, timeout=3):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            lines = []
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def test_access_log(nginx):
    n = nginx(WS, http="log_format chat '$status $chat_user $request_uri';\n"
                       "    access_log chat.log chat;")
    path = os.path.join(n.prefix, "chat.log")
    tok = chatlib.make_token(n.key, "alice")
    r = handshake(n, token=tok)
    try:
        assert r.status == 101
        assert r.ws().recv_json()["type"] == "welcome"
        # written when the upgrade is done, while the socket is still open
        assert wait_lines(path, 1) == ["101 alice /chat/ws"]
    finally:
        r.close()
    assert_refused(handshake(n, method="POST", path="/chat/ws?x", token=tok),
                   400, BAD, M_METHOD)
    r = handshake(n, path="/chat/ws?y")
    assert r.status == 401
    tok_b = chatlib.make_token(n.key, "bob@example")
    r = handshake(n, path="/chat/ws?z", token=tok_b)
    r.close()
    assert wait_lines(path, 4) == ["101 alice /chat/ws", "400 - /chat/ws?x",
                                   "401 - /chat/ws?y",
                                   "101 bob@example /chat/ws?z"]


# --------------------------------------------------------------------------
# counters

def metrics(n):
    r = chatlib.http(n, "GET", "/chat/status")
    assert r.status == 200
    out = {}
    for line in r.body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value) if "." in value else int(value)
    return out


def auth_failures(m):
    """chat_auth_failures_total by reason, the reasons counted only."""
    return {k.split('"')[1]: v for k, v in m.items()
            if k.startswith("chat_auth_failures_total{") and v}


def wait_metric(n, name, value, timeout=3):
    deadline = time.monotonic() + timeout
    while True:
        m = metrics(n)
        if m[name] == value or time.monotonic() > deadline:
            return m
        time.sleep(0.02)


def test_status_counters(nginx):
    n = nginx(WS + "\n" + STATUS)
    tok = chatlib.make_token(n.key, "alice")
    m0 = metrics(n)
    assert m0["chat_connections"] == 0
    assert m0["chat_upgrades_total"] == 0
    assert m0["chat_handshake_failures_total"] == 0

    # refused as malformed: counted as handshake failures
    assert handshake(n, method="POST", token=tok).status == 400
    assert handshake(n, drop=["Sec-WebSocket-Version"],
                     token=tok).status == 426
    assert handshake(n, token=tok,
                     add=[("Origin", "http://evil.example")]).status == 403
    m = metrics(n)
    assert m["chat_handshake_failures_total"] == 3
    assert auth_failures(m) == {}

    # refused for want of a token: an auth failure only
    assert handshake(n).status == 401
    m = metrics(n)
    assert m["chat_handshake_failures_total"] == 3
    assert auth_failures(m) == {"missing_token": 1}
    assert m["chat_upgrades_total"] == 0

    a = handshake(n, token=tok)
    b = handshake(n, token=tok)
    try:
        assert (a.status, b.status) == (101, 101)
        m = wait_metric(n, "chat_connections", 2)
        assert m["chat_connections"] == 2
        assert m["chat_upgrades_total"] == 2
        a.close()
        m = wait_metric(n, "chat_connections", 1)
        assert m["chat_connections"] == 1
        client = b.ws()
        assert client.recv_json()["type"] == "welcome"
        client.send_close(1000)
        assert client.expect_close() == (1000, "")
        # the server waits for our FIN before it closes
        client.close()
        m = wait_metric(n, "chat_connections", 0)
        assert m["chat_connections"] == 0
        assert m["chat_upgrades_total"] == 2
        assert m["chat_handshake_failures_total"] == 3
    finally:
        a.close()
        b.close()


# --------------------------------------------------------------------------
# nginx shutting down

def test_shutting_down(nginx):
    # a request whose headers are still arriving holds the worker during a
    # graceful shutdown (it is not idle); when it completes, the worker is
    # exiting and answers 503
    n = nginx(WS)
    tok = chatlib.make_token(n.key, "alice")
    req = build(n.port, token=tok)
    cut = req.index(b"Upgrade:")
    sock = socket.create_connection(("127.0.0.1", n.port), timeout=5)
    try:
        sock.sendall(req[:cut])
        time.sleep(0.2)
        worker = n.worker_pids()[0]
        os.kill(n.pid, signal.SIGQUIT)
        deadline = time.monotonic() + 5
        while "shutting down" not in _cmdline(worker):
            assert time.monotonic() < deadline, "worker not shutting down"
            time.sleep(0.02)
        sock.sendall(req[cut:])
        buf = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        sock.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), buf
    assert b"\r\nContent-Type: application/json\r\n" in head + b"\r\n"
    assert b"\r\nUpgrade:" not in head
    assert json.loads(body) == {"error": {
        "code": "unavailable", "message": "the server is shutting down"}}
    n.proc.wait(10)


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return "shutting down (gone)"


# --------------------------------------------------------------------------
# configuration

def test_config_needs_key_or_identity(nginx):
    # "chat_jwt_key" in the http text keeps the fixture from adding one
    rc, out = nginx.check_config(WS, http="# no chat_jwt_key here")
    assert rc != 0, out
    assert ('[emerg] chat locations need "chat_jwt_key" or "chat_identity" '
            'to authenticate users') in out, out


def test_config_identity_is_enough(nginx):
    rc, out = nginx.check_config(
        "location /chat/ws { chat_websocket; chat_identity $http_x_user; }",
        http="# no chat_jwt_key here")
    assert rc == 0, out


# --------------------------------------------------------------------------
# HTTP/2 (prior knowledge, over cleartext): a minimal client

def _h2_int(value, prefix_bits, first=0):
    """An HPACK integer (RFC 7541 5.1)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out, value = [first | limit], value - limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes(out + [value])


def _h2_literal(name, value):
    # literal header field without indexing, new name, no Huffman
    name, value = name.encode(), value.encode()
    return (b"\x00" + _h2_int(len(name), 7) + name
            + _h2_int(len(value), 7) + value)


def _h2_frame(type_, flags, stream, payload):
    return (struct.pack("!I", len(payload))[1:] + bytes([type_, flags])
            + struct.pack("!I", stream) + payload)


def h2_get(port, path, headers, timeout=5):
    """GET over HTTP/2: (first byte of the response header block, body)."""
    block = b"".join(_h2_literal(k, v) for k, v in
                     [(":method", "GET"), (":scheme", "http"),
                      (":path", path),
                      (":authority", "127.0.0.1:%d" % port)] + headers)
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                     + _h2_frame(4, 0, 0, b"")          # SETTINGS
                     + _h2_frame(1, 0x5, 1, block))     # HEADERS, END_*
        buf, status_byte, body = b"", None, b""
        while True:
            while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3],
                                                                "big"):
                chunk = sock.recv(65536)
                assert chunk, "connection closed: %r" % buf
                buf += chunk
            n = int.from_bytes(buf[:3], "big")
            type_, flags = buf[3], buf[4]
            stream = struct.unpack("!I", buf[5:9])[0] & 0x7fffffff
            payload, buf = buf[9:9 + n], buf[9 + n:]
            if type_ == 4 and not flags & 1:           # SETTINGS: ack
                sock.sendall(_h2_frame(4, 1, 0, b""))
            elif type_ == 7:                           # GOAWAY
                raise AssertionError("GOAWAY %r" % payload)
            elif stream == 1 and type_ == 1:           # HEADERS
                status_byte = payload[0]
                if flags & 1:
                    return status_byte, body
            elif stream == 1 and type_ == 0:           # DATA
                body += payload
                if flags & 1:
                    return status_byte, body
    finally:
        sock.close()


def test_http2(nginx):
    port2 = free_port()
    n = nginx(WS, http="server { listen 127.0.0.1:%d http2; %s }"
              % (port2, WS))
    tok = chatlib.make_token(n.key, "alice")
    status_byte, body = h2_get(port2, "/chat/ws", [
        ("sec-websocket-key", RFC_KEY), ("sec-websocket-version", "13"),
        ("authorization", "Bearer " + tok)])
    # nginx sends :status 400 as index 12 of the static table
    assert status_byte == 0x80 | 12, hex(status_byte)
    assert json.loads(body) == {"error": {"code": BAD,
                                          "message": M_VERSION_HTTP}}
