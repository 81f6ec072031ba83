"""The chat protocol on a WebSocket: welcome, the request envelope and its
errors, the JSON corpus (t/data/json) through a real connection, heartbeat,
idle and send timeouts, flow control, reload and shutdown."""

import json
import os
import re
import socket
import time

import pytest

from chatlib import (OP_BINARY, OP_CONT, OP_PING, OP_TEXT, ConnectionClosed,
                     RawWS, http, make_token, ws_connect)

WS = ("location = /chat/ws { chat_websocket; }\n"
      "location = /chat/status { chat_status; }")
STATUS = "location = /chat/status { chat_status; }"
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                      "json")


def raw(ng, sub="alice", path="/chat/ws", **kw):
    ws = RawWS.connect(ng.port, path, token=make_token(ng.key, sub, **kw))
    return ws


def status(ng):
    """Every sample of /chat/status: {name or name{labels}: number}."""
    r = http(ng, "GET", "/chat/status")
    assert r.status == 200
    return {m.group(1): float(m.group(2)) if "." in m.group(2)
            else int(m.group(2))
            for m in re.finditer(r"^(chat_\w+(?:\{[^}]*\})?) (-?[\d.]+)$",
                                 r.body.decode(), re.M)}


def wait_for(pred, timeout=5):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# --- welcome and ping

def test_welcome_is_the_first_frame(nginx):
    ng = nginx(WS, http="chat_heartbeat 20s; chat_max_message_size 32k;")
    tok = make_token(ng.key, "alice", name="Alice Liddell",
                     avatar="https://img.example/a.png")
    with ws_connect(ng, tok) as c:
        w = c.welcome
        assert w["type"] == "welcome"
        assert w["user"] == {"id": "alice", "name": "Alice Liddell",
                             "avatar": "https://img.example/a.png"}
        assert re.match(r"^\d+-\d+$", w["session"])
        assert w["heartbeat_s"] == 20
        assert w["limits"] == {"max_message_size": 32768,
                               "max_message_length": 5000,
                               "max_json_depth": 32}
        assert w["protocol"] == "chat.v1"


def test_name_falls_back_to_the_id_and_sessions_differ(nginx):
    ng = nginx(WS)
    tok = make_token(ng.key, "bob")
    with ws_connect(ng, tok) as a, ws_connect(ng, tok) as b:
        assert a.welcome["user"] == {"id": "bob", "name": "bob"}
        assert a.welcome["session"] != b.welcome["session"]


def test_ping_echoes_string_and_integer_ids(nginx):
    ng = nginx(WS)
    ws = raw(ng)
    assert ws.recv_json()["type"] == "welcome"
    for rid in ("c42", 7, -3, 2**53, "", "ключ ✓"):
        ws.send_json({"type": "ping", "id": rid})
        reply = ws.recv_json()
        assert reply["type"] == "ok" and reply["id"] == rid
        assert TIME_RE.match(reply["data"]["time"])
        assert list(reply)[:2] == ["type", "id"]
    ws.send_json({"type": "ping"})
    reply = ws.recv_json()
    assert reply["type"] == "ok" and "id" not in reply
    ws.close()


def test_replies_come_in_request_order(nginx):
    ng = nginx(WS)
    ws = raw(ng)
    ws.recv_json()
    batch = b"".join(
        __import__("chatlib").build_frame(
            OP_TEXT, json.dumps({"type": "ping", "id": i}).encode())
        for i in range(200))
    ws.send_raw(batch)
    assert [ws.recv_json()["id"] for _ in range(200)] == list(range(200))
    ws.close()


def test_fragmented_request_is_one_request(nginx):
    ng = nginx(WS)
    ws = raw(ng)
    ws.recv_json()
    text = json.dumps({"type": "ping", "id": "frag"}).encode()
    ws.send_frame(OP_TEXT, text[:5], fin=False)
    ws.send_frame(OP_PING, b"between")
    ws.send_frame(OP_CONT, text[5:9], fin=False)
    ws.send_frame(OP_CONT, text[9:], fin=True)
    fin, op, payload = ws.recv_frame()
    assert (op, payload) == (0xA, b"between")
    assert ws.recv_json()["id"] == "frag"
    ws.close()


# --- the envelope's errors: an error reply, and the connection stays

BAD = [
    (b"not json", "not valid JSON"),
    (b"", "not valid JSON"),
    (b"{\"type\": \"ping\"", "not valid JSON"),
    (b"{\"type\": \"ping\"} trailing", "not valid JSON"),
    (b"{\"type\": \"ping\", \"type\": \"ping\"}", "not valid JSON"),
    (b"[\"ping\"]", "a request must be a JSON object"),
    (b"\"ping\"", "a request must be a JSON object"),
    (b"42", "a request must be a JSON object"),
    (b"null", "a request must be a JSON object"),
    (b"{}", "type is missing"),
    (b"{\"typ\": \"ping\"}", "type is missing"),
    (b"{\"type\": 5}", "type must be a string"),
    (b"{\"type\": null}", "type must be a string"),
    (b"{\"type\": \"nope\"}", "unknown type"),
    (b"{\"type\": \"PING\"}", "unknown type"),
    (b"{\"type\": \"ping\\u0000\"}", "not valid JSON"),
    (b"[" * 33 + b"]" * 33, "JSON nested too deeply"),
    (b"{\"type\":\"ping\",\"a\":" + b"[" * 40 + b"]" * 40 + b"}",
     "JSON nested too deeply"),
]


@pytest.mark.parametrize("payload,message", BAD,
                         ids=[str(i) for i in range(len(BAD))])
def test_bad_request_keeps_the_connection(nginx, payload, message):
    ng = nginx(WS)
    ws = raw(ng)
    ws.recv_json()
    ws.send_text(payload)
    reply = ws.recv_json()
    assert reply == {"type": "error",
                     "error": {"code": "bad_request", "message": message}}
    ws.send_json({"type": "ping", "id": "after"})
    assert ws.recv_json()["id"] == "after"
    ws.close()


def test_error_reply_carries_a_valid_id(nginx):
    ng = nginx(WS)
    ws = raw(ng)
    ws.recv_json()
    ws.send_json({"type": "nope", "id": "x1"})
    assert ws.recv_json() == {"type": "error", "id": "x1", "error": {
        "code": "bad_request", "message": "unknown type"}}
    ws.send_json({"id": 9})
    assert ws.recv_json()["id"] == 9
    # an id that is not usable is not echoed
    for bad_id, message in ((1.5, "id must be a string or an integer"),
                            (True, "id must be a string or an integer"),
                            ({"a": 1}, "id must be a string or an integer"),
                            ("x" * 129, "id is too long")):
        ws.send_json({"type": "ping", "id": bad_id})
        assert ws.recv_json() == {"type": "error", "error": {
            "code": "bad_request", "message": message}}
    ws.send_json({"type": "ping", "id": "x" * 128})
    assert ws.recv_json()["type"] == "ok"
    ws.close()


def test_depth_limit_is_exactly_32(nginx):
    ng = nginx(WS)
    ws = raw(ng)
    ws.recv_json()
    # the envelope object is level 1: 31 more levels fit
    deep = "[" * 31 + "]" * 31
    ws.send_text('{"type":"ping","id":1,"x":%s}' % deep)
    assert ws.recv_json()["type"] == "ok"
    deep = "[" * 32 + "]" * 32
    ws.send_text('{"type":"ping","id":2,"x":%s}' % deep)
    assert ws.recv_json()["error"]["message"] == "JSON nested too deeply"
    ws.close()


def test_requests_that_need_storage_are_unavailable(nginx):
    ng = nginx(WS)
    ws = raw(ng)
    ws.recv_json()
    for t in ("conversation.create", "conversation.list", "messages.history",
              "message.send", "message.edit", "message.delete",
              "message.read", "message.delivered", "typing", "sync"):
        ws.send_json({"type": t, "id": t})
        reply = ws.recv_json()
        assert reply["type"] == "error" and reply["id"] == t
        assert reply["error"]["code"] == "unavailable"
    ws.close()


def test_binary_message_closes_with_1003(nginx):
    ng = nginx(WS)
    ws = raw(ng)
    ws.recv_json()
    ws.send_frame(OP_BINARY, b"\x00\x01")
    code, _ = ws.expect_close()
    assert code == 1003
    assert status(ng)['chat_closes_total{reason="protocol"}'] == 1


def test_big_and_fragmented_messages_hit_the_limits(nginx):
    ng = nginx(WS, http="chat_max_message_size 1k; chat_max_fragments 4;")
    ws = raw(ng)
    ws.recv_json()
    ws.send_text('{"type":"ping","id":"' + "x" * 990 + '"}')
    assert ws.recv_json()["type"] == "error"      # id too long, but parsed
    ws.send_text(b"x" * 1025)
    assert ws.expect_close()[0] == 1009
    ws = raw(ng)
    ws.recv_json()
    for _ in range(4):
        ws.send_frame(OP_TEXT if _ == 0 else OP_CONT, b"", fin=False)
    ws.send_frame(OP_CONT, b"{}", fin=True)
    assert ws.expect_close()[0] == 1008
    s = status(ng)
    assert s['chat_closes_total{reason="limit"}'] == 2


# --- the JSON corpus through a real connection

# the y_ files refused on purpose, as y_refused in t/unit/test_request.c
Y_REFUSED = ["y_object_key_nul_escape.json",
             "y_object_repeated_key.json",
             "y_object_repeated_key_by_escape.json",
             "y_object_repeated_key_equal_value.json",
             "y_string_u_nul.json"]


def corpus_files():
    # part of the repository: missing is a failure, not a skip
    assert os.path.isdir(CORPUS), CORPUS + " is missing"
    names = sorted(n for n in os.listdir(CORPUS) if n.endswith(".json"))
    for name in names:
        assert name[:2] in ("y_", "n_", "i_"), name
    assert any(n.startswith("y_") for n in names)
    assert any(n.startswith("n_") for n in names)
    return names


def test_json_corpus_through_the_websocket(nginx):
    """Every document: invalid UTF-8 closes with 1007 (it is not text);
    everything else gets a bad_request reply (no document is a request),
    n_ files as invalid JSON (or too deep), and the connection stays."""
    files = corpus_files()
    ng = nginx(WS, http="chat_max_message_size 1m;")
    ws = raw(ng)
    ws.recv_json()
    checked = 0
    refused = []
    for name in files:
        with open(os.path.join(CORPUS, name), "rb") as f:
            doc = f.read()
        try:
            doc.decode("utf-8")
            utf8 = True
        except UnicodeDecodeError:
            utf8 = False
        if not utf8:
            bad = raw(ng)
            bad.recv_json()
            bad.send_text(doc)
            assert bad.expect_close()[0] == 1007, name
            checked += 1
            continue
        ws.send_text(doc)
        reply = ws.recv_json()
        assert reply["type"] == "error", name
        assert reply["error"]["code"] == "bad_request", name
        msg = reply["error"]["message"]
        if name.startswith("n_"):
            assert msg in ("not valid JSON", "JSON nested too deeply"), name
        elif name.startswith("y_"):
            assert msg != "JSON nested too deeply", name
            if msg == "not valid JSON":
                refused.append(name)
        checked += 1
    ws.send_json({"type": "ping", "id": "alive"})
    assert ws.recv_json()["id"] == "alive"
    ws.close()
    assert checked == len(files)
    # valid JSON refused on purpose: duplicate keys are ambiguous, NUL
    # characters would cut C strings
    assert refused == Y_REFUSED


# --- timers

def test_heartbeat_pings_and_a_live_client_stays(nginx):
    ng = nginx(WS, http="chat_heartbeat 500ms;")
    ws = raw(ng)
    ws.recv_json()
    pings = 0
    deadline = time.monotonic() + 2.2
    while time.monotonic() < deadline:
        try:
            fin, op, payload = ws.recv_frame(timeout=0.1)
        except TimeoutError:
            continue
        if op == OP_PING:
            pings += 1
            ws.send_frame(0xA, payload)
    assert pings >= 2
    ws.send_json({"type": "ping", "id": "still"})
    assert ws.recv_json()["id"] == "still"
    ws.close()


def test_a_silent_client_is_disconnected(nginx):
    ng = nginx(WS, http="chat_heartbeat 300ms;")
    ws = raw(ng)
    ws.recv_json()
    # no answer to the ping: the next heartbeat finds the peer dead
    fin, op, _ = ws.recv_frame(timeout=3)
    assert op == OP_PING
    ws.expect_eof(timeout=3)
    assert wait_for(lambda: status(ng)[
        'chat_closes_total{reason="ping_timeout"}'] == 1)
    ng.wait_log(r"client stopped answering pings")


def test_idle_timeout_closes_with_1001(nginx):
    ng = nginx(WS, http="chat_idle_timeout 600ms; chat_heartbeat 0;")
    ws = raw(ng)
    ws.recv_json()
    busy = raw(ng, "bob")
    busy.recv_json()
    # data keeps a connection alive; control frames do not
    for _ in range(6):
        busy.send_json({"type": "ping"})
        busy.recv_json()
        ws.ping(b"x")
        time.sleep(0.15)
    code, reason = ws.expect_close(timeout=3)
    assert (code, reason) == (1001, "idle timeout")
    assert status(ng)['chat_closes_total{reason="idle"}'] == 1
    busy.send_json({"type": "ping", "id": "alive"})
    assert busy.recv_json()["id"] == "alive"
    busy.close()


def test_token_expiry_closes_with_4001(nginx):
    ng = nginx(WS, http="chat_jwt_leeway 0;")
    ws = raw(ng, exp_in=2)
    ws.recv_json()
    code, reason = ws.expect_close(timeout=6)
    assert (code, reason) == (4001, "token expired")
    assert status(ng)['chat_closes_total{reason="token_expired"}'] == 1


def test_send_timeout_drops_a_client_that_never_reads(nginx):
    ng = nginx("location = /e { chat_echo; chat_max_message_size 8m; }" + WS,
               http="chat_send_timeout 500ms;")
    ws = raw(ng, path="/e")
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    payload = b"y" * (4 * 1024 * 1024)
    ws.send_frame(OP_BINARY, payload)
    ng.wait_log(r"client timed out reading what was sent", timeout=10)
    ws.close()


# --- flow control

def test_a_client_that_does_not_read_is_not_read(nginx):
    """Requests sent while replies pile up are all answered, in order, once
    the client reads: the server stops reading instead of buffering."""
    ng = nginx(WS, http="chat_send_buffer 16k;")
    ws = raw(ng)
    ws.recv_json()
    import chatlib
    n = 50000
    frames = b"".join(chatlib.build_frame(
        OP_TEXT, b'{"type":"ping","id":%d}' % i) for i in range(n))
    ws.sock.settimeout(20)
    ws.sock.sendall(frames)
    for i in range(n):
        assert ws.recv_json(timeout=20)["id"] == i
    ws.close()


# --- reload and shutdown

def test_reload_sends_1001_and_old_worker_exits(nginx):
    ng = nginx(WS)
    clients = [raw(ng, "u%d" % i) for i in range(5)]
    for c in clients:
        c.recv_json()
    old = set(ng.worker_pids())
    ng.reload()
    for c in clients:
        code, reason = c.expect_close(timeout=5)
        assert (code, reason) == (1001, "server shutting down")
    assert wait_for(lambda: not (old & set(ng.worker_pids()) |
                                 {p for p in old
                                  if os.path.exists("/proc/%d" % p)}),
                    timeout=10)
    fresh = raw(ng)
    assert fresh.recv_json()["type"] == "welcome"
    fresh.close()


def test_quit_closes_connections_with_1001(nginx):
    ng = nginx(WS)
    ws = raw(ng)
    ws.recv_json()
    ng.quit()
    code, reason = ws.expect_close(timeout=5)
    assert code == 1001


# --- status

def test_status_is_prometheus_text(nginx):
    ng = nginx(WS)
    r = http(ng, "GET", "/chat/status")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    # every sample belongs to the family announced by HELP and TYPE
    family = None
    samples = 0
    lines = r.body.decode().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# HELP "):
            family = line.split(" ")[2]
            assert family.startswith("chat_")
            assert lines[i + 1].startswith("# TYPE %s " % family)
            kind = lines[i + 1].split(" ")[3]
            assert kind in ("counter", "gauge", "histogram")
        elif not line.startswith("# TYPE "):
            m = re.match(r'^(chat_\w+)(\{(\w+="[^"]*",?)+\})? '
                         r'(-?\d+(\.\d+)?)$', line)
            assert m, line
            if kind == "histogram":
                assert m.group(1) in (family + "_bucket", family + "_sum",
                                      family + "_count"), line
            else:
                assert m.group(1) == family, line
            samples += 1
    assert samples > 20
    assert 'chat_requests_total{type="ping"} 0' in lines
    ws = raw(ng)
    ws.recv_json()
    assert wait_for(lambda: status(ng)["chat_connections"] == 1)
    ws.send_json({"type": "ping"})
    ws.recv_json()
    s = status(ng)
    assert s["chat_upgrades_total"] == 1
    assert s["chat_messages_in_total"] == 1
    assert s["chat_messages_out_total"] == 2
    ws.close()
    assert wait_for(lambda: status(ng)["chat_connections"] == 0)
    assert http(ng, "POST", "/chat/status").status == 405


def test_presence_query_without_a_zone_knows_this_worker(nginx):
    ng = nginx(WS)
    ws = raw(ng)
    ws.recv_json()
    bob = raw(ng, "bob")
    bob.recv_json()
    ws.send_json({"type": "presence.query", "id": 1,
                  "user_ids": ["bob", "carol"]})
    assert ws.recv_json() == {"type": "ok", "id": 1, "data": {"presence": {
        "bob": {"online": True, "last_seen": None},
        "carol": {"online": False, "last_seen": None}}}}
    for bad in ([1], "bob", ["x"] * 201, [""]):
        ws.send_json({"type": "presence.query", "id": 2, "user_ids": bad})
        assert ws.recv_json()["error"]["code"] == "bad_request"
    ws.close()
    bob.close()
