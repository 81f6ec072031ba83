"""The test machinery itself: the nginx and postgres fixtures, the log
check, the JWT minting and the strictness of the raw WebSocket client."""

import base64
import hashlib
import hmac
import os
import signal
import socket
import struct
import time

import pytest

import chatlib
from chatlib import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG,
                     OP_TEXT, ProtocolViolation, RawWS)
from conftest import bad_log_lines, port_open

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


# --- nginx fixture

def test_nginx_serves_with_module(nginx):
    # the default configuration has chat_jwt_key: the module is loaded
    n = nginx('location = /x { return 200 "ok"; }')
    r = chatlib.http(n, "GET", "/x")
    assert (r.status, r.body) == (200, b"ok")
    assert "chat_jwt_key" in open(n.conf_path).read()
    assert n.key and len(n.key) == 32
    assert n.url("/x") == "http://127.0.0.1:%d/x" % n.port
    assert n.ws_url() == "ws://127.0.0.1:%d/chat/ws" % n.port


def test_nginx_reload(nginx):
    n = nginx('location = /x { return 200 "one"; }')
    old = set(n.worker_pids())
    n.reload('location = /x { return 200 "two"; }')
    assert not old & set(n.worker_pids())
    assert chatlib.http(n, "GET", "/x").body == b"two"


def test_nginx_workers(nginx):
    n = nginx('location = /x { return 204; }', workers=2)
    assert len(n.worker_pids()) == 2
    n.reload()
    assert len(n.worker_pids()) == 2
    n.reload(workers=3)
    assert len(n.worker_pids()) == 3
    assert "return 204" in open(n.conf_path).read()


def test_nginx_quit(nginx):
    n = nginx('location = /x { return 204; }')
    pid = n.pid
    n.quit()
    assert not port_open(n.port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_nginx_quit_hang_detected(nginx):
    # a stopped worker never exits: the QUIT check must catch it and kill
    n = nginx('location = /x { return 204; }')
    worker = n.worker_pids()[0]
    os.kill(worker, signal.SIGSTOP)
    with pytest.raises(pytest.fail.Exception, match="did not exit promptly"):
        n.quit(timeout=1)
    time.sleep(0.1)
    assert not port_open(n.port)


def test_nginx_check_config(nginx):
    rc, out = nginx.check_config('location = /x { chat_no_such_thing; }')
    assert rc != 0
    assert 'unknown directive "chat_no_such_thing"' in out
    rc, out = nginx.check_config('location = /x { return 204; }')
    assert rc == 0, out


@pytest.mark.allow_log(r"\[emerg\].*unknown directive \"bogus\"")
def test_nginx_allow_log_marker(nginx):
    # a reload with a broken configuration: nginx keeps the old one and
    # logs [emerg], which the marker allows
    n = nginx('location = /x { return 200 "one"; }')
    with open(n.conf_path, "a") as f:
        f.write("bogus;\n")
    os.kill(n.pid, signal.SIGHUP)
    n.wait_log(r"\[emerg\].*bogus")
    assert chatlib.http(n, "GET", "/x").body == b"one"


def test_nginx_log_check_detects(nginx):
    n = nginx('location = /x { return 204; }')
    path = os.path.join(n.prefix, "error.log")
    clean = open(path).read()
    with open(path, "a") as f:
        f.write("2026/01/01 00:00:00 [alert] 1#1: planted by the test\n")
    with pytest.raises(pytest.fail.Exception, match="planted by the test"):
        n.check_logs()
    nginx.allow_log.append(r"planted by the test")
    n.check_logs()
    with open(path, "w") as f:
        f.write(clean)


def test_bad_log_lines():
    text = "\n".join([
        "x [info] 1#1: fine",
        "x [crit] 1#1: bad",
        "x [emerg] 1#1: bad too",
        "==5==ERROR: AddressSanitizer: heap-use-after-free on address",
        "    #0 0x1 in f a.c:1",
        "a.c:3:5: runtime error: signed integer overflow",
        "==5==ERROR: LeakSanitizer: detected memory leaks",
    ])
    bad = bad_log_lines(text)
    assert "x [info] 1#1: fine" not in bad
    for needle in ("[crit]", "[emerg]", "heap-use-after-free", "#0 0x1",
                   "runtime error", "LeakSanitizer"):
        assert any(needle in line for line in bad), needle
    assert bad_log_lines(text, [r"\[crit\]", r"\[emerg\]", "Sanitizer",
                                "runtime error"]) == []


# --- postgres fixture

def test_postgres(postgres):
    assert postgres.query("SELECT 1") == [(1,)]
    assert (1, "0001_init") in postgres.query(
        "SELECT version, name FROM chat.schema_migrations")
    assert "host=%s" % postgres.socket_dir in postgres.dsn


def test_postgres_stop_start(postgres):
    import psycopg
    postgres.stop()
    with pytest.raises(psycopg.OperationalError):
        postgres.connect(connect_timeout=2)
    postgres.start()
    assert postgres.query("SELECT 2") == [(2,)]


# --- JWT minting, checked with independent verification

def test_token_hs():
    key = b"k" * 32
    for alg, h in (("HS256", hashlib.sha256), ("HS384", hashlib.sha384),
                   ("HS512", hashlib.sha512)):
        tok = chatlib.make_token(key, "alice", name="Alice", alg=alg,
                                 aud="chat")
        head, payload, sig = chatlib.token_parts(tok)
        assert head == {"alg": alg, "typ": "JWT"}
        assert payload["sub"] == "alice" and payload["name"] == "Alice"
        assert payload["aud"] == "chat"
        assert 3590 <= payload["exp"] - time.time() <= 3600
        signing_input = tok.rsplit(".", 1)[0].encode()
        assert sig == hmac.new(key, signing_input, h).digest()
        assert chatlib.tamper(tok) != tok
    head, payload, _ = chatlib.token_parts(
        chatlib.make_token(key, "bob", exp_in=None, iat=None))
    assert payload == {"sub": "bob"}


def test_token_rs256_es256():
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

    def pem(name):
        with open(os.path.join(DATA, "jwt", name), "rb") as f:
            return f.read()

    tok = chatlib.make_token(pem("rsa2048.key.pem"), "alice", alg="RS256")
    _, _, sig = chatlib.token_parts(tok)
    serialization.load_pem_public_key(pem("rsa2048.pub.pem")).verify(
        sig, tok.rsplit(".", 1)[0].encode(), padding.PKCS1v15(),
        hashes.SHA256())

    tok = chatlib.make_token(pem("ec256.key.pem"), "alice", alg="ES256")
    _, _, sig = chatlib.token_parts(tok)
    assert len(sig) == 64
    der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                     int.from_bytes(sig[32:], "big"))
    serialization.load_pem_public_key(pem("ec256.pub.pem")).verify(
        der, tok.rsplit(".", 1)[0].encode(), ec.ECDSA(hashes.SHA256()))


# --- RawWS against a scripted peer (a socketpair)

@pytest.fixture
def pair():
    a, b = socket.socketpair()
    ws = RawWS(a)
    yield ws, b
    ws.close()
    b.close()


def server_frame(opcode, payload=b"", **kw):
    kw.setdefault("mask", False)
    return chatlib.build_frame(opcode, payload, **kw)


def read_client_frame(sock):
    """Decodes one (masked) frame the client sent."""
    b0, b1 = sock.recv(2)
    assert b1 & 0x80, "client frames are masked"
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", sock.recv(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", sock.recv(8))[0]
    key = sock.recv(4)
    data = b""
    while len(data) < n:
        data += sock.recv(n - len(data))
    return b0 & 0x0F, bytes(c ^ key[i % 4] for i, c in enumerate(data))


@pytest.mark.parametrize("frame, why", [
    (server_frame(OP_TEXT, b"x", mask=True), "masked"),
    (server_frame(OP_TEXT, b"x", rsv=4), "RSV"),
    (server_frame(0x3, b"x"), "opcode"),
    (server_frame(0xB, b""), "opcode"),
    (server_frame(OP_PING, b"x", fin=False), "fragmented control"),
    (server_frame(OP_PING, b"x" * 126), "control frame of 126"),
    (server_frame(OP_TEXT, b"x", length_bytes=2), "non-minimal"),
    (server_frame(OP_TEXT, b"x" * 200, length_bytes=8), "non-minimal"),
    (server_frame(OP_CLOSE, b"\x03"), "1-byte"),
    (server_frame(OP_CLOSE, struct.pack("!H", 1005)), "close code"),
    (server_frame(OP_CLOSE, struct.pack("!H", 999)), "close code"),
    (server_frame(OP_CLOSE, struct.pack("!H", 1000) + b"\xff"), "UTF-8"),
])
def test_rawws_rejects(pair, frame, why):
    ws, peer = pair
    peer.sendall(frame)
    with pytest.raises(ProtocolViolation, match=why):
        ws.recv_frame(timeout=2)


@pytest.mark.parametrize("frames, why", [
    ([server_frame(OP_CONT, b"x")], "continuation without"),
    ([server_frame(OP_TEXT, b"a", fin=False), server_frame(OP_TEXT, b"b")],
     "inside a fragmented"),
    ([server_frame(OP_TEXT, b"\xc3")], "not UTF-8"),
    ([server_frame(OP_TEXT, b"\xc3", fin=False),
      server_frame(OP_CONT, b"\xa9\xff")], "not UTF-8"),
])
def test_rawws_rejects_messages(pair, frames, why):
    ws, peer = pair
    peer.sendall(b"".join(frames))
    with pytest.raises(ProtocolViolation, match=why):
        ws.recv_message(timeout=2)


def test_rawws_message_and_close(pair):
    ws, peer = pair
    # a fragmented text with a ping in the middle, then binary, then close
    peer.sendall(server_frame(OP_TEXT, b"he", fin=False)
                 + server_frame(OP_PING, b"p1")
                 + server_frame(OP_CONT, "llo \u00e9".encode())
                 + server_frame(OP_BINARY, b"\x00" * 70000)
                 + server_frame(OP_CLOSE, struct.pack("!H", 1001) + b"bye"))
    assert ws.recv_text() == "hello \u00e9"
    assert read_client_frame(peer) == (OP_PONG, b"p1")
    assert ws.recv_message() == (OP_BINARY, b"\x00" * 70000)

    peer.shutdown(socket.SHUT_WR)       # the server closes TCP after close
    assert ws.expect_close() == (1001, "bye")
    assert read_client_frame(peer) == (OP_CLOSE, struct.pack("!H", 1001))


def test_rawws_close_without_frame(pair):
    ws, peer = pair
    peer.close()
    with pytest.raises(chatlib.ConnectionClosed, match="without a close"):
        ws.recv_frame(timeout=2)


def test_rawws_sends(pair):
    ws, peer = pair
    ws.send_frame(OP_TEXT, b"abc", chunk=1, delay=0.01)
    assert read_client_frame(peer) == (OP_TEXT, b"abc")
    ws.send_close(1000, "done")
    assert read_client_frame(peer) == (OP_CLOSE, b"\x03\xe8done")
    raw = chatlib.build_frame(OP_TEXT, b"hi", mask_key=b"\x00\x00\x00\x00",
                              length_override=5, rsv=2, fin=False)
    assert raw == b"\x21\x85\x00\x00\x00\x00hi"
    assert base64.b64encode(hashlib.sha1(b"dGhlIHNhbXBsZSBub25jZQ=="
                                         + chatlib.WS_GUID).digest()) \
        == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "RFC 6455 section 1.3"


# --- the helpers against the real module

def test_websocket_smoke(nginx):
    n = nginx("location = /chat/ws { chat_websocket; }\n"
              "location = /chat/echo { chat_echo; }")
    tok = chatlib.make_token(n.key, "alice", name="Alice")

    # no token: 401 with a JSON error, never 101
    status, headers, body = chatlib.http_upgrade(n, "/chat/ws")
    assert status == 401, body
    assert chatlib.UpgradeResponse(status, headers, body).json()["error"][
        "code"] == "unauthorized"

    with chatlib.ws_connect(n, tok) as c:
        assert c.welcome["user"]["id"] == "alice"
        assert c.ok("ping")["time"]

    with RawWS.connect(n.port, "/chat/echo", token=tok,
                       token_in="query") as ws:
        ws.send_text("hello", chunk=3, delay=0.01)
        assert ws.recv_text() == "hello"
        ws.send_close(1000)
        assert ws.expect_close() == (1000, "")
