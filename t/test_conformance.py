"""WebSocket conformance (RFC 6455) of the echo endpoint, case by case as
the Autobahn|Testsuite fuzzingclient runs them, plus strict checks that
Autobahn does not make.

Every Autobahn case of sections 1-7, 9 and 10 (12 and 13, compression,
are not run: no extension is ever negotiated) is one test named after its
id: test_case_1_1_1 is Autobahn's case 1.1.1.  Each sends the same bytes
as the Autobahn case (same opcodes, payloads, fragmentation and, where the
case says so, the same chopping of the byte stream and the same pauses)
and asserts the outcome Autobahn grades "OK" in strict mode, and more:

- echoed payloads are compared byte for byte (Autobahn's 9.x cases only
  compare lengths);
- echoes are one unfragmented frame (docs/protocol.md, the echo endpoint);
- the order of pongs and echoes is checked where Autobahn checks it;
- a connection the server fails gets a Close with exactly the expected
  code as the very next frame (no echo or pong slips in before it), and
  after its Close the server sends nothing more and closes TCP;
- a closing handshake the client starts gets the code echoed.

Autobahn's own harness is not available here (no PyPI): docs/conformance.md
says how to run it against `make run`.

One nginx serves the whole module (the `server` fixture below builds it
with conftest's NginxFactory instead of the function-scoped `nginx`
fixture, which would start ~330 instances); after every test an autouse
fixture checks that the test's part of the error log has no alert, crit
or sanitizer line and that the worker is still the same process (a crash
makes the master start a new one).
"""

import base64
import hashlib
import os
import socket
import struct
import threading
import time

import pytest

import chatlib
from chatlib import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG,
                     OP_TEXT, ConnectionClosed, RawWS, build_frame)
from conftest import NginxFactory, bad_log_lines

ECHO = "/chat/echo"
CHAT = "/chat/ws"

LOCATIONS = """
        location = /chat/echo {
            chat_echo;
            chat_max_message_size 16m;
            chat_max_fragments 100000;
        }

        location = /chat/ws {
            chat_websocket;
        }
"""

ECHO_MAX_MESSAGE = 16 * 1024 * 1024
ECHO_MAX_FRAGMENTS = 100000
CHAT_MAX_MESSAGE = 64 * 1024
CHAT_MAX_FRAGMENTS = 128

# Autobahn's "sync" (frame-wise chops): each frame is flushed on its own;
# a short pause after each makes it leave in its own segment.
SYNC_PAUSE = 0.005
# Autobahn's "chopsize": each chop is a separate write; with TCP_NODELAY
# and this pause the server sees (mostly) separate reads.
CHOP_PAUSE = 0.0005

FRAME_TIMEOUT = 10          # a frame the server owes us
FAIL_FAST = 1.0             # a connection failure must come this quickly


# --------------------------------------------------------------------------
# the server and its health after each test

@pytest.fixture(scope="module")
def server():
    factory = NginxFactory("conformance", [])
    try:
        inst = factory(LOCATIONS)
    except BaseException:
        for i in factory.instances:
            i.kill()
        raise
    yield inst
    try:
        inst.quit()
    finally:
        inst.kill()
    inst.check_logs()


def _read_from(path, offset):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


@pytest.fixture(autouse=True)
def _server_healthy(request, server):
    """The test's own error log lines are clean and no worker died."""
    logs = [os.path.join(server.prefix, "error.log"),
            os.path.join(server.prefix, "stderr.log")]
    offsets = [_size(p) for p in logs]
    workers = set(server.worker_pids())
    yield
    bad = []
    for path, off in zip(logs, offsets):
        bad += bad_log_lines(_read_from(path, off))
    if bad:
        pytest.fail("nginx logged during %s:\n%s"
                    % (request.node.name, "\n".join(bad)), pytrace=False)
    if server.proc is None or server.proc.poll() is not None:
        pytest.fail("the nginx master is gone after %s" % request.node.name,
                    pytrace=False)
    now = set(server.worker_pids())
    if now != workers:
        pytest.fail("worker process changed during %s (%s -> %s): it "
                    "crashed?\n%s" % (request.node.name, sorted(workers),
                                      sorted(now),
                                      "\n".join(server.error_log()
                                                .splitlines()[-20:])),
                    pytrace=False)


# --------------------------------------------------------------------------
# the client

def _short(data, n=60):
    if len(data) <= n:
        return repr(data)
    return "%r... (%d bytes)" % (data[:n], len(data))


def _diff(expected, got):
    """Why two payloads differ, readably even for megabytes."""
    if len(expected) != len(got):
        return "length %d, expected %d: %s" % (len(got), len(expected),
                                               _short(got))
    for i, (a, b) in enumerate(zip(expected, got)):
        if a != b:
            return ("first difference at offset %d: got %r, expected %r"
                    % (i, got[max(0, i - 8):i + 8],
                       expected[max(0, i - 8):i + 8]))
    return "equal"


def repeat_to(pattern, n):
    """Autobahn's payload_len: pattern repeated and cut to n bytes."""
    return (pattern * (n // len(pattern) + 1))[:n]


OPNAMES = {OP_CONT: "continuation", OP_TEXT: "text", OP_BINARY: "binary",
           OP_CLOSE: "close", OP_PING: "ping", OP_PONG: "pong"}


def text(payload):
    return ("message", OP_TEXT,
            payload.encode() if isinstance(payload, str) else payload)


def binary(payload):
    return ("message", OP_BINARY, payload)


def pong(payload=b""):
    return ("pong", OP_PONG,
            payload.encode() if isinstance(payload, str) else payload)


class Peer:
    """A raw-socket client (chatlib.RawWS) of one test case: it sends
    exactly the frames and chops the case wants and checks every frame the
    server sends against what the case expects, naming the case in every
    failure."""

    def __init__(self, server, case="", path=ECHO, user="autobahn"):
        self.case = case
        token = chatlib.make_token(server.key, user)
        self.ws = RawWS.connect(server.port, path, token=token,
                                token_in="query")
        self.sock = self.ws.sock
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.ws.close()

    def fail(self, msg):
        pytest.fail("case %s: %s" % (self.case, msg), pytrace=False)

    # --- sending

    def send(self, opcode, payload=b"", fin=True, rsv=0, chop=None,
             pause=None, sync=False, **kw):
        """One frame; chop: write it chop bytes at a time (Autobahn's
        chopsize); sync: pause after it (Autobahn's sync=True)."""
        if isinstance(payload, str):
            payload = payload.encode()
        data = build_frame(opcode, payload, fin=fin, rsv=rsv, **kw)
        self.send_raw(data, chop, pause)
        if sync:
            time.sleep(SYNC_PAUSE)

    def send_raw(self, data, chop=None, pause=None):
        if chop:
            if pause is None:
                pause = CHOP_PAUSE if len(data) // chop <= 2000 else 0.0
            self.ws.send_raw(data, chunk=chop, delay=pause)
        else:
            self.ws.send_raw(data)

    def send_close(self, code=1000, reason=b""):
        if isinstance(reason, str):
            reason = reason.encode()
        payload = b"" if code is None else struct.pack("!H", code) + reason
        self.send(OP_CLOSE, payload)

    # --- receiving

    def frame(self, timeout=FRAME_TIMEOUT, what="a frame"):
        try:
            return self.ws.recv_frame(timeout)
        except ConnectionClosed as e:
            self.fail("waiting for %s: %s" % (what, e))
        except TimeoutError:
            self.fail("waiting for %s: nothing within %ss" % (what, timeout))

    def expect(self, *events, timeout=FRAME_TIMEOUT):
        """The next frames are exactly these events, in this order."""
        for ev in events:
            kind, opcode, payload = ev
            what = "%s %s" % (OPNAMES[opcode], _short(payload, 30))
            fin, op, got = self.frame(timeout, what)
            if op != opcode:
                self.fail("expected %s, got a %s frame %s"
                          % (what, OPNAMES.get(op, op), _short(got)))
            if not fin:
                self.fail("the echo of %s is fragmented: one unfragmented "
                          "message expected" % what)
            if got != payload:
                self.fail("%s: payload differs, %s"
                          % (what, _diff(payload, got)))

    def expect_silence(self, seconds):
        """Nothing at all arrives for that long."""
        if self.ws.buf:
            self.fail("unexpected bytes from the server: %s"
                      % _short(bytes(self.ws.buf)))
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536, socket.MSG_PEEK)
            except socket.timeout:
                return
            if not data:
                self.fail("the server closed the connection where it "
                          "should have waited")
            self.fail("the server sent %s where nothing was expected "
                      "(yet)" % _short(data))

    def expect_eof(self, timeout=1.0):
        """After the server's Close: no byte more, then the server's FIN
        within timeout (Autobahn: the server should close TCP first; its
        client waits 1 s for that before dropping the connection itself)."""
        if self.ws.buf:
            self.fail("the server sent %s after its Close"
                      % _short(bytes(self.ws.buf)))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail("the server did not close TCP within %ss after "
                          "the closing handshake" % timeout)
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                self.fail("the server reset the connection instead of "
                          "closing it")
            if not data:
                return
            self.fail("the server sent %s after its Close" % _short(data))

    def _close_frame(self, timeout, what):
        fin, op, payload = self.frame(timeout, what)
        if op != OP_CLOSE:
            self.fail("expected %s, got a %s frame %s"
                      % (what, OPNAMES.get(op, op), _short(payload)))
        return payload

    def expect_close_answer(self, code):
        """The server's Close carrying code (the answer to ours, or its
        failure of the connection after ours), then no byte more and TCP
        closed."""
        payload = self._close_frame(FRAME_TIMEOUT, "Close %d" % code)
        got = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 \
            else None
        if got != code:
            self.fail("expected Close %d, got Close %s" % (code,
                                                           _short(payload)))
        self.expect_eof()

    def close_normally(self, code=1000, reason=b"", expect_code="same"):
        """Starts the closing handshake: the server must answer with a
        Close echoing code (expect_code None: an empty Close), send nothing
        after it and close TCP."""
        self.send_close(code, reason)
        if expect_code == "same":
            expect_code = code
        payload = self._close_frame(FRAME_TIMEOUT,
                                    "the Close answering ours")
        if expect_code is None:
            if payload != b"":
                self.fail("expected an empty Close, got %s"
                          % _short(payload))
        else:
            got = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 \
                else None
            if got != expect_code:
                self.fail("the server answered Close %r with Close %r "
                          "(payload %s), expected %d"
                          % (code, got, _short(payload), expect_code))
        self.expect_eof()

    def expect_failure(self, code, timeout=FRAME_TIMEOUT):
        """The server fails the connection: the next frame is its Close
        with this code; we answer it, as Autobahn does; then nothing more
        and TCP is closed.  Returns the reason."""
        t0 = time.monotonic()
        payload = self._close_frame(timeout, "Close %d" % code)
        if len(payload) < 2:
            self.fail("expected Close %d, got Close %s" % (code,
                                                           _short(payload)))
        got = struct.unpack("!H", payload[:2])[0]
        if got != code:
            self.fail("expected Close %d, got Close %d %r"
                      % (code, got, payload[2:]))
        self.elapsed = time.monotonic() - t0
        try:
            self.send_close(code)
        except OSError:
            pass
        self.expect_eof()
        return payload[2:].decode()


@pytest.fixture
def peer(server, request):
    """peer(case): a connected Peer on the echo endpoint."""
    peers = []

    def connect(case=None, path=ECHO):
        p = Peer(server, case or request.node.name, path)
        peers.append(p)
        return p
    yield connect
    for p in peers:
        p.ws.close()


def _make_case(cid, doc, body):
    """Defines test_case_<cid> in this module: body(peer) runs on a fresh
    connection to the echo endpoint."""
    name = "test_case_" + cid.replace(".", "_")

    def test(server):
        with Peer(server, cid) as p:
            body(p)
    test.__name__ = test.__qualname__ = name
    test.__doc__ = "Autobahn %s: %s" % (cid, doc)
    assert name not in globals(), name
    globals()[name] = test


# ==========================================================================
# 1 Framing: text and binary echo at every length encoding boundary

_LENGTHS = [0, 125, 126, 127, 128, 65535, 65536]


def _echo_body(opcode, payload, chop=None):
    def body(p):
        p.send(opcode, payload, chop=chop)
        p.expect(("message", opcode, payload))
        p.close_normally()
    return body


for _i, _n in enumerate(_LENGTHS, 1):
    _make_case("1.1.%d" % _i, "text message of %d bytes" % _n,
               _echo_body(OP_TEXT, b"*" * _n))
    _make_case("1.2.%d" % _i, "binary message of %d bytes" % _n,
               _echo_body(OP_BINARY, b"\xfe" * _n))
_make_case("1.1.8", "text message of 65536 bytes sent in chops of 997",
           _echo_body(OP_TEXT, b"*" * 65536, chop=997))
_make_case("1.2.8", "binary message of 65536 bytes sent in chops of 997",
           _echo_body(OP_BINARY, b"\xfe" * 65536, chop=997))


# ==========================================================================
# 2 Pings and pongs

def test_case_2_1(peer):
    """Autobahn 2.1: ping without payload -> pong without payload."""
    p = peer("2.1")
    p.send(OP_PING)
    p.expect(pong(b""))
    p.close_normally()


def test_case_2_2(peer):
    """Autobahn 2.2: ping with a small text payload."""
    p = peer("2.2")
    p.send(OP_PING, b"Hello, world!")
    p.expect(pong(b"Hello, world!"))
    p.close_normally()


def test_case_2_3(peer):
    """Autobahn 2.3: ping with a small binary (not UTF-8) payload."""
    p = peer("2.3")
    p.send(OP_PING, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff")
    p.expect(pong(b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"))
    p.close_normally()


def test_case_2_4(peer):
    """Autobahn 2.4: ping with a 125-byte binary payload (the maximum)."""
    p = peer("2.4")
    p.send(OP_PING, b"\xfe" * 125)
    p.expect(pong(b"\xfe" * 125))
    p.close_normally()


def test_case_2_5(peer):
    """Autobahn 2.5: ping with a 126-byte payload -> 1002 at once."""
    p = peer("2.5")
    p.send(OP_PING, b"\xfe" * 126)
    p.expect_failure(1002)


def test_case_2_6(peer):
    """Autobahn 2.6: 125-byte ping sent in 1-byte chops."""
    p = peer("2.6")
    p.send(OP_PING, b"\xfe" * 125, chop=1)
    p.expect(pong(b"\xfe" * 125))
    p.close_normally()


def test_case_2_7(peer):
    """Autobahn 2.7: unsolicited pong without payload: nothing comes back
    (the next frame is the Close answering ours)."""
    p = peer("2.7")
    p.send(OP_PONG)
    p.close_normally()


def test_case_2_8(peer):
    """Autobahn 2.8: unsolicited pong with payload: nothing comes back."""
    p = peer("2.8")
    p.send(OP_PONG, b"unsolicited pong payload")
    p.close_normally()


def test_case_2_9(peer):
    """Autobahn 2.9: unsolicited pong, then a ping: only the ping's pong
    comes back."""
    p = peer("2.9")
    p.send(OP_PONG, b"unsolicited pong payload")
    p.send(OP_PING, b"ping payload")
    p.expect(pong(b"ping payload"))
    p.close_normally()


def test_case_2_10(peer):
    """Autobahn 2.10: 10 pings -> 10 pongs, in order."""
    p = peer("2.10")
    for i in range(10):
        p.send(OP_PING, b"payload-%d" % i)
    p.expect(*[pong(b"payload-%d" % i) for i in range(10)])
    p.close_normally()


def test_case_2_11(peer):
    """Autobahn 2.11: 10 pings sent in 1-byte chops -> 10 pongs."""
    p = peer("2.11")
    for i in range(10):
        p.send(OP_PING, b"payload-%d" % i, chop=1)
    p.expect(*[pong(b"payload-%d" % i) for i in range(10)])
    p.close_normally()


# ==========================================================================
# 3 Reserved bits: no extension is negotiated, so any RSV bit fails

def test_case_3_1(peer):
    """Autobahn 3.1: text with RSV = 1 -> 1002, no echo."""
    p = peer("3.1")
    p.send(OP_TEXT, b"Hello, world!", rsv=1)
    p.expect_failure(1002)


def _rsv_after_echo(p, rsv, **how):
    p.send(OP_TEXT, b"Hello, world!", **how)
    p.send(OP_TEXT, b"Hello, world!", rsv=rsv, **how)
    p.send(OP_PING, **how)
    # the echo first, then the Close; the ping after the bad frame is
    # never answered
    p.expect(text(b"Hello, world!"))
    p.expect_failure(1002)


def test_case_3_2(peer):
    """Autobahn 3.2: text, text with RSV = 2, ping, in one write: echo,
    then Close 1002, no pong."""
    _rsv_after_echo(peer("3.2"), 2)


def test_case_3_3(peer):
    """Autobahn 3.3: as 3.2 with RSV = 3, frame-wise chops."""
    _rsv_after_echo(peer("3.3"), 3, sync=True)


def test_case_3_4(peer):
    """Autobahn 3.4: as 3.2 with RSV = 4, octet-wise chops."""
    _rsv_after_echo(peer("3.4"), 4, chop=1)


def test_case_3_5(peer):
    """Autobahn 3.5: binary with RSV = 5 -> 1002."""
    p = peer("3.5")
    p.send(OP_BINARY, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", rsv=5)
    p.expect_failure(1002)


def test_case_3_6(peer):
    """Autobahn 3.6 ("ping with RSV = 6"; the suite's code sends opcode 2):
    -> 1002.  Both variants are sent, on two connections."""
    p = peer("3.6")
    p.send(OP_BINARY, b"Hello, world!", rsv=6)
    p.expect_failure(1002)
    p = peer("3.6 (as a ping)")
    p.send(OP_PING, b"Hello, world!", rsv=6)
    p.expect_failure(1002)


def test_case_3_7(peer):
    """Autobahn 3.7: Close with RSV = 7 -> 1002 (not a closing handshake
    answered with 1000/1005)."""
    p = peer("3.7")
    p.send(OP_CLOSE, rsv=7)
    p.expect_failure(1002)


# ==========================================================================
# 4 Reserved opcodes

def _reserved_opcode(p, opcode, payload=b""):
    p.send(opcode, payload)
    p.expect_failure(1002)


def _reserved_after_echo(p, opcode, payload=b""):
    p.send(OP_TEXT, b"Hello, world!")
    p.send(opcode, payload)
    p.send(OP_PING)
    p.expect(text(b"Hello, world!"))
    p.expect_failure(1002)


def test_case_4_1_1(peer):
    """Autobahn 4.1.1: reserved non-control opcode 3 -> 1002."""
    _reserved_opcode(peer("4.1.1"), 3)


def test_case_4_1_2(peer):
    """Autobahn 4.1.2: reserved non-control opcode 4 with payload."""
    _reserved_opcode(peer("4.1.2"), 4, b"reserved opcode payload")


def test_case_4_1_3(peer):
    """Autobahn 4.1.3: text, opcode 5, ping: echo, then 1002, no pong."""
    _reserved_after_echo(peer("4.1.3"), 5)


def test_case_4_1_4(peer):
    """Autobahn 4.1.4: text, opcode 6 with payload, ping."""
    _reserved_after_echo(peer("4.1.4"), 6, b"Hello, world!")


def test_case_4_1_5(peer):
    """Autobahn 4.1.5: text, opcode 7 with payload, ping."""
    _reserved_after_echo(peer("4.1.5"), 7, b"Hello, world!")


def test_case_4_2_1(peer):
    """Autobahn 4.2.1: reserved control opcode 11 -> 1002."""
    _reserved_opcode(peer("4.2.1"), 11)


def test_case_4_2_2(peer):
    """Autobahn 4.2.2: reserved control opcode 12 with payload."""
    _reserved_opcode(peer("4.2.2"), 12, b"reserved opcode payload")


def test_case_4_2_3(peer):
    """Autobahn 4.2.3: text, opcode 13, ping: echo, then 1002, no pong."""
    _reserved_after_echo(peer("4.2.3"), 13)


def test_case_4_2_4(peer):
    """Autobahn 4.2.4: text, opcode 14 with payload, ping."""
    _reserved_after_echo(peer("4.2.4"), 14, b"Hello, world!")


def test_case_4_2_5(peer):
    """Autobahn 4.2.5: text, opcode 15 with payload, ping."""
    _reserved_after_echo(peer("4.2.5"), 15, b"Hello, world!")


# ==========================================================================
# 5 Fragmentation

def test_case_5_1(peer):
    """Autobahn 5.1: ping fragmented into 2 fragments -> 1002."""
    p = peer("5.1")
    p.send(OP_PING, b"fragment1", fin=False)
    p.send(OP_CONT, b"fragment2")
    p.expect_failure(1002)


def test_case_5_2(peer):
    """Autobahn 5.2: pong fragmented into 2 fragments -> 1002."""
    p = peer("5.2")
    p.send(OP_PONG, b"fragment1", fin=False)
    p.send(OP_CONT, b"fragment2")
    p.expect_failure(1002)


def _two_fragments(p, **how):
    p.send(OP_TEXT, b"fragment1", fin=False, **how)
    p.send(OP_CONT, b"fragment2", **how)
    p.expect(text(b"fragment1fragment2"))
    p.close_normally()


def test_case_5_3(peer):
    """Autobahn 5.3: text in 2 fragments -> one echo."""
    _two_fragments(peer("5.3"))


def test_case_5_4(peer):
    """Autobahn 5.4: as 5.3, frame-wise chops."""
    _two_fragments(peer("5.4"), sync=True)


def test_case_5_5(peer):
    """Autobahn 5.5: as 5.3, octet-wise chops."""
    _two_fragments(peer("5.5"), chop=1)


def _ping_between(p, **how):
    p.send(OP_TEXT, b"fragment1", fin=False, **how)
    p.send(OP_PING, b"ping payload", **how)
    p.send(OP_CONT, b"fragment2", **how)
    # the pong first: the message is not complete when the ping arrives
    p.expect(pong(b"ping payload"), text(b"fragment1fragment2"))
    p.close_normally()


def test_case_5_6(peer):
    """Autobahn 5.6: text in 2 fragments with a ping between: the pong,
    then the echo."""
    _ping_between(peer("5.6"))


def test_case_5_7(peer):
    """Autobahn 5.7: as 5.6, frame-wise chops."""
    _ping_between(peer("5.7"), sync=True)


def test_case_5_8(peer):
    """Autobahn 5.8: as 5.6, octet-wise chops."""
    _ping_between(peer("5.8"), chop=1)


def _nothing_to_continue(p, fin, **how):
    p.send(OP_CONT, b"non-continuation payload", fin=fin, **how)
    p.send(OP_TEXT, b"Hello, world!", **how)
    p.expect_failure(1002)


def test_case_5_9(peer):
    """Autobahn 5.9: continuation (FIN) with nothing to continue, then a
    text -> 1002, no echo."""
    _nothing_to_continue(peer("5.9"), True)


def test_case_5_10(peer):
    """Autobahn 5.10: as 5.9, frame-wise chops."""
    _nothing_to_continue(peer("5.10"), True, sync=True)


def test_case_5_11(peer):
    """Autobahn 5.11: as 5.9, octet-wise chops."""
    _nothing_to_continue(peer("5.11"), True, chop=1)


def test_case_5_12(peer):
    """Autobahn 5.12: continuation (no FIN) with nothing to continue,
    then a text -> 1002."""
    _nothing_to_continue(peer("5.12"), False)


def test_case_5_13(peer):
    """Autobahn 5.13: as 5.12, frame-wise chops."""
    _nothing_to_continue(peer("5.13"), False, sync=True)


def test_case_5_14(peer):
    """Autobahn 5.14: as 5.12, octet-wise chops."""
    _nothing_to_continue(peer("5.14"), False, chop=1)


def test_case_5_15(peer):
    """Autobahn 5.15: a complete fragmented text, then a continuation with
    nothing to continue, then a text: the first message is echoed, then
    Close 1002."""
    p = peer("5.15")
    p.send(OP_TEXT, b"fragment1", fin=False)
    p.send(OP_CONT, b"fragment2")
    p.send(OP_CONT, b"fragment3", fin=False)
    p.send(OP_TEXT, b"fragment4")
    p.expect(text(b"fragment1fragment2"))
    p.expect_failure(1002)


def test_case_5_16(peer):
    """Autobahn 5.16: 2x (continuation no FIN, text no FIN, continuation
    FIN) -> 1002 at the first frame, nothing echoed."""
    p = peer("5.16")
    for _ in range(2):
        p.send(OP_CONT, b"fragment1", fin=False)
        p.send(OP_TEXT, b"fragment2", fin=False)
        p.send(OP_CONT, b"fragment3")
    p.expect_failure(1002)


def test_case_5_17(peer):
    """Autobahn 5.17: 2x (continuation FIN, text no FIN, continuation FIN)
    -> 1002 at the first frame, nothing echoed."""
    p = peer("5.17")
    for _ in range(2):
        p.send(OP_CONT, b"fragment1")
        p.send(OP_TEXT, b"fragment2", fin=False)
        p.send(OP_CONT, b"fragment3")
    p.expect_failure(1002)


def test_case_5_18(peer):
    """Autobahn 5.18: text in 2 fragments, both with opcode text -> 1002."""
    p = peer("5.18")
    p.send(OP_TEXT, b"fragment1", fin=False)
    p.send(OP_TEXT, b"fragment2")
    p.expect_failure(1002)


_WAIT_5_19 = 0.5


def _fragments_with_pings(p, sync):
    frags = [b"fragment1", b"fragment2", b"fragment3", b"fragment4",
             b"fragment5"]
    p.send(OP_TEXT, frags[0], fin=False, sync=sync)
    p.send(OP_CONT, frags[1], fin=False, sync=sync)
    p.send(OP_PING, b"pongme 1!", sync=sync)
    # the first pong comes while the message is still open
    p.expect(pong(b"pongme 1!"), timeout=_WAIT_5_19 + FAIL_FAST)
    p.expect_silence(_WAIT_5_19)
    p.send(OP_CONT, frags[2], fin=False, sync=sync)
    p.send(OP_CONT, frags[3], fin=False, sync=sync)
    p.send(OP_PING, b"pongme 2!", sync=sync)
    p.send(OP_CONT, frags[4], sync=sync)
    p.expect(pong(b"pongme 2!"), text(b"".join(frags)))
    p.close_normally()


def test_case_5_19(peer):
    """Autobahn 5.19: 2 fragments, ping, wait, 2 fragments, ping, last
    fragment: the first pong before the message completes, then the
    second pong, then the echo."""
    _fragments_with_pings(peer("5.19"), False)


def test_case_5_20(peer):
    """Autobahn 5.20: as 5.19, frame-wise chops."""
    _fragments_with_pings(peer("5.20"), True)


# ==========================================================================
# 6 UTF-8 handling

def test_case_6_1_1(peer):
    """Autobahn 6.1.1: empty text message -> empty echo."""
    p = peer("6.1.1")
    p.send(OP_TEXT, b"")
    p.expect(text(b""))
    p.close_normally()


def test_case_6_1_2(peer):
    """Autobahn 6.1.2: 3 empty fragments -> one empty echo."""
    p = peer("6.1.2")
    p.send(OP_TEXT, b"", fin=False)
    p.send(OP_CONT, b"", fin=False)
    p.send(OP_CONT, b"")
    p.expect(text(b""))
    p.close_normally()


def test_case_6_1_3(peer):
    """Autobahn 6.1.3: empty, non-empty, empty fragments."""
    p = peer("6.1.3")
    p.send(OP_TEXT, b"", fin=False)
    p.send(OP_CONT, b"middle frame payload", fin=False)
    p.send(OP_CONT, b"")
    p.expect(text(b"middle frame payload"))
    p.close_normally()


HELLO_UTF8 = "Hello-µ@ßöäüàá-UTF-8!!".encode()
KOSME = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"     # κόσμε


def _fragmented(p, opcode, payload, size, **how):
    """Sends payload as a message in fragments of size bytes."""
    chunks = [payload[i:i + size] for i in range(0, len(payload), size)] \
        or [b""]
    for i, c in enumerate(chunks):
        p.send(opcode if i == 0 else OP_CONT, c,
               fin=(i == len(chunks) - 1), **how)


def test_case_6_2_1(peer):
    """Autobahn 6.2.1: valid UTF-8 in one frame."""
    p = peer("6.2.1")
    p.send(OP_TEXT, HELLO_UTF8)
    p.expect(text(HELLO_UTF8))
    p.close_normally()


def test_case_6_2_2(peer):
    """Autobahn 6.2.2: valid UTF-8 in 2 fragments split at a code point
    boundary."""
    p = peer("6.2.2")
    p.send(OP_TEXT, "Hello-µ@ßöä".encode(), fin=False)
    p.send(OP_CONT, "üàá-UTF-8!!".encode())
    p.expect(text(HELLO_UTF8))
    p.close_normally()


def test_case_6_2_3(peer):
    """Autobahn 6.2.3: valid UTF-8 in 1-byte fragments (split inside code
    points)."""
    p = peer("6.2.3")
    _fragmented(p, OP_TEXT, HELLO_UTF8, 1)
    p.expect(text(HELLO_UTF8))
    p.close_normally()


def test_case_6_2_4(peer):
    """Autobahn 6.2.4: κόσμε in 1-byte fragments."""
    p = peer("6.2.4")
    _fragmented(p, OP_TEXT, KOSME, 1)
    p.expect(text(KOSME))
    p.close_normally()


INVALID_6_3 = KOSME + b"\xed\xa0\x80" + b"edited"     # a surrogate


def test_case_6_3_1(peer):
    """Autobahn 6.3.1: invalid UTF-8 (a surrogate) in one frame -> 1007,
    no echo."""
    p = peer("6.3.1")
    p.send(OP_TEXT, INVALID_6_3)
    p.expect_failure(1007)


def test_case_6_3_2(peer):
    """Autobahn 6.3.2: the same in 1-byte fragments -> 1007."""
    p = peer("6.3.2")
    _fragmented(p, OP_TEXT, INVALID_6_3, 1)
    p.expect_failure(1007)


# 6.4: fail fast.  The valid part goes out, nothing may come back; then the
# part that makes the text invalid: Close 1007 must come before the rest
# is sent (which never is).

_PART1 = KOSME
_PART2 = b"\xf4\x90\x80\x80"        # 0x110000: beyond U+10FFFF
_PART3 = b"edited"
_FULL_6_4 = _PART1 + _PART2 + _PART3
_QUIET = 0.5


def _fail_fast(p, first, second):
    p.send_raw(first)
    p.expect_silence(_QUIET)
    p.send_raw(second)
    p.expect_failure(1007, timeout=FAIL_FAST)


def test_case_6_4_1(peer):
    """Autobahn 6.4.1: 3 fragments; the 2nd (0xF4 0x90...) makes the text
    invalid: 1007 at once, before the 3rd is sent."""
    p = peer("6.4.1")
    _fail_fast(p, build_frame(OP_TEXT, _PART1, fin=False),
               build_frame(OP_CONT, _PART2, fin=False))


def test_case_6_4_2(peer):
    """Autobahn 6.4.2: as 6.4.1, the 2nd fragment is just the deciding
    byte (0x90 after a 0xF4 that ended the 1st fragment)."""
    p = peer("6.4.2")
    _fail_fast(p, build_frame(OP_TEXT, _FULL_6_4[:12], fin=False),
               build_frame(OP_CONT, _FULL_6_4[12:13], fin=False))


def _chopped_frame(payload, cuts):
    """One masked text frame cut into pieces of the wire bytes: the header
    with payload[:cuts[0]], then payload[cuts[0]:cuts[1]], ..."""
    frame = build_frame(OP_TEXT, payload)
    hlen = len(frame) - len(payload)
    bounds = [0] + [hlen + c for c in cuts] + [len(frame)]
    return [frame[a:b] for a, b in zip(bounds, bounds[1:])]


def test_case_6_4_3(peer):
    """Autobahn 6.4.3: one frame sent in 3 chops (valid part, invalid
    part, rest): 1007 after the 2nd chop, before the 3rd."""
    p = peer("6.4.3")
    first, second, _ = _chopped_frame(_FULL_6_4, [11, 15])
    _fail_fast(p, first, second)


def test_case_6_4_4(peer):
    """Autobahn 6.4.4: as 6.4.3, the 2nd chop is just the deciding byte."""
    p = peer("6.4.4")
    first, second, _ = _chopped_frame(_FULL_6_4, [12, 13])
    _fail_fast(p, first, second)


def _utf8_sequences():
    """Autobahn's 6.5 to 6.23: (category, [(valid, bytes)]), in its order
    (from Markus Kuhn's UTF-8-test.txt)."""
    cats = []
    cats.append(("Some valid UTF-8 sequences", [
        (True, b"hello\x24world"), (True, b"hello\xc2\xa2world"),
        (True, b"hello\xe2\x82\xacworld"),
        (True, b"hello\xf0\xa4\xad\xa2world"), (True, KOSME)]))
    # valid exactly when cut at a code point boundary
    cats.append(("All prefixes of a valid UTF-8 string that contains "
                 "multi-byte code points",
                 [(i in (2, 5, 7, 9, 11), KOSME[:i]) for i in range(1, 12)]))
    cats.append(("First possible sequence of a certain length", [
        (True, b"\x00"), (True, b"\xc2\x80"), (True, b"\xe0\xa0\x80"),
        (True, b"\xf0\x90\x80\x80")]))
    cats.append(("First possible sequence length 5/6 (invalid codepoints)",
                 [(False, b"\xf8\x88\x80\x80\x80"),
                  (False, b"\xfc\x84\x80\x80\x80\x80")]))
    cats.append(("Last possible sequence of a certain length", [
        (True, b"\x7f"), (True, b"\xdf\xbf"), (True, b"\xef\xbf\xbf"),
        (True, b"\xf4\x8f\xbf\xbf")]))
    cats.append(("Last possible sequence length 4/5/6 (invalid codepoints)",
                 [(False, b"\xf7\xbf\xbf\xbf"),
                  (False, b"\xfb\xbf\xbf\xbf\xbf"),
                  (False, b"\xfd\xbf\xbf\xbf\xbf\xbf")]))
    cats.append(("Other boundary conditions", [
        (True, b"\xed\x9f\xbf"), (True, b"\xee\x80\x80"),
        (True, b"\xef\xbf\xbd"), (True, b"\xf4\x8f\xbf\xbf"),
        (False, b"\xf4\x90\x80\x80")]))
    cats.append(("Unexpected continuation bytes", [
        (False, b"\x80"), (False, b"\xbf"), (False, b"\x80\xbf"),
        (False, b"\x80\xbf\x80"), (False, b"\x80\xbf\x80\xbf"),
        (False, b"\x80\xbf\x80\xbf\x80"),
        (False, b"\x80\xbf\x80\xbf\x80\xbf"),
        (False, bytes(range(0x80, 0xbf)))]))
    cats.append(("Lonely start characters", [
        (False, b"".join(bytes([c, 0x20]) for c in range(lo, hi)))
        for lo, hi in [(0xc0, 0xdf), (0xe0, 0xef), (0xf0, 0xf7),
                       (0xf8, 0xfb), (0xfc, 0xfd)]]))
    missing = [b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80",
               b"\xfc\x80\x80\x80\x80", b"\xdf", b"\xef\xbf",
               b"\xf7\xbf\xbf", b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf"]
    cats.append(("Sequences with last continuation byte missing",
                 [(False, m) for m in missing]))
    cats.append(("Concatenation of incomplete sequences",
                 [(False, b"".join(missing))]))
    cats.append(("Impossible bytes", [
        (False, b"\xfe"), (False, b"\xff"), (False, b"\xfe\xfe\xff\xff")]))
    cats.append(("Examples of an overlong ASCII character", [
        (False, b"\xc0\xaf"), (False, b"\xe0\x80\xaf"),
        (False, b"\xf0\x80\x80\xaf"), (False, b"\xf8\x80\x80\x80\xaf"),
        (False, b"\xfc\x80\x80\x80\x80\xaf")]))
    cats.append(("Maximum overlong sequences", [
        (False, b"\xc1\xbf"), (False, b"\xe0\x9f\xbf"),
        (False, b"\xf0\x8f\xbf\xbf"), (False, b"\xf8\x87\xbf\xbf\xbf"),
        (False, b"\xfc\x83\xbf\xbf\xbf\xbf")]))
    cats.append(("Overlong representation of the NUL character", [
        (False, b"\xc0\x80"), (False, b"\xe0\x80\x80"),
        (False, b"\xf0\x80\x80\x80"), (False, b"\xf8\x80\x80\x80\x80"),
        (False, b"\xfc\x80\x80\x80\x80\x80")]))
    cats.append(("Single UTF-16 surrogates", [
        (False, s) for s in [b"\xed\xa0\x80", b"\xed\xad\xbf",
                             b"\xed\xae\x80", b"\xed\xaf\xbf",
                             b"\xed\xb0\x80", b"\xed\xbe\x80",
                             b"\xed\xbf\xbf"]]))
    cats.append(("Paired UTF-16 surrogates", [
        (False, hi + lo)
        for hi in [b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80",
                   b"\xed\xaf\xbf"]
        for lo in [b"\xed\xb0\x80", b"\xed\xbf\xbf"]]))
    nonchars = [(True, b"\xef\xbf\xbe"), (True, b"\xef\xbf\xbf")]
    for z1 in b"\xf0\xf1\xf2\xf3\xf4":
        for z2 in b"\x8f\x9f\xaf\xbf":
            if z1 == 0xf4 and z2 != 0x8f:
                continue            # beyond U+10FFFF
            for z3 in b"\xbe\xbf":
                seq = bytes([z1, z2, 0xbf, z3])
                if seq not in (b"\xf0\x8f\xbf\xbe", b"\xf0\x8f\xbf\xbf"):
                    nonchars.append((True, seq))        # not overlong
    cats.append(("Non-character code points (valid UTF-8)", nonchars))
    cats.append(("Unicode specials (i.e. replacement char)", [
        (True, b"\xef\xbf" + bytes([c])) for c in range(0xb9, 0xc0)]))
    return cats


UTF8_CASES = []
for _i, (_cat, _seqs) in enumerate(_utf8_sequences(), 5):
    for _j, (_valid, _seq) in enumerate(_seqs, 1):
        UTF8_CASES.append(("6.%d.%d" % (_i, _j), _cat, _valid, _seq))


def _python_says_valid(data):
    try:
        data.decode("utf-8", "strict")
        return True
    except UnicodeDecodeError:
        return False


# the table above must agree with a strict decoder: a typo in it would make
# a test pass or fail for the wrong reason
for _cid, _cat, _valid, _seq in UTF8_CASES:
    assert _python_says_valid(_seq) == _valid, (_cid, _seq)
assert len(UTF8_CASES) == 132 and UTF8_CASES[-1][0] == "6.23.7"


def _utf8_body(valid, seq):
    def body(p):
        p.send(OP_TEXT, seq)
        if valid:
            p.expect(text(seq))
            p.close_normally()
        else:
            p.expect_failure(1007)
    return body


for _cid, _cat, _valid, _seq in UTF8_CASES:
    _make_case(_cid, "%s: %s in one frame -> %s"
               % (_cat, _seq.hex(), "echo" if _valid else "1007"),
               _utf8_body(_valid, _seq))


# ==========================================================================
# 7 Close handling

def test_case_7_1_1(peer):
    """Autobahn 7.1.1: a message, then a Close: the echo, then a clean
    close with 1000."""
    p = peer("7.1.1")
    p.send(OP_TEXT, b"Hello World!")
    p.expect(text(b"Hello World!"))
    p.close_normally(1000)


def test_case_7_1_2(peer):
    """Autobahn 7.1.2: Close, then a second Close: the second is ignored."""
    p = peer("7.1.2")
    p.send_close(1000)
    p.send(OP_CLOSE)
    p.expect_close_answer(1000)


def test_case_7_1_3(peer):
    """Autobahn 7.1.3: Close, then a ping: no pong after the Close."""
    p = peer("7.1.3")
    p.send_close(1000)
    p.send(OP_PING)
    p.expect_close_answer(1000)


def test_case_7_1_4(peer):
    """Autobahn 7.1.4: Close, then a text: not echoed."""
    p = peer("7.1.4")
    p.send_close(1000)
    p.send(OP_TEXT, b"Hello World!")
    p.expect_close_answer(1000)


def test_case_7_1_5(peer):
    """Autobahn 7.1.5: a first fragment, Close, the last fragment: a clean
    close, the message is never echoed."""
    p = peer("7.1.5")
    p.send(OP_TEXT, b"fragment1", fin=False)
    p.send_close(1000)
    p.send(OP_CONT, b"fragment2")
    p.expect_close_answer(1000)


def test_case_7_1_6(peer):
    """Autobahn 7.1.6 (informational; we hold the strict outcome): a 256K
    text, a small text, Close, ping, back to back: both echoes, then the
    Close, no pong."""
    p = peer("7.1.6")
    big = repeat_to(b"BAsd7&jh23", 256 * 1024)
    p.send_raw(build_frame(OP_TEXT, big)
               + build_frame(OP_TEXT, b"Hello World!")
               + build_frame(OP_CLOSE, struct.pack("!H", 1000))
               + build_frame(OP_PING))
    p.expect(text(big), text(b"Hello World!"))
    p.expect_close_answer(1000)


def test_case_7_3_1(peer):
    """Autobahn 7.3.1: Close without payload -> an empty Close (no status
    to echo), then TCP closed."""
    p = peer("7.3.1")
    p.close_normally(None, expect_code=None)


def test_case_7_3_2(peer):
    """Autobahn 7.3.2: Close with a 1-byte payload -> Close 1002."""
    p = peer("7.3.2")
    p.send(OP_CLOSE, b"a")
    p.expect_close_answer(1002)


def test_case_7_3_3(peer):
    """Autobahn 7.3.3: Close 1000 without reason -> Close 1000."""
    p = peer("7.3.3")
    p.close_normally(1000)


def test_case_7_3_4(peer):
    """Autobahn 7.3.4: Close 1000 with a reason -> Close 1000."""
    p = peer("7.3.4")
    p.close_normally(1000, b"Hello World!")


def test_case_7_3_5(peer):
    """Autobahn 7.3.5: Close 1000 with a 123-byte reason (payload 125, the
    maximum) -> Close 1000."""
    p = peer("7.3.5")
    p.close_normally(1000, b"*" * 123)


def test_case_7_3_6(peer):
    """Autobahn 7.3.6: Close 1000 with a 124-byte reason (payload 126, too
    long for a control frame) -> Close 1002."""
    p = peer("7.3.6")
    p.send(OP_CLOSE, struct.pack("!H", 1000) + b"*" * 124)
    p.expect_close_answer(1002)


def test_case_7_5_1(peer):
    """Autobahn 7.5.1: Close 1000 whose reason is not UTF-8 -> Close 1007
    (Autobahn accepts 1002 or 1007; docs/protocol.md says 1007)."""
    p = peer("7.5.1")
    p.send(OP_CLOSE, struct.pack("!H", 1000) + INVALID_6_3)
    p.expect_close_answer(1007)


_VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000,
                3999, 4000, 4999]
_INVALID_CODES = [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999]


def _valid_code_body(code):
    def body(p):
        p.close_normally(code)          # echoed exactly
    return body


def _invalid_code_body(code):
    def body(p):
        p.send_close(code)
        p.expect_close_answer(1002)
    return body


for _i, _code in enumerate(_VALID_CODES, 1):
    _make_case("7.7.%d" % _i, "Close with valid code %d -> echoed" % _code,
               _valid_code_body(_code))
for _i, _code in enumerate(_INVALID_CODES, 1):
    _make_case("7.9.%d" % _i, "Close with invalid code %d -> 1002" % _code,
               _invalid_code_body(_code))
# informational in Autobahn (any behaviour but a crash passes); we hold
# docs/protocol.md's answer: codes outside the accepted ranges are 1002
_make_case("7.13.1", "Close with code 5000 -> 1002 (informational in "
           "Autobahn)", _invalid_code_body(5000))
_make_case("7.13.2", "Close with code 65535 -> 1002 (informational in "
           "Autobahn)", _invalid_code_body(65535))


# ==========================================================================
# 9 Limits and performance (Autobahn checks type and length; we check the
# bytes too)

_K, _M = 1024, 1024 * 1024
_SIZES_9_1 = [64 * _K, 256 * _K, 1 * _M, 4 * _M, 8 * _M, 16 * _M]
_FRAGS_9_3 = [64, 256, 1 * _K, 4 * _K, 16 * _K, 64 * _K, 256 * _K, 1 * _M,
              4 * _M]
_CHOPS_9_5 = [64, 128, 256, 512, 1024, 2048]
_RTT_9_7 = [0, 16, 64, 256, 1024, 4096]
_TEXT_9 = b"BAsd7&jh23"
_BINARY_9 = b"\x00\xfe\x23\xfa\xf0"


def _big_echo_body(opcode, payload, chop=None):
    def body(p):
        p.send(opcode, payload, chop=chop, pause=0.0)
        p.expect(("message", opcode, payload), timeout=60)
        p.close_normally()
    return body


def _fragmented_body(opcode, payload, size):
    def body(p):
        key = os.urandom(4)
        chunks = [payload[i:i + size] for i in range(0, len(payload), size)]
        p.send_raw(b"".join(
            build_frame(opcode if i == 0 else OP_CONT, c,
                        fin=(i == len(chunks) - 1), mask_key=key)
            for i, c in enumerate(chunks)))
        p.expect(("message", opcode, payload), timeout=60)
        p.close_normally()
    return body


def _rtt_body(opcode, size, count=1000):
    def body(p):
        payload = (b"*" if opcode == OP_TEXT else b"\xfe") * size
        frame = build_frame(opcode, payload)
        for i in range(count):
            p.send_raw(frame)
            fin, op, got = p.frame(FRAME_TIMEOUT, "echo %d" % i)
            if (fin, op, got) != (True, opcode, payload):
                p.fail("echo %d of %d: %s" % (i, count, _short(got)))
        p.close_normally()
    return body


for _i, _n in enumerate(_SIZES_9_1, 1):
    _make_case("9.1.%d" % _i, "text message of %d bytes" % _n,
               _big_echo_body(OP_TEXT, repeat_to(_TEXT_9, _n)))
    _make_case("9.2.%d" % _i, "binary message of %d bytes" % _n,
               _big_echo_body(OP_BINARY, repeat_to(_BINARY_9, _n)))
for _i, _f in enumerate(_FRAGS_9_3, 1):
    _make_case("9.3.%d" % _i, "4M text message in fragments of %d" % _f,
               _fragmented_body(OP_TEXT, b"*" * (4 * _M), _f))
    _make_case("9.4.%d" % _i, "4M binary message in fragments of %d" % _f,
               _fragmented_body(OP_BINARY, b"\xfe" * (4 * _M), _f))
for _i, _c in enumerate(_CHOPS_9_5, 1):
    _make_case("9.5.%d" % _i, "1M text message sent in chops of %d" % _c,
               _big_echo_body(OP_TEXT, repeat_to(_TEXT_9, _M), chop=_c))
    _make_case("9.6.%d" % _i, "1M binary message sent in chops of %d" % _c,
               _big_echo_body(OP_BINARY, repeat_to(_BINARY_9, _M), chop=_c))
for _i, _n in enumerate(_RTT_9_7, 1):
    _make_case("9.7.%d" % _i, "1000 text messages of %d bytes, each sent "
               "after the previous echo" % _n, _rtt_body(OP_TEXT, _n))
    _make_case("9.8.%d" % _i, "1000 binary messages of %d bytes, each "
               "sent after the previous echo" % _n, _rtt_body(OP_BINARY, _n))


# ==========================================================================
# 10 Misc

def test_case_10_1_1(peer):
    """Autobahn 10.1.1: 64K text auto-fragmented into 1300-byte frames:
    one unfragmented echo."""
    p = peer("10.1.1")
    _fragmented(p, OP_TEXT, b"*" * 65536, 1300)
    p.expect(text(b"*" * 65536))
    p.close_normally()


# ==========================================================================
# Beyond Autobahn: framing rules it does not test

def test_unmasked_client_frame(peer):
    """RFC 6455 5.1: a client frame without a mask -> 1002, decided at the
    second byte, for data and control frames alike."""
    p = peer("unmasked text")
    p.send(OP_TEXT, b"Hello, world!", mask=False)
    p.expect_failure(1002, timeout=FAIL_FAST)
    p = peer("unmasked ping")
    p.send(OP_PING, b"x", mask=False)
    p.expect_failure(1002, timeout=FAIL_FAST)
    p = peer("unmasked header only")
    p.send_raw(b"\x81\x05")          # no payload follows: decided already
    p.expect_failure(1002, timeout=FAIL_FAST)


@pytest.mark.parametrize("length,length_bytes", [
    (0, 2), (5, 2), (125, 2), (0, 8), (200, 8), (65535, 8)])
def test_non_minimal_length(peer, length, length_bytes):
    """RFC 6455 5.2: the minimal number of bytes must encode the length;
    anything else -> 1002 as soon as the length is read."""
    p = peer("%d in %d bytes" % (length, length_bytes))
    p.send(OP_BINARY, b"\x01" * length, length_bytes=length_bytes)
    p.expect_failure(1002, timeout=FAIL_FAST)


def test_non_minimal_length_header_only(peer):
    """The same decided before any mask or payload byte is sent."""
    p = peer("126 in 8 bytes, header only")
    p.send_raw(b"\x82\xff" + struct.pack("!Q", 126))
    p.expect_failure(1002, timeout=FAIL_FAST)


def test_64bit_length_msb(peer):
    """RFC 6455 5.2: the most significant bit of a 64-bit length must be
    0 -> 1002 at that byte, before the rest of the header."""
    p = peer("MSB set")
    p.send_raw(b"\x82\xff\x80")
    p.expect_failure(1002, timeout=FAIL_FAST)


def test_control_frame_over_125_header_only(peer):
    """RFC 6455 5.5: a control frame announcing 126 bytes -> 1002 at the
    length byte, without waiting for the payload."""
    for opcode in (OP_PING, OP_PONG, OP_CLOSE):
        p = peer("%s of 126 bytes" % OPNAMES[opcode])
        p.send_raw(bytes([0x80 | opcode, 0x80 | 126]))
        p.expect_failure(1002, timeout=FAIL_FAST)


def test_fragmented_close(peer):
    """RFC 6455 5.5: a Close without FIN -> 1002 (not a closing
    handshake)."""
    p = peer("fragmented close")
    p.send(OP_CLOSE, struct.pack("!H", 1000), fin=False)
    p.expect_failure(1002)


def test_rsv_on_control_frames(peer):
    """RFC 6455 5.2: RSV bits on control frames -> 1002 (no pong)."""
    for rsv in (1, 2, 4):
        p = peer("ping with RSV %d" % rsv)
        p.send(OP_PING, b"x", rsv=rsv)
        p.expect_failure(1002)
        p = peer("pong with RSV %d" % rsv)
        p.send(OP_PONG, b"x", rsv=rsv)
        p.expect_failure(1002)


def test_close_codes_beyond_autobahn(peer):
    """RFC 6455 7.4 and the IANA registry: 1012-1014 are valid and echoed;
    1015 (TLS failure, never on the wire), 1005 and 1006 are not."""
    for code in (1012, 1013, 1014):
        peer("close %d" % code).close_normally(code)
    for code in (1015, 1005, 1006, 5000, 2999, 1999):
        _invalid_code_body(code)(peer("close %d" % code))


def test_close_reason_multibyte(peer):
    """A Close whose reason is valid multi-byte UTF-8 up to the 125-byte
    limit is accepted; one cut inside a code point is 1007."""
    reason = "κόσμε".encode() * 11          # 121 bytes
    peer("reason ok").close_normally(1000, reason)
    p = peer("reason cut in a code point")
    p.send(OP_CLOSE, struct.pack("!H", 1000) + reason[:-1])
    p.expect_close_answer(1007)


def test_message_over_limit_in_header(peer):
    """docs/protocol.md: a message over chat_max_message_size (16 MiB on
    the echo endpoint) -> 1009 decided by the frame header: the payload is
    never sent."""
    p = peer("16 MiB + 1 announced")
    p.send_raw(b"\x82\xff" + struct.pack("!Q", ECHO_MAX_MESSAGE + 1))
    p.expect_failure(1009, timeout=FAIL_FAST)
    p = peer("2^62 announced")
    p.send_raw(b"\x81\xff" + struct.pack("!Q", 1 << 62) + os.urandom(4))
    p.expect_failure(1009, timeout=FAIL_FAST)


def test_fragmented_message_over_limit(peer):
    """The limit is on the whole message: a continuation whose header
    makes the total exceed 16 MiB -> 1009 at once."""
    p = peer("fragments over 16 MiB")
    p.send(OP_BINARY, b"0123456789", fin=False)
    p.send_raw(b"\x80\xff" + struct.pack("!Q", ECHO_MAX_MESSAGE - 9))
    p.expect_failure(1009, timeout=FAIL_FAST)


def test_message_exactly_at_limit_fragmented(peer):
    """16 MiB in two fragments is exactly the limit: echoed."""
    p = peer("16 MiB in 2 fragments")
    payload = os.urandom(ECHO_MAX_MESSAGE)
    p.send(OP_BINARY, payload[:1000], fin=False)
    p.send(OP_CONT, payload[1000:])
    p.expect(binary(payload), timeout=60)
    p.close_normally()


def _empty_fragments(opcode, count, last=None):
    """A message of count frames: an empty first frame, empty
    continuations; last: the final frame's payload (None: no final frame,
    count frames without FIN)."""
    key = b"\x11\x22\x33\x44"
    start = build_frame(opcode, b"", fin=False, mask_key=key)
    cont = build_frame(OP_CONT, b"", fin=False, mask_key=key)
    if last is None:
        return start + cont * (count - 1)
    return start + cont * (count - 2) + build_frame(OP_CONT, last,
                                                    mask_key=key)


def test_fragments_limit_exact(peer):
    """chat_max_fragments 100000: a message of exactly 100000 frames is
    echoed."""
    p = peer("100000 fragments")
    p.send_raw(_empty_fragments(OP_TEXT, ECHO_MAX_FRAGMENTS, b"ok"))
    p.expect(text(b"ok"), timeout=30)
    p.close_normally()


def test_fragments_limit_exceeded(peer):
    """The 100001st frame of a message -> 1008 (zero-length continuations,
    sent in one batch)."""
    p = peer("100001 fragments")
    p.send_raw(_empty_fragments(OP_TEXT, ECHO_MAX_FRAGMENTS + 1))
    p.expect_failure(1008, timeout=30)


def test_pipelined_messages(peer):
    """Many messages of every kind in one write: the echoes and pongs come
    back in order, each exactly (a parser correct for any split)."""
    p = peer("pipelined")
    events, data = [], []
    for i in range(200):
        n = (i * 7919) % 70000 if i % 10 == 0 else (i * 31) % 300
        if i % 3 == 0:
            payload = os.urandom(n)
            data.append(build_frame(OP_BINARY, payload))
            events.append(binary(payload))
        elif i % 3 == 1:
            payload = ("é%d€" % i).encode() * (n // 8 + 1)
            # in 3 fragments, a ping inside
            a, b = len(payload) // 3, 2 * len(payload) // 3
            data.append(build_frame(OP_TEXT, payload[:a], fin=False))
            data.append(build_frame(OP_PING, b"p%d" % i))
            data.append(build_frame(OP_CONT, payload[a:b], fin=False))
            data.append(build_frame(OP_CONT, payload[b:]))
            events.append(pong(b"p%d" % i))
            events.append(text(payload))
        else:
            ping = os.urandom(i % 126)
            data.append(build_frame(OP_PING, ping))
            events.append(pong(ping))
    blob = b"".join(data)
    sender = threading.Thread(target=p.send_raw, args=(blob,), daemon=True)
    sender.start()
    p.expect(*events, timeout=30)
    sender.join(10)
    p.close_normally()


def test_large_message_content_order(peer):
    """Autobahn's big payloads repeat one pattern; a random 5 MB binary
    and a varied 3 MB text, fragmented unevenly and chopped, must come
    back byte for byte."""
    p = peer("random binary, uneven fragments")
    payload = os.urandom(5 * _M + 17)
    cuts, i = [], 0
    while i < len(payload):
        size = 1 + (i * 2654435761) % 200000
        cuts.append(payload[i:i + size])
        i += size
    blob = b"".join(build_frame(OP_BINARY if k == 0 else OP_CONT, c,
                                fin=(k == len(cuts) - 1))
                    for k, c in enumerate(cuts))
    p.send_raw(blob, chop=4093, pause=0.0)
    p.expect(binary(payload), timeout=60)
    p.close_normally()

    p = peer("varied text, fragments split inside code points")
    payload = "".join("%d:κόσμε€𤭢" % k for k in range(150000)).encode()
    _fragmented(p, OP_TEXT, payload, 65537)
    p.expect(text(payload), timeout=60)
    p.close_normally()


def test_byte_at_a_time(peer):
    """Every frame of a fragmented message, with a ping between fragments,
    written one byte at a time: the pong, then the exact echo."""
    p = peer("byte at a time")
    parts = ["Hello-µ@", "ßöäüàá", "-UTF-8!! κόσμε 𤭢"]
    payload = "".join(parts).encode()
    blob = (build_frame(OP_TEXT, parts[0].encode(), fin=False)
            + build_frame(OP_CONT, parts[1].encode(), fin=False)
            + build_frame(OP_PING, b"between")
            + build_frame(OP_CONT, parts[2].encode())
            + build_frame(OP_BINARY, b"\x00\xff" * 70))    # 16-bit length
    p.send_raw(blob, chop=1, pause=0.001)
    p.expect(pong(b"between"), text(payload), binary(b"\x00\xff" * 70))
    p.close_normally()


def test_frames_behind_the_request(server):
    """Frames sent in the same write as the upgrade request (the client did
    not wait for the 101) are parsed after it, in order."""
    token = chatlib.make_token(server.key, "autobahn")
    key = base64.b64encode(os.urandom(16)).decode()
    req = ("GET %s?access_token=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
           % (ECHO, token, server.port, key)).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        sock.sendall(req + build_frame(OP_TEXT, b"early")
                     + build_frame(OP_PING, b"p")
                     + build_frame(OP_BINARY, b"\x00bin"))
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, "connection closed before the 101: %r" % buf
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101 "), head
        accept = base64.b64encode(hashlib.sha1(
            key.encode() + chatlib.WS_GUID).digest())
        assert b"\r\nSec-WebSocket-Accept: " + accept in head, head
        p = Peer.__new__(Peer)
        p.case, p.ws, p.sock = "frames behind the request", \
            RawWS(sock, rest), sock
        p.expect(text(b"early"), pong(b"p"), binary(b"\x00bin"))
        p.close_normally()
    finally:
        sock.close()


# --------------------------------------------------------------------------
# Beyond Autobahn: the chat endpoint's stricter limits

class ChatPeer(Peer):
    """A raw client of /chat/ws: its first frame must be `welcome`."""

    def __init__(self, server, case):
        super().__init__(server, case, path=CHAT, user="conformance")
        fin, op, payload = self.frame(5, "welcome")
        if op != OP_TEXT or b'"welcome"' not in payload:
            self.fail("first frame is not welcome: %s" % _short(payload))


def test_chat_binary_message(server):
    """/chat/ws: a binary message -> 1003, decided by its first byte."""
    with ChatPeer(server, "chat binary") as p:
        p.send_raw(b"\x82")
        p.expect_failure(1003, timeout=FAIL_FAST)
    with ChatPeer(server, "chat binary, fragmented") as p:
        p.send(OP_BINARY, b'{"type":', fin=False)
        p.expect_failure(1003, timeout=FAIL_FAST)


def test_chat_message_over_64k(server):
    """/chat/ws: a 65 KiB text (default limit 64k) -> 1009 from the header
    alone; in fragments too."""
    with ChatPeer(server, "chat 65 KiB announced") as p:
        p.send_raw(b"\x81\xff" + struct.pack("!Q", 65 * 1024))
        p.expect_failure(1009, timeout=FAIL_FAST)
    with ChatPeer(server, "chat 65 KiB sent") as p:
        p.send(OP_TEXT, b" " * (65 * 1024))
        p.expect_failure(1009, timeout=FAIL_FAST)
    with ChatPeer(server, "chat 64 KiB + 1 in fragments") as p:
        p.send(OP_TEXT, b" " * 40000, fin=False)
        p.send(OP_CONT, b" " * (CHAT_MAX_MESSAGE - 40000 + 1))
        p.expect_failure(1009, timeout=FAIL_FAST)


def test_chat_message_at_64k(server):
    """/chat/ws: a request of exactly 64 KiB is read and answered."""
    with ChatPeer(server, "chat 64 KiB") as p:
        head = b'{"type":"ping","id":"big","pad":"'
        body = head + b"x" * (CHAT_MAX_MESSAGE - len(head) - 2) + b'"}'
        assert len(body) == CHAT_MAX_MESSAGE
        p.send(OP_TEXT, body)
        fin, op, payload = p.frame(5, "the reply")
        assert op == OP_TEXT and b'"id":"big"' in payload \
            and b'"type":"ok"' in payload, payload
        p.close_normally()


def test_chat_fragments_limit(server):
    """/chat/ws: chat_max_fragments defaults to 128: a request in 128
    frames is answered, the 129th frame of a message -> 1008."""
    with ChatPeer(server, "chat 128 fragments") as p:
        body = b'{"type":"ping","id":"f128"}'
        frames = [body[i:i + 1] for i in range(len(body))]
        frames += [b""] * (CHAT_MAX_FRAGMENTS - len(frames))
        p.send_raw(b"".join(
            build_frame(OP_TEXT if i == 0 else OP_CONT, f,
                        fin=(i == CHAT_MAX_FRAGMENTS - 1))
            for i, f in enumerate(frames)))
        fin, op, payload = p.frame(5, "the reply")
        assert op == OP_TEXT and b'"id":"f128"' in payload \
            and b'"type":"ok"' in payload, payload
        p.close_normally()
    with ChatPeer(server, "chat 129 fragments") as p:
        p.send_raw(_empty_fragments(OP_TEXT, CHAT_MAX_FRAGMENTS + 1))
        p.expect_failure(1008, timeout=FAIL_FAST)


# --------------------------------------------------------------------------
# Beyond Autobahn: flow control

def _rss(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


RSS_LIMIT = 64 * _M


def test_backpressure_bounded_memory(nginx):
    """A client that sends 200 MB of echo requests without reading the
    replies: the server stops reading it (chat_send_buffer), so the worker
    stays under 64 MB and the client's writes stall; once the client
    reads, every echo arrives intact and in order.  A fresh nginx, so that
    the worker's memory is not what earlier tests left."""
    n = nginx(LOCATIONS)
    pids = n.worker_pids()
    if len(pids) != 1 or _rss(pids[0]) is None:
        pytest.skip("the worker's RSS cannot be read")
    worker = pids[0]
    base = _rss(worker)
    with open("/proc/%d/maps" % worker) as f:
        sanitized = "libasan" in f.read()

    p = Peer(n, "backpressure")
    count, size = 200, _M
    payloads = [bytes([i]) * 16 + os.urandom(16) + bytes([i]) * (size - 32)
                for i in range(count)]
    frames = [build_frame(OP_BINARY, x) for x in payloads]
    sent = [0]
    errors = []
    out = p.sock.dup()
    out.settimeout(120)

    def pump():
        try:
            for f in frames:
                out.sendall(f)
                sent[0] += 1
        except OSError as e:
            errors.append(e)
    try:
        t = threading.Thread(target=pump, daemon=True)
        t.start()

        peak = base
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            peak = max(peak, _rss(worker) or 0)
            time.sleep(0.05)
        stalled = sent[0]
        assert stalled < count // 2, \
            "%d of %d MB were taken without any reply being read: no " \
            "backpressure" % (stalled, count)
        assert peak < RSS_LIMIT, \
            "worker RSS %.1f MB (%.1f MB before) while the client does " \
            "not read" % (peak / _M, base / _M)

        for i, x in enumerate(payloads):
            fin, op, got = p.frame(30, "echo %d" % i)
            if (fin, op) != (True, OP_BINARY) or got != x:
                p.fail("echo %d: %s" % (i, _diff(x, got)))
            if i % 20 == 0:
                peak = max(peak, _rss(worker) or 0)
        t.join(30)
        assert not errors, errors
        assert sent[0] == count
        print("backpressure: %d of %d MB taken while not reading; worker "
              "RSS %.1f MB before, %.1f MB at most" % (stalled, count,
                                                       base / _M, peak / _M))
        if not sanitized:
            # ASan's quarantine keeps freed buffers: not a leak
            assert peak < RSS_LIMIT, "worker RSS %.1f MB" % (peak / _M)
        p.close_normally()
    finally:
        out.close()
        p.ws.close()
