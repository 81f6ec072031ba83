"""WebSockets over TLS (wss://): nginx's TLS layer buffers small writes,
so the module must count what left its queue from its own buffers and
drain TLS's buffer before it closes."""

import os
import ssl
import subprocess
import tempfile
import time

import pytest

from chatlib import (OP_BINARY, OP_TEXT, RawWS, build_frame, http_upgrade,
                     make_token)
from conftest import free_port

import socket


@pytest.fixture(scope="module")
def cert():
    d = tempfile.mkdtemp(prefix="chat-tls-")
    os.chmod(d, 0o755)
    key, crt = os.path.join(d, "key.pem"), os.path.join(d, "crt.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "2",
                    "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)
    os.chmod(key, 0o644)
    return crt, key


def start(nginx, cert):
    port = free_port()
    server = """
    server {
        listen 127.0.0.1:%d ssl;
        ssl_certificate %s;
        ssl_certificate_key %s;
        location = /e { chat_echo; chat_max_message_size 4m; }
        location = /chat/ws { chat_websocket; }
    }""" % (port, cert[0], cert[1])
    ng = nginx("location = /x { return 204; }", http=server)
    return ng, port


def connect(ng, port, path):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    r = http_upgrade(port, path, token=make_token(ng.key, "alice"),
                     sock=sock)
    assert r.status == 101
    return RawWS(r.sock, r.rest, r.headers)


def test_echo_over_tls_is_exact(nginx, cert):
    ng, port = start(nginx, cert)
    ws = connect(ng, port, "/e")
    # small frames TLS would buffer, then large ones it must write through
    messages = [b"hello", b"", b"x" * 125, os.urandom(70000),
                b"y" * (1024 * 1024)]
    for m in messages:
        ws.send_frame(OP_BINARY, m)
    for m in messages:
        assert ws.recv_message(timeout=10) == (OP_BINARY, m)
    # many small messages in one write: each comes back once, in order
    batch = b"".join(build_frame(OP_TEXT, b"m%d" % i) for i in range(500))
    ws.send_raw(batch)
    for i in range(500):
        assert ws.recv_message(timeout=10) == (OP_TEXT, b"m%d" % i)
    t0 = time.monotonic()
    ws.send_close(1000)
    code, _ = ws.expect_close(timeout=5)
    assert code == 1000
    # closed with TLS's own shutdown, not after the close timeout
    assert time.monotonic() - t0 < 3
    ws.close()


def test_chat_over_tls(nginx, cert):
    ng, port = start(nginx, cert)
    ws = connect(ng, port, "/chat/ws")
    assert ws.recv_json()["type"] == "welcome"
    for i in range(50):
        ws.send_text('{"type":"ping","id":%d}' % i)
    assert [ws.recv_json()["id"] for _ in range(50)] == list(range(50))
    ws.close()
