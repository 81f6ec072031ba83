"""Client-side helpers for the tests.

- make_token(): JWTs minted in pure Python (HS*, RS*, ES*), independent of
  the module's C verifier.
- RawWS / http_upgrade(): a WebSocket client on a bare socket that sends
  whatever bytes a test wants and checks every server frame strictly.
- ws_connect(): a well-behaved client (Python websockets) with a
  synchronous interface, for tests about chat behaviour.
- http(): a one-shot HTTP request for the REST routes.
"""

import asyncio
import base64
import hashlib
import hmac
import http.client as httpclient
import itertools
import json
import os
import socket
import struct
import threading
import time


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
