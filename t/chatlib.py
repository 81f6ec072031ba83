"""Client-side helpers for the tests.

- make_token(): JWTs minted in pure Python (HS*, RS*, ES*), independent of
  the module's C verifier.
- RawWS / http_upgrade(): a WebSocket client on a bare socket that sends
  whatever bytes a test wants and checks every server frame strictly.
- ws_connect(): a well-behaved client (Python websockets) with a
  synchronous interface, for tests about chat behaviour.
- http(): a one-shot HTTP request for the REST routes; Conn: a keep-alive
  connection on a raw socket that checks every answer strictly.
- TIME, M(), C(), ...: the protocol's objects, to compare payloads exactly.
- ChatEnv and send(), direct(), group(), settle(), cmid(): the harness of
  the chat tests (nginx with chat_postgres, its clients, the common
  requests); conftest.py's chat_env fixture makes one per test.
"""

import asyncio
import base64
import hashlib
import hmac
import http.client as httpclient
import itertools
import json
import os
import re
import socket
import struct
import threading
import time
import urllib.parse

import pytest


# --------------------------------------------------------------------------
# JWT

def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text):
    if isinstance(text, str):
        text = text.encode()
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))


def _json_compact(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


_HMAC = {"HS256": hashlib.sha256, "HS384": hashlib.sha384,
         "HS512": hashlib.sha512}


def sign(alg, key, signing_input):
    """The raw JWS signature of signing_input (bytes) with alg.

    key: bytes for HS*; for RS*/ES* a PEM private key (bytes or str) or a
    cryptography private key object.  ES* signatures are R || S, as JWS
    wants, not DER.
    """
    if alg in _HMAC:
        return hmac.new(key, signing_input, _HMAC[alg]).digest()
    if alg == "none":
        return b""

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

    if isinstance(key, str):
        key = key.encode()
    if isinstance(key, bytes):
        key = serialization.load_pem_private_key(key, password=None)
    digest = {"256": hashes.SHA256, "384": hashes.SHA384,
              "512": hashes.SHA512}[alg[2:]]()

    if alg.startswith("RS"):
        return key.sign(signing_input, padding.PKCS1v15(), digest)
    if alg.startswith("PS"):
        return key.sign(signing_input,
                        padding.PSS(mgf=padding.MGF1(digest),
                                    salt_length=digest.digest_size),
                        digest)
    if alg.startswith("ES"):
        der = key.sign(signing_input, ec.ECDSA(digest))
        r, s = utils.decode_dss_signature(der)
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    raise ValueError("unknown alg %r" % alg)


def make_token(key, sub, name=None, exp_in=3600, alg="HS256", header=None,
               **claims):
    """A signed JWT for user sub.

    exp_in: seconds from now to exp (negative: already expired; None: no
    exp claim).  iat is now.  Extra claims come as keywords; a claim whose
    value is None is left out (so iat=None drops iat).  header: extra or
    replaced JOSE header fields, e.g. {"kid": "k1"} or {"alg": "none"}.
    """
    now = int(time.time())
    payload = {"sub": sub, "name": name, "iat": now,
               "exp": None if exp_in is None else now + exp_in}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}

    head = {"alg": alg, "typ": "JWT"}
    head.update(header or {})

    signing_input = (b64url(_json_compact(head)) + "."
                     + b64url(_json_compact(payload))).encode()
    return (signing_input + b"." + b64url(sign(alg, key, signing_input))
            .encode()).decode()


def token_parts(token):
    """(header dict, payload dict, signature bytes) of a JWT, unverified."""
    h, p, s = token.split(".")
    return (json.loads(b64url_decode(h)), json.loads(b64url_decode(p)),
            b64url_decode(s))


def tamper(token):
    """The same token with one bit of its signature flipped."""
    h, p, s = token.split(".")
    sig = bytearray(b64url_decode(s))
    sig[len(sig) // 2] ^= 0x01
    return "%s.%s.%s" % (h, p, b64url(bytes(sig)))


# --------------------------------------------------------------------------
# WebSocket on a raw socket

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
_KNOWN_OPCODES = {OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG}

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class ProtocolViolation(AssertionError):
    """The server broke RFC 6455."""


class ConnectionClosed(Exception):
    """The server closed TCP, or sent a close frame where data was wanted."""

    def __init__(self, code=None, reason="", msg=None):
        self.code = code
        self.reason = reason
        super().__init__(msg or "connection closed: code=%r reason=%r"
                         % (code, reason))


class UpgradeError(Exception):
    """The server answered the upgrade with something else than 101."""

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body
        super().__init__("upgrade answered %d: %r" % (status, body[:200]))


class UpgradeResponse(tuple):
    """(status, headers, body); .sock is the open socket after a 101."""

    def __new__(cls, status, headers, body, sock=None, rest=b""):
        self = super().__new__(cls, (status, headers, body))
        self.sock = sock
        self.rest = rest
        return self

    status = property(lambda self: self[0])
    headers = property(lambda self: self[1])
    body = property(lambda self: self[2])

    def json(self):
        return json.loads(self.body)


def _valid_close_code(code):
    # RFC 6455 7.4: codes an endpoint may send
    return (code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                     1012, 1013, 1014)
            or 3000 <= code <= 4999)


def build_frame(opcode, payload=b"", fin=True, rsv=0, mask=True,
                mask_key=None, length_override=None, length_bytes=None):
    """One frame's bytes.

    rsv: the three RSV bits as a number 0..7.  length_override: the length
    to announce instead of len(payload).  length_bytes: 0, 2 or 8 to force
    an encoding of the length (8 for a 2-byte payload is non-minimal, which
    RFC 6455 forbids).
    """
    if isinstance(payload, str):
        payload = payload.encode()
    length = len(payload) if length_override is None else length_override
    if length_bytes is None:
        length_bytes = 0 if length < 126 else 2 if length < 65536 else 8

    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    m = 0x80 if mask else 0
    if length_bytes == 0:
        head = struct.pack("!BB", b0, m | length)
    elif length_bytes == 2:
        head = struct.pack("!BBH", b0, m | 126, length)
    else:
        head = struct.pack("!BBQ", b0, m | 127, length)

    if not mask:
        return head + payload
    if mask_key is None:
        mask_key = os.urandom(4)
    return head + mask_key + _mask(mask_key, payload)


def _mask(key, data):
    if not data:
        return b""
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big")
            ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def _recv_http_head(sock, deadline):
    buf = b""
    while b"\r\n\r\n" not in buf:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionClosed(msg="connection closed during the HTTP "
                                   "response head: %r" % buf)
        buf += chunk
        if len(buf) > 65536:
            raise ProtocolViolation("HTTP response head over 64k")
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ProtocolViolation("bad status line %r" % lines[0])
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        headers[name] = (headers[name] + ", " + value
                         if name in headers else value)
    return status, headers, rest


def _recv_http_body(sock, headers, rest, deadline):
    def more():
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        return sock.recv(65536)

    if "chunked" in headers.get("transfer-encoding", "").lower():
        body, buf = b"", rest
        while True:
            while b"\r\n" not in buf:
                chunk = more()
                if not chunk:
                    return body
                buf += chunk
            size_line, buf = buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                chunk = more()
                if not chunk:
                    return body + buf[:size]
                buf += chunk
            if size == 0:
                return body
            body, buf = body + buf[:size], buf[size + 2:]

    if "content-length" in headers:
        n = int(headers["content-length"])
        body = rest
        while len(body) < n:
            chunk = more()
            if not chunk:
                break
            body += chunk
        return body[:n]

    body = rest
    while True:
        try:
            chunk = more()
        except (socket.timeout, ConnectionResetError):
            return body
        if not chunk:
            return body
        body += chunk


def http_upgrade(port, path="/chat/ws", token=None, headers=None,
                 subprotocols=None, origin=None, token_in="header",
                 host="127.0.0.1", timeout=5, sock=None):
    """Sends a WebSocket upgrade request and reads the answer.

    Returns UpgradeResponse, which unpacks as (status, headers, body):
    headers is a dict with lowercase names.  After a 101 the socket stays
    open in .sock (bytes already read past the head in .rest) and the
    Sec-WebSocket-Accept value has been checked; otherwise the socket is
    closed and body holds the whole answer.

    headers: a dict of extra or replaced request headers; a value of None
    removes that header (e.g. {"Sec-WebSocket-Key": None}).  token_in:
    "header" (Authorization: Bearer) or "query" (access_token argument).
    """
    port = _port(port)
    if sock is None:
        sock = socket.create_connection((host, port), timeout=timeout)
    deadline = time.monotonic() + timeout
    key = base64.b64encode(os.urandom(16)).decode()

    if token is not None and token_in == "query":
        path += ("&" if "?" in path else "?") + "access_token=" + token

    req = {"Host": "%s:%d" % (host, port), "Upgrade": "websocket",
           "Connection": "Upgrade", "Sec-WebSocket-Key": key,
           "Sec-WebSocket-Version": "13"}
    if origin is not None:
        req["Origin"] = origin
    if subprotocols:
        req["Sec-WebSocket-Protocol"] = ", ".join(subprotocols)
    if token is not None and token_in == "header":
        req["Authorization"] = "Bearer " + token
    lower = {k.lower(): k for k in req}
    for name, value in (headers or {}).items():
        req.pop(lower.get(name.lower(), name), None)
        if value is not None:
            req[name] = value

    text = "GET %s HTTP/1.1\r\n" % path
    text += "".join("%s: %s\r\n" % kv for kv in req.items()) + "\r\n"
    try:
        sock.sendall(text.encode("latin-1"))
        status, rheaders, rest = _recv_http_head(sock, deadline)
        if status != 101:
            body = _recv_http_body(sock, rheaders, rest, deadline)
            sock.close()
            return UpgradeResponse(status, rheaders, body)
    except BaseException:
        sock.close()
        raise

    sent_key = req.get(lower.get("sec-websocket-key", ""))
    if sent_key is not None:
        accept = base64.b64encode(
            hashlib.sha1(sent_key.encode() + WS_GUID).digest()).decode()
        if rheaders.get("sec-websocket-accept") != accept:
            sock.close()
            raise ProtocolViolation("Sec-WebSocket-Accept %r, expected %r"
                                    % (rheaders.get("sec-websocket-accept"),
                                       accept))
    if rheaders.get("upgrade", "").lower() != "websocket" or \
            "upgrade" not in rheaders.get("connection", "").lower():
        sock.close()
        raise ProtocolViolation("101 without Upgrade/Connection: %r"
                                % rheaders)
    offered = set(subprotocols or ())
    chosen = rheaders.get("sec-websocket-protocol")
    if chosen is not None and chosen not in offered:
        sock.close()
        raise ProtocolViolation("server chose subprotocol %r, offered %r"
                                % (chosen, offered))
    return UpgradeResponse(status, rheaders, b"", sock=sock, rest=rest)


class RawWS:
    """A WebSocket client that checks the server strictly.

    Every frame the server sends is checked against RFC 6455: unmasked,
    RSV bits clear, a known opcode, control frames final and <= 125 bytes,
    minimal length encoding, a valid close payload; messages assembled by
    recv_message() are checked for continuation order and UTF-8.  A
    violation raises ProtocolViolation (an AssertionError).
    """

    def __init__(self, sock, rest=b"", headers=None):
        self.sock = sock
        self.buf = bytearray(rest)
        self.headers = headers or {}
        self.close_sent = False
        self.close_received = None      # (code, reason) once received

    # --- opening and closing

    @classmethod
    def connect(cls, port, path="/chat/ws", token=None, headers=None,
                subprotocols=None, origin=None, token_in="header",
                timeout=5):
        """Upgrades or raises UpgradeError (with status, headers, body)."""
        r = http_upgrade(port, path, token=token, headers=headers,
                         subprotocols=subprotocols, origin=origin,
                         token_in=token_in, timeout=timeout)
        if r.status != 101:
            raise UpgradeError(*r)
        return cls(r.sock, r.rest, r.headers)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- sending

    def send_raw(self, data, chunk=None, delay=0.0):
        """Sends bytes as they are, optionally chunk bytes at a time with
        delay seconds between the pieces (to split frames across reads)."""
        if not chunk:
            self.sock.sendall(data)
            return
        for i in range(0, len(data), chunk):
            if i and delay:
                time.sleep(delay)
            self.sock.sendall(data[i:i + chunk])

    def send_frame(self, opcode, payload=b"", fin=True, rsv=0, mask=True,
                   mask_key=None, length_override=None, length_bytes=None,
                   chunk=None, delay=0.0):
        self.send_raw(build_frame(opcode, payload, fin, rsv, mask, mask_key,
                                  length_override, length_bytes),
                      chunk, delay)

    def send_text(self, text, **kw):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str)
                        else text, **kw)

    def send_json(self, obj, **kw):
        self.send_text(json.dumps(obj), **kw)

    def send_close(self, code=1000, reason=""):
        """A close frame; code None sends an empty payload."""
        payload = b"" if code is None else \
            struct.pack("!H", code) + reason.encode()
        self.send_frame(OP_CLOSE, payload)
        self.close_sent = True

    def ping(self, payload=b""):
        self.send_frame(OP_PING, payload)

    # --- receiving

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete frame from the server")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionClosed(
                    *(self.close_received or (None, "")),
                    msg="server closed TCP" + (
                        "" if self.close_received else
                        " without a close frame")
                    + (" in the middle of a frame" if self.buf else ""))
            self.buf += chunk

    def _take(self, n):
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def recv_frame(self, timeout=5):
        """The next frame as (fin, opcode, payload bytes)."""
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        fin, rsv, opcode = bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF
        masked, length = bool(b1 & 0x80), b1 & 0x7F

        if masked:
            raise ProtocolViolation("masked frame from the server")
        if rsv:
            raise ProtocolViolation("RSV bits %d set, no extension agreed"
                                    % rsv)
        if opcode not in _KNOWN_OPCODES:
            raise ProtocolViolation("reserved opcode 0x%x" % opcode)

        hlen = 2
        if length == 126:
            self._fill(4, deadline)
            length = struct.unpack("!H", self.buf[2:4])[0]
            hlen = 4
            if length < 126:
                raise ProtocolViolation("non-minimal 16-bit length %d"
                                        % length)
        elif length == 127:
            self._fill(10, deadline)
            length = struct.unpack("!Q", self.buf[2:10])[0]
            hlen = 10
            if length >> 63:
                raise ProtocolViolation("64-bit length with the MSB set")
            if length < 65536:
                raise ProtocolViolation("non-minimal 64-bit length %d"
                                        % length)

        if opcode & 0x8:
            if not fin:
                raise ProtocolViolation("fragmented control frame 0x%x"
                                        % opcode)
            if length > 125:
                raise ProtocolViolation("control frame of %d bytes" % length)

        self._fill(hlen + length, deadline)
        self._take(hlen)
        payload = self._take(length)

        if opcode == OP_CLOSE:
            self.close_received = self._parse_close(payload)
        return fin, opcode, payload

    @staticmethod
    def _parse_close(payload):
        if not payload:
            return None, ""
        if len(payload) == 1:
            raise ProtocolViolation("close frame with a 1-byte payload")
        code = struct.unpack("!H", payload[:2])[0]
        if not _valid_close_code(code):
            raise ProtocolViolation("invalid close code %d" % code)
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation("close reason is not UTF-8: %r"
                                    % payload[2:])
        return code, reason

    def recv_message(self, timeout=5, auto_pong=True):
        """The next data message as (opcode, payload): fragments are
        joined, pings answered (auto_pong), pongs skipped.  A close frame
        raises ConnectionClosed(code, reason)."""
        deadline = time.monotonic() + timeout
        opcode, parts = None, []
        while True:
            fin, op, payload = self.recv_frame(
                max(0.0, deadline - time.monotonic()))
            if op == OP_PING:
                if auto_pong and not self.close_sent:
                    self.send_frame(OP_PONG, payload)
                continue
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                raise ConnectionClosed(*self.close_received)
            if op == OP_CONT:
                if opcode is None:
                    raise ProtocolViolation("continuation without a start")
            else:
                if opcode is not None:
                    raise ProtocolViolation("new data frame inside a "
                                            "fragmented message")
                opcode = op
            parts.append(payload)
            if fin:
                break
        data = b"".join(parts)
        if opcode == OP_TEXT:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolViolation("text message is not UTF-8")
        return opcode, data

    def recv_text(self, timeout=5):
        opcode, data = self.recv_message(timeout)
        if opcode != OP_TEXT:
            raise AssertionError("expected a text message, got opcode %d"
                                 % opcode)
        return data.decode()

    def recv_json(self, timeout=5):
        return json.loads(self.recv_text(timeout))

    def expect_close(self, timeout=5, skip_data=True):
        """Waits for the server's close frame; answers it, then checks that
        the server closes TCP.  Data frames before it are skipped (unless
        skip_data is False: then they fail).  Returns (code, reason), code
        None for an empty close payload."""
        deadline = time.monotonic() + timeout
        while self.close_received is None:
            _, op, payload = self.recv_frame(
                max(0.0, deadline - time.monotonic()))
            if op in (OP_PING, OP_PONG):
                continue
            if op != OP_CLOSE and not skip_data:
                raise AssertionError("expected a close frame, got opcode "
                                     "%d: %r" % (op, payload[:200]))
        code, reason = self.close_received

        if not self.close_sent:
            # The closing handshake: echo the code.  The server may have
            # closed TCP already; that is fine.
            try:
                self.send_close(code)
            except OSError:
                pass
        self.expect_eof(max(0.0, deadline - time.monotonic()) + 1)
        return code, reason

    def expect_eof(self, timeout=5):
        """Checks that the server closes TCP within timeout, sending
        nothing more than frames (which are read and dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("server did not close TCP within %ss"
                                     % timeout)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return
            except socket.timeout:
                continue
            if not chunk:
                return


# --------------------------------------------------------------------------
# A well-behaved client: Python websockets.  Debian bookworm ships
# websockets 10.4, which has only the asyncio API, so a private event loop
# thread runs the connections and WSClient offers a synchronous interface.

_loop = None
_loop_lock = threading.Lock()


def _event_loop():
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, daemon=True,
                             name="chatlib-asyncio").start()
        return _loop


def run_async(coro, timeout=30):
    """Runs a coroutine on the helpers' event loop and waits for it."""
    fut = asyncio.run_coroutine_threadsafe(coro, _event_loop())
    try:
        return fut.result(timeout)
    except TimeoutError:
        fut.cancel()
        raise


def _port(target):
    return target if isinstance(target, int) else target.port


async def ws_connect_async(target, token=None, path="/chat/ws",
                           token_in="header", headers=None,
                           subprotocols=None, origin=None, welcome=True,
                           timeout=5, **kw):
    """A websockets client protocol, connected; with welcome=True the
    first frame must be `welcome`, and it is stored in .welcome.

    target: the nginx fixture instance or a port.  Extra keywords go to
    websockets.connect (max_size, ping_interval, ...).
    """
    import websockets

    url = "ws://127.0.0.1:%d%s" % (_port(target), path)
    extra = dict(headers or {})
    if token is not None:
        if token_in == "query":
            url += ("&" if "?" in path else "?") + "access_token=" + token
        else:
            extra["Authorization"] = "Bearer " + token
    kw.setdefault("compression", None)
    kw.setdefault("ping_interval", None)
    kw.setdefault("max_size", 64 * 1024 * 1024)
    ws = await websockets.connect(url, extra_headers=extra,
                                  subprotocols=subprotocols, origin=origin,
                                  open_timeout=timeout, **kw)
    ws.welcome = None
    if welcome:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame.get("type") != "welcome":
            await ws.close()
            raise AssertionError("first frame is not welcome: %r" % frame)
        ws.welcome = frame
    return ws


class WSClient:
    """A synchronous chat client over websockets.

    recv_json() returns frames in order.  request() sends a request with a
    fresh id and returns its reply; events that arrive meanwhile are kept
    for next_event().
    """

    _ids = itertools.count(1)

    def __init__(self, ws):
        self.ws = ws
        self.welcome = ws.welcome
        self.events = []

    @property
    def subprotocol(self):
        return self.ws.subprotocol

    @property
    def response_headers(self):
        return self.ws.response_headers

    @property
    def close_code(self):
        return self.ws.close_code

    @property
    def close_reason(self):
        return self.ws.close_reason

    def send(self, data):
        run_async(self.ws.send(data))

    def send_json(self, obj):
        self.send(json.dumps(obj))

    def recv(self, timeout=5):
        """The next frame (str or bytes); raises TimeoutError or
        websockets.ConnectionClosed."""
        return run_async(asyncio.wait_for(self.ws.recv(), timeout),
                         timeout + 5)

    def recv_json(self, timeout=5):
        if self.events:
            return self.events.pop(0)
        return json.loads(self.recv(timeout))

    def request(self, type_, timeout=5, **fields):
        """Sends {"type": type_, "id": <new>, **fields}; returns the reply
        (an `ok` or `error` object)."""
        rid = "r%d" % next(self._ids)
        self.send_json(dict(fields, type=type_, id=rid))
        deadline = time.monotonic() + timeout
        while True:
            frame = json.loads(self.recv(max(0.01,
                                             deadline - time.monotonic())))
            if frame.get("id") == rid and frame.get("type") in ("ok",
                                                               "error"):
                return frame
            self.events.append(frame)

    def ok(self, type_, timeout=5, **fields):
        """request() that must succeed; returns its data."""
        reply = self.request(type_, timeout, **fields)
        if reply.get("type") != "ok":
            raise AssertionError("%s failed: %r" % (type_, reply))
        return reply.get("data")

    def next_event(self, type_=None, timeout=5):
        """The next event (of type_, if given); others are kept."""
        deadline = time.monotonic() + timeout
        for i, ev in enumerate(self.events):
            if type_ is None or ev.get("type") == type_:
                return self.events.pop(i)
        while True:
            frame = json.loads(self.recv(max(0.01,
                                             deadline - time.monotonic())))
            if type_ is None or frame.get("type") == type_:
                return frame
            self.events.append(frame)

    def ping(self, timeout=5):
        """A WebSocket ping; waits for the pong."""
        async def go():
            waiter = await self.ws.ping()
            await asyncio.wait_for(waiter, timeout)
        run_async(go(), timeout + 5)

    def wait_closed(self, timeout=5):
        """Waits until the server closes; returns (code, reason)."""
        run_async(asyncio.wait_for(self.ws.wait_closed(), timeout),
                  timeout + 5)
        return self.ws.close_code, self.ws.close_reason

    def close(self, code=1000, reason=""):
        run_async(self.ws.close(code, reason))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.close()
        except Exception:
            pass


def ws_connect(target, token=None, path="/chat/ws", **kw):
    """A connected WSClient whose `welcome` frame has been read (see
    ws_connect_async for the keywords)."""
    timeout = kw.get("timeout", 5)
    return WSClient(run_async(ws_connect_async(target, token, path, **kw),
                              timeout + 5))


# --------------------------------------------------------------------------
# HTTP

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers          # dict, lowercase names
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:200])


def http(target, method, path, token=None, json_body=None, body=None,
         headers=None, timeout=5):
    """One HTTP/1.1 request on a fresh connection."""
    hdrs = dict(headers or {})
    if token is not None:
        hdrs["Authorization"] = "Bearer " + token
    if json_body is not None:
        body = json.dumps(json_body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    conn = httpclient.HTTPConnection("127.0.0.1", _port(target),
                                      timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()},
                        data)
    finally:
        conn.close()


# --------------------------------------------------------------------------
# HTTP/1.1 on a raw socket: any method, header (repeated too) and body, and
# several requests on one keep-alive connection (the REST tests' client)

TIMEOUT = 30            # seconds for any one answer; generous for ASan

API_PREFIX = "/api/chat/"

# the HTTP status of each error code (docs/protocol.md, SPEC.md)
STATUS = {"bad_request": 400, "unauthorized": 401, "forbidden": 403,
          "not_found": 404, "conflict": 409, "too_large": 413,
          "rate_limited": 429, "unavailable": 503, "internal": 500}


def error(code, message):
    return {"error": {"code": code, "message": message}}


_DEFAULT = object()


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers          # [(lowercase name, value)]
        self.body = body

    def all(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def header(self, name):
        """The value of a header sent once, None if absent; a header sent
        twice fails the test."""
        values = self.all(name)
        assert len(values) <= 1, "%s sent %d times: %r" % (name, len(values),
                                                           self)
        return values[0] if values else None

    @property
    def keep_alive(self):
        return (self.header("connection") or "").lower() == "keep-alive"

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Resp %d %r %r>" % (self.status, self.headers,
                                     self.body[:300])


class Conn:
    """One keep-alive connection to the chat_api location.  Requests carry
    the connection's token unless told otherwise (token=None: none)."""

    def __init__(self, port, token=None, user=None, timeout=TIMEOUT):
        self.port = port
        self.timeout = timeout
        self.token = token
        self.user = user
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def build(self, method, path, body=None, headers=(), token=_DEFAULT,
              chunks=None):
        """The bytes of a request.  path: after /api/chat/ unless it starts
        with /.  body: bytes, sent with Content-Length; chunks: a list of
        bytes sent chunked instead.  headers: (name, value) pairs, repeats
        allowed, after Host and Authorization."""
        if not path.startswith("/"):
            path = API_PREFIX + path
        hdrs = [("Host", "127.0.0.1:%d" % self.port)]
        tok = self.token if token is _DEFAULT else token
        if tok is not None:
            hdrs.append(("Authorization", "Bearer " + tok))
        hdrs += list(headers)
        payload = b""
        if chunks is not None:
            hdrs.append(("Transfer-Encoding", "chunked"))
            payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c)
                               for c in chunks if c) + b"0\r\n\r\n"
        elif body is not None:
            if not any(k.lower() == "content-length" for k, _ in hdrs):
                hdrs.append(("Content-Length", str(len(body))))
            payload = body
        head = "%s %s HTTP/1.1\r\n" % (method, path)
        head += "".join("%s: %s\r\n" % h for h in hdrs) + "\r\n"
        return head.encode("latin-1") + payload

    def send(self, data):
        self.sock.sendall(data)

    def _more(self, deadline, what):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no %s within %ss; got %r"
                                 % (what, self.timeout, self.buf))
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError("no %s within %ss; got %r"
                                 % (what, self.timeout, self.buf))
        if not chunk:
            raise AssertionError("the server closed the connection before "
                                 "%s; got %r" % (what, self.buf))
        self.buf += chunk

    def read(self, head=False):
        """The next response; head: it answers a HEAD (no body)."""
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in self.buf:
            self._more(deadline, "response head")
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.1 (\d{3}) ", lines[0])
        assert m, "bad status line %r" % lines[0]
        status = int(m.group(1))
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        r = Resp(status, headers, b"")
        assert r.header("transfer-encoding") is None, r
        if head or status in (204, 304):
            n = 0
        else:
            assert r.header("content-length") is not None, r
            n = int(r.header("content-length"))
        while len(self.buf) < n:
            self._more(deadline, "response body")
        r.body, self.buf = self.buf[:n], self.buf[n:]
        return r

    def request(self, method, path, obj=_DEFAULT, body=None, headers=(),
                token=_DEFAULT, chunks=None):
        """Sends one request and reads its response.  obj: a value sent as
        JSON (None is JSON null)."""
        headers = list(headers)
        if obj is not _DEFAULT:
            body = json.dumps(obj, ensure_ascii=False,
                              separators=(",", ":")).encode()
            headers.append(("Content-Type", "application/json"))
        self.send(self.build(method, path, body, headers, token, chunks))
        return self.read(head=(method == "HEAD"))

    def ok(self, method, path, status=200, **kw):
        """A request that must succeed with status; its JSON body."""
        r = self.request(method, path, **kw)
        assert r.status == status, r
        assert r.header("content-type") == "application/json", r
        assert r.keep_alive, r
        return r.json()

    def error(self, method, path, code, message, status=None, **kw):
        """A request that must fail with exactly this error, keeping the
        connection; the response."""
        r = self.request(method, path, **kw)
        assert_error(r, code, message, status)
        assert r.keep_alive, r
        return r

    def alive(self):
        """The connection still answers a good request."""
        r = self.request("GET", "users/me")
        assert (r.status, r.json()) == \
            (200, {"user": {"id": self.user, "name": self.user}}), r
        assert r.keep_alive, r


def assert_error(r, code, message, status=None):
    """r is the JSON error {code, message} with the status its code calls
    for (or status)."""
    assert r.status == (status or STATUS[code]), r
    assert r.header("content-type") == "application/json", r
    assert r.json() == error(code, message), r
    assert r.header("content-length") == str(len(r.body)), r



# --------------------------------------------------------------------------
# payload matchers: the protocol's objects, with any time and id

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class _Time:
    """Equal to any RFC 3339 UTC time with milliseconds."""

    def __eq__(self, other):
        return isinstance(other, str) and bool(TIME_RE.match(other))

    def __repr__(self):
        return "<TIME>"


TIME = _Time()


class _Int:
    """Equal to any positive JSON integer (not a bool)."""

    def __eq__(self, other):
        return type(other) is int and other >= 1

    def __repr__(self):
        return "<INT>"


INT = _Int()


def shared(conv):
    """A Conversation as an event to all members carries it: none of one
    member's own fields, no last_message (docs/protocol.md, events)."""
    return dict({k: v for k, v in conv.items()
                 if k not in ("unread_count", "muted", "archived")},
                last_message=None)


def M(id, cid, seq, sender, body, cmid, updated_seq=None, attachments=None,
      reply_to=None, edited=False, deleted=False):
    """The protocol's Message object."""
    return {"id": id, "conversation_id": cid, "seq": seq,
            "sender_id": sender, "body": None if deleted else body,
            "client_msg_id": cmid,
            "attachments": [] if deleted else (attachments or []),
            "reply_to": reply_to, "created_at": TIME,
            "edited_at": TIME if edited else None, "deleted": deleted,
            "updated_seq": updated_seq or seq}


def C(id, kind, members, title=None, ref=None, metadata=None,
      last_message=None, last_seq=0, unread=0, muted=False, archived=False):
    """The protocol's Conversation object; members: (user, role[, read,
    delivered])."""
    ms = []
    for m in members:
        user, role, read, delivered = (tuple(m) + (0, 0))[:4]
        ms.append({"user_id": user, "role": role, "last_read_seq": read,
                   "last_delivered_seq": delivered})
    return {"id": id, "kind": kind, "title": title, "ref": ref,
            "metadata": {} if metadata is None else metadata,
            "created_at": TIME, "members": ms, "last_message": last_message,
            "last_seq": last_seq, "unread_count": unread, "muted": muted,
            "archived": archived, "members_count": len(ms)}


def created(conv):
    return {"type": "conversation.created", "conversation": conv}


def ev(kind, message):
    return {"type": "message." + kind, "message": message}


# --------------------------------------------------------------------------
# The harness of the chat tests: nginx with the module and chat_postgres,
# the clients of one test, and the requests most tests make.  One class
# for every file: what differs between files (locations, workers, extra
# directives, timeouts) is a parameter, given through conftest.py's
# chat_env fixture.

WS_LOCATION = "location = /chat/ws { chat_websocket; %s }"

API_LOCATIONS = """
        location /api/chat/ { chat_api; %s }
        location = /chat/ws { chat_websocket; }
"""

SESSION_RE = re.compile(r"^(\d+)-(\d+)$")


def pid_of(welcome):
    """The worker of a client, from welcome.session ("<worker pid>-<n>")."""
    m = SESSION_RE.match(welcome["session"])
    assert m, welcome
    return int(m.group(1))


def parse_metrics(text):
    """Prometheus text: {name or name{labels}: number}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out


class ChatEnv:
    """nginx with chat_postgres on the session's database (emptied), and
    the clients a test opens (closed at its end).

    locations: the server's locations, with %s where start() puts a
    test's directives; zone: the size of a chat_zone always there; http:
    the http{} directives start() adds when given none; workers: worker
    processes; timeout: for connecting and for any one answer; ready:
    start() returns once the pool has connected;
    ws_ping: ws() returns once a ping has been answered (the client's
    directory entry is in place)."""

    def __init__(self, nginx, postgres, locations=WS_LOCATION, zone=None,
                 http="", workers=1, timeout=5, ready=False, ws_ping=False):
        self.factory = nginx
        self.pg = postgres
        self.locations = locations
        self.zone = zone
        self.http = http
        self.workers = workers
        self.timeout = timeout
        self.ready = ready
        self.ws_ping = ws_ping
        self.ng = None
        self.conns = []
        self.clients = []

    def start(self, loc="", http=None, storage=True, pg_params="",
              options="", workers=None, main=""):
        """nginx with loc in the locations and http after chat_postgres
        (no chat_postgres without storage); pg_params: more parameters of
        chat_postgres; options: its connections' options=; main: the main
        context's directives (thread_pool)."""
        workers = workers or self.workers
        conf = ""
        if storage:
            dsn = self.pg.dsn
            if options:
                dsn += " options='%s'" % options
            conf = 'chat_postgres "%s" pool=2%s;\n' \
                % (dsn, " " + pg_params if pg_params else "")
        if self.zone:
            conf += "chat_zone chat %s;\n" % self.zone
        conf += self.http if http is None else http
        # CHAT_UPLOAD_THREADS=<pool>: a whole file's run with the upload
        # store's filesystem calls in that thread pool ("default")
        if os.environ.get("CHAT_UPLOAD_THREADS"):
            conf += "\nchat_upload_threads %s;\n" \
                % os.environ["CHAT_UPLOAD_THREADS"]
        self.ng = self.factory(self.locations % loc, http=conf,
                               workers=workers, main=main)
        assert len(self.ng.worker_pids()) == workers
        if self.ready:
            self.ng.wait_log(r"PostgreSQL connection ready", timeout=10)
        return self

    def token(self, user, **claims):
        return make_token(self.ng.key, user, **claims)

    def conn(self, user="alice"):
        """A keep-alive REST connection of user."""
        c = Conn(self.ng.port, self.token(user), user, self.timeout)
        self.conns.append(c)
        return c

    def ws(self, user, **claims):
        """A WebSocket client of user (welcome read)."""
        c = ws_connect(self.ng, self.token(user, **claims),
                       timeout=self.timeout)
        c.user = user
        self.clients.append(c)
        if self.ws_ping:
            c.ok("ping", timeout=self.timeout)
        return c

    def connect(self, user, avoid=(), on=None, tries=80, **kw):
        """A WebSocket client of user on a worker not in avoid (and on `on`
        if given; c.pid): connections that land elsewhere are closed at
        once (a reconnect within the presence grace period, so nobody
        hears of it but the first online).  kw: ws_connect's."""
        avoid = set(avoid)
        kw.setdefault("timeout", self.timeout)
        for _ in range(tries):
            c = ws_connect(self.ng, self.token(user), **kw)
            c.pid = pid_of(c.welcome)
            c.user = user
            if c.pid not in avoid and (on is None or c.pid == on):
                self.clients.append(c)
                return c
            c.close()
        pytest.fail("no connection of %s landed on a worker %s after %d "
                    "tries" % (user, "= %s" % on if on else
                               "outside %s" % sorted(avoid), tries))

    def spread(self, *users, **kw):
        """One client per user, the first three (or all) on different
        workers."""
        out, used = [], set()
        for u in users:
            c = self.connect(u, avoid=used if len(used) < 3 else (), **kw)
            used.add(c.pid)
            out.append(c)
        assert len({c.pid for c in out}) >= min(3, len(users))
        return out

    def rest(self, user, method, path, obj=None):
        """(status, JSON body) of one REST request of user, on a connection
        of its own."""
        conn = httpclient.HTTPConnection("127.0.0.1", self.ng.port,
                                         timeout=self.timeout)
        try:
            headers = {"Authorization": "Bearer " + self.token(user)}
            body = None
            if obj is not None:
                body = json.dumps(obj).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, API_PREFIX + path, body=body,
                         headers=headers)
            r = conn.getresponse()
            return r.status, json.loads(r.read() or b"null")
        finally:
            conn.close()

    def ok(self, user, method, path, obj=None):
        """The JSON body of a REST request of user that must succeed."""
        status, body = self.rest(user, method, path, obj)
        assert status in (200, 201), (status, body)
        return body

    def sql(self, query, params=None):
        return self.pg.query(query, params)

    def status(self):
        """The metrics of the chat_status location."""
        r = http(self.ng, "GET", "/chat/status")
        assert r.status == 200, r
        return parse_metrics(r.body.decode())

    def close(self):
        for c in self.conns:
            c.close()
        for c in self.clients:
            try:
                c.close()
            except Exception:
                pass


_ids = itertools.count(1)


def unique(prefix):
    """prefix and a number no other call returns: ids of requests and
    messages."""
    return "%s%d" % (prefix, next(_ids))


def cmid(prefix="cm-"):
    return unique(prefix)


def send_all(c, reqs):
    """Sends every request on WebSocket client c without waiting; their
    ids."""
    ids = []
    for r in reqs:
        ids.append(unique("p"))
        c.send_json(dict(r, id=ids[-1]))
    return ids


def sync(c, cursors=None, only=None, **kw):
    """(the events before the ok, those whose type starts with `only` if
    given; the ok's data) of one sync of WebSocket client c."""
    rid = unique("sync")
    req = {"type": "sync", "id": rid, **kw}
    if cursors is not None:
        req["conversations"] = cursors
    c.send_json(req)
    events = []
    while True:
        f = c.recv_json()
        if f.get("id") == rid:
            assert f["type"] == "ok", f
            return events, f["data"]
        if only is None or f["type"].startswith(only):
            events.append(f)


def settle(*clients, timeout=TIMEOUT):
    """Per WebSocket client, the frames it received and has not consumed,
    up to the reply of a ping sent now.  With one worker, every event a
    request caused is queued ahead of that reply once the request has been
    answered; nothing needs to sleep to prove that something was not
    delivered."""
    out = []
    for c in clients:
        c.ok("ping", timeout=timeout)
        out.append(c.events[:])
        c.events.clear()
    return out[0] if len(clients) == 1 else out


def quote(s):
    """s as one segment of a REST path or query argument."""
    return urllib.parse.quote(s, safe="")


# The requests below go over REST when c is a Conn, else over WebSocket.

def direct(c, other, status=201):
    if isinstance(c, Conn):
        return c.ok("POST", "conversations", status,
                    obj={"kind": "direct", "user_id": other})["conversation"]
    return c.ok("conversation.create", kind="direct",
                user_id=other)["conversation"]


def group(c, title, members, **kw):
    if isinstance(c, Conn):
        return c.ok("POST", "conversations", 201,
                    obj=dict(kw, kind="group", title=title,
                             members=members))["conversation"]
    return c.ok("conversation.create", kind="group", title=title,
                members=members, **kw)["conversation"]


def send(c, cid, body, cm=None, status=201, **kw):
    """A successful send: the Message."""
    if isinstance(c, Conn):
        data = c.ok("POST", "conversations/%d/messages" % cid, status,
                    obj=dict(kw, body=body, client_msg_id=cm or cmid()))
    else:
        data = c.ok("message.send", conversation_id=cid, body=body,
                    client_msg_id=cm or cmid(), **kw)
    assert set(data) == {"message"}, data
    return data["message"]
