"""POST /api/chat/uploads (issue 16, item 1): a file streamed by nginx to a
temporary file under chat_upload_path/tmp, hashed on the way, linked into
the content-addressed store (ab/cd/<sha256>) and recorded in chat.uploads.

Real nginx, real PostgreSQL, HTTP/1.1 on raw sockets.  The workers run as
nobody: each test's store is a directory of its own owned by nobody.

The type is the sniffer's (src/ngx_http_chat_sniff.c, unit-tested on its
own in t/unit/test_sniff.c): a few types here show it is the one used.
"""

import hashlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import zlib

from urllib.parse import quote

import pytest

from chatlib import (API_LOCATIONS, TIMEOUT, Conn, assert_error, direct,
                     send, settle)
from conftest import base_dir


CHAT_ENV = dict(locations=API_LOCATIONS, timeout=TIMEOUT, zone="16m")

NOBODY = 65534


# --------------------------------------------------------------------------
# helpers

def png(width, height, salt=None):
    """A valid PNG of width x height (grey, 8 bits), made unique by a tEXt
    chunk unless salt is given."""
    def chunk(kind, data):
        return (struct.pack("!I", len(data)) + kind + data
                + struct.pack("!I", zlib.crc32(kind + data) & 0xffffffff))
    salt = os.urandom(8).hex().encode() if salt is None else salt
    raw = b"".join(b"\0" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack("!IIBBBBB", width, height, 8, 0,
                                         0, 0, 0))
            + chunk(b"tEXt", b"salt\0" + salt)
            + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def blob(n):
    """n random bytes (no known signature)."""
    data = os.urandom(n)
    return b"\0" + data[1:] if n else data


def sha(data):
    return hashlib.sha256(data).hexdigest()


def make_store():
    """A fresh store directory, owned by the workers' user."""
    path = tempfile.mkdtemp(prefix="store-", dir=base_dir())
    os.chown(path, NOBODY, NOBODY)
    return path


def stored(store):
    """{relative path: bytes} of every file of the store but tmp/."""
    out = {}
    for root, dirs, files in os.walk(store):
        rel = os.path.relpath(root, store)
        if rel == "tmp" or rel.startswith("tmp" + os.sep):
            continue
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, store)] = fh.read()
    return out


def temp_files(store):
    tmp = os.path.join(store, "tmp")
    return sorted(os.listdir(tmp)) if os.path.isdir(tmp) else []


def where(data):
    h = sha(data)
    return os.path.join(h[:2], h[2:4], h)


def rows(pg):
    return pg.query("SELECT owner_id, size, name, type, sha256, width, "
                    "height FROM chat.uploads ORDER BY id")


def upload(c, data, name=None, chunks=None, headers=()):
    path = "uploads"
    if name is not None:
        path += "?name=" + name
    if chunks is not None:
        return c.request("POST", path, chunks=chunks, headers=headers)
    return c.request("POST", path, body=data, headers=headers)


def wait_until(cond, what, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("not within %ss: %s" % (timeout, what))


@pytest.fixture
def store():
    return make_store()


def start(env, store, extra=""):
    return env.start("chat_upload_path %s; %s" % (store, extra))


def ok_upload(c, data, name=None, **kw):
    r = upload(c, data, name, **kw)
    assert r.status == 201, r
    assert r.header("content-type") == "application/json", r
    body = r.json()
    assert set(body) == {"upload"}, body
    assert set(body["upload"]) == {"id", "size", "type", "name", "width",
                                   "height"}, body
    assert isinstance(body["upload"]["id"], int), body
    return body["upload"]


# --------------------------------------------------------------------------
# the file, its row, its answer

def test_png_with_dimensions(env, store):
    start(env, store)
    c = env.conn("alice")
    data = png(3, 2)
    up = ok_upload(c, data, "cat.png")
    assert up["size"] == len(data)
    assert up["type"] == "image/png"
    assert up["name"] == "cat.png"
    assert (up["width"], up["height"]) == (3, 2)
    assert stored(store) == {where(data): data}
    assert temp_files(store) == []
    assert rows(env.pg) == [("alice", len(data), "cat.png", "image/png",
                             sha(data), 3, 2)]
    # the keep-alive connection goes on
    assert ok_upload(c, png(1, 1))["width"] == 1
    mode = os.stat(os.path.join(store, where(data))).st_mode & 0o777
    assert mode == 0o600


def test_no_name_no_dimensions(env, store):
    start(env, store)
    c = env.conn("alice")
    data = blob(5000)
    up = ok_upload(c, data)
    assert up["size"] == 5000
    assert up["type"] == "application/octet-stream"
    assert (up["name"], up["width"], up["height"]) == (None, None, None)
    assert stored(store) == {where(data): data}


PDF = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
       b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
       b"trailer << /Root 1 0 R >>\n%%EOF\n")

# a baseline JPEG header: SOI, APP0 (JFIF), SOF0 of 40 x 30, EOI
JPEG = (b"\xff\xd8"
        b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        b"\xff\xc0\x00\x0b\x08\x00\x1e\x00\x28\x01\x01\x11\x00"
        b"\xff\xd9")


def test_pdf_type(env, store):
    start(env, store)
    up = ok_upload(env.conn("alice"), PDF + os.urandom(8).hex().encode(),
                   "a.pdf")
    assert up["type"] == "application/pdf"
    assert (up["width"], up["height"]) == (None, None)


def test_jpeg_type_and_dimensions(env, store):
    start(env, store)
    up = ok_upload(env.conn("alice"), JPEG, "a.jpg")
    assert up["type"] == "image/jpeg"
    assert (up["width"], up["height"]) == (40, 30)


def test_text_type(env, store):
    start(env, store)
    up = ok_upload(env.conn("alice"), "héllo wörld\n".encode() * 10,
                   "a.txt")
    assert up["type"] == "text/plain; charset=utf-8"


def test_declared_type_is_ignored(env, store):
    """The type is the bytes', never the client's Content-Type."""
    start(env, store)
    up = ok_upload(env.conn("alice"), png(2, 2), "x.html",
                   headers=[("Content-Type", "text/html")])
    assert up["type"] == "image/png"


def test_empty_file(env, store):
    start(env, store)
    c = env.conn("alice")
    assert_error(upload(c, b""), "bad_request", "the file is empty")
    assert stored(store) == {}
    assert temp_files(store) == []
    assert rows(env.pg) == []


# --------------------------------------------------------------------------
# size limits

def test_size_limit_content_length(env, store):
    start(env, store, "chat_upload_max_size 1000;")
    c = env.conn("alice")
    exact = blob(1000)
    assert ok_upload(c, exact)["size"] == 1000

    c2 = env.conn("alice")
    r = upload(c2, blob(1001))
    assert_error(r, "too_large", "the file is too large")
    assert r.header("connection") == "close"
    assert stored(store) == {where(exact): exact}
    wait_until(lambda: temp_files(store) == [], "tmp/ empty")
    assert len(rows(env.pg)) == 1


def test_size_limit_over_nginx_default_answers_json(env, store):
    """A limit above client_max_body_size's default (1m): a Content-Length
    past it is the module's JSON 413, not nginx's HTML page (nginx's own
    check, before the module, is off in an upload location: the module
    holds uploads to chat_upload_max_size and JSON bodies to
    chat_max_message_size)."""
    start(env, store, "chat_upload_max_size 2m;")
    over = 2 * 1024 * 1024 + 1
    r = upload(env.conn("alice"), blob(over))
    assert_error(r, "too_large", "the file is too large")
    # a JSON route of that location is still held to chat_max_message_size
    r = env.conn("alice").request(
        "POST", "conversations", body=b"{" + b" " * (over - 2) + b"}",
        headers=[("Content-Type", "application/json")])
    assert r.status == 413, r
    assert stored(store) == {}
    wait_until(lambda: temp_files(store) == [], "tmp/ empty")


def test_size_limit_chunked(env, store):
    start(env, store, "chat_upload_max_size 1000;")
    c = env.conn("alice")
    exact = blob(1000)
    assert ok_upload(c, None, chunks=[exact[:300], exact[300:]])["size"] \
        == 1000

    # over by one byte, all at once: found in the first read
    r = upload(env.conn("alice"), None, chunks=[blob(600), blob(401)])
    assert_error(r, "too_large", "the file is too large")
    assert r.header("connection") == "close"

    # over by one byte in a later read: the same JSON answer
    c3 = env.conn("alice")
    c3.send(c3.build("POST", "uploads", headers=[
        ("Transfer-Encoding", "chunked")]) + b"258\r\n" + blob(600)
        + b"\r\n")
    time.sleep(0.3)
    c3.send(b"191\r\n" + blob(401) + b"\r\n0\r\n\r\n")
    r = c3.read()
    assert_error(r, "too_large", "the file is too large")

    assert stored(store) == {where(exact): exact}
    wait_until(lambda: temp_files(store) == [], "tmp/ empty")
    assert len(rows(env.pg)) == 1


def test_bigger_than_client_max_body_size(env, store):
    """nginx's own client_max_body_size (1m by default) lets through what
    chat_upload_max_size allows."""
    start(env, store, "chat_upload_max_size 3m;")
    data = blob(2 * 1024 * 1024 + 5)
    assert ok_upload(env.conn("alice"), data)["size"] == len(data)
    assert stored(store) == {where(data): data}


def test_slow_upload(env, store):
    """A body in pieces over a couple of seconds."""
    start(env, store)
    c = env.conn("alice")
    data = png(40, 40) + blob(20000)
    c.send(c.build("POST", "uploads?name=slow.png", headers=[
        ("Content-Length", str(len(data)))]))
    for i in range(0, len(data), 4096):
        c.send(data[i:i + 4096])
        time.sleep(0.2)
    r = c.read()
    assert r.status == 201, r
    up = r.json()["upload"]
    assert (up["size"], up["type"], up["width"]) == (len(data), "image/png",
                                                     40)
    assert stored(store) == {where(data): data}
    assert temp_files(store) == []


def test_client_leaves_mid_upload(env, store):
    start(env, store)
    c = env.conn("alice")
    c.send(c.build("POST", "uploads", headers=[
        ("Content-Length", "100000")]) + blob(30000))
    wait_until(lambda: len(temp_files(store)) == 1,
               "the body in a temporary file")
    c.close()
    wait_until(lambda: temp_files(store) == [], "the temporary file gone")
    assert stored(store) == {}
    assert rows(env.pg) == []
    # the same with a chunked body
    c = env.conn("alice")
    c.send(c.build("POST", "uploads", headers=[
        ("Transfer-Encoding", "chunked")]) + b"7530\r\n" + blob(30000)
        + b"\r\n")
    wait_until(lambda: len(temp_files(store)) == 1,
               "the body in a temporary file")
    c.close()
    wait_until(lambda: temp_files(store) == [], "the temporary file gone")
    assert stored(store) == {}


# --------------------------------------------------------------------------
# who, and the same bytes twice

def test_same_bytes_two_users(env, store):
    start(env, store)
    data = png(5, 4)
    a = ok_upload(env.conn("alice"), data, "a.png")
    b = ok_upload(env.conn("bob"), data, "b.png")
    assert a["id"] != b["id"]
    assert stored(store) == {where(data): data}
    assert rows(env.pg) == [
        ("alice", len(data), "a.png", "image/png", sha(data), 5, 4),
        ("bob", len(data), "b.png", "image/png", sha(data), 5, 4)]
    assert temp_files(store) == []


def test_no_token(env, store):
    start(env, store)
    c = env.conn("alice")
    r = c.request("POST", "uploads", body=png(2, 2), token=None)
    assert r.status == 401, r
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.header("www-authenticate") == "Bearer"
    # discarded: the connection still answers
    assert ok_upload(c, png(1, 1))["width"] == 1
    assert len(stored(store)) == 1


def test_wrong_method(env, store):
    start(env, store)
    r = env.conn("alice").request("GET", "uploads")
    assert r.status == 405, r
    assert r.header("allow") == "POST"


def test_not_configured(env):
    env.start()
    assert_error(upload(env.conn("alice"), png(1, 1)), "unavailable",
                 "uploads are not configured")


# --------------------------------------------------------------------------
# names

@pytest.mark.parametrize("given,kept", [
    ("cat.png", "cat.png"),
    ("..%2F..%2Fetc%2Fpasswd", "passwd"),
    ("../../etc/passwd", "passwd"),
    ("a%5Cb", "b"),
    ("C%3A%5Cdocs%5Creport.pdf", "report.pdf"),
    ("x%01y%7Fz%0A.txt", "xyz.txt"),
    ("%E2%80%AEgpj.exe", "gpj.exe"),
    ("a%E2%80%A8b%E2%80%8F%E2%81%A6c", "abc"),
    ("%20%20spaced%20name%20", "spaced name"),
    ("caf%C3%A9%20%E2%9C%93.png", "café ✓.png"),
    ("..", None),
    ("a%2F..", None),
    ("%2F", None),
    ("%01%02", None),
])
def test_names(env, store, given, kept):
    start(env, store)
    data = png(2, 3)
    up = ok_upload(env.conn("alice"), data, given)
    assert up["name"] == kept
    assert rows(env.pg)[0][2] == kept
    # only the hash names a file
    assert stored(store) == {where(data): data}


def test_name_limits(env, store):
    start(env, store)
    c = env.conn("alice")
    long = "é" * 255
    assert ok_upload(c, png(1, 1), quote(long))["name"] == long
    assert_error(upload(c, png(1, 1), quote("é" * 256)), "bad_request",
                 "name must be at most 255 characters")
    assert_error(upload(c, png(1, 1), "a%FFb"), "bad_request",
                 "name must be UTF-8")
    assert len(rows(env.pg)) == 1


# --------------------------------------------------------------------------
# per-user limits (in the zone)

def test_files_per_minute(env, store):
    start(env, store, "chat_upload_rate 2r/m;")
    c = env.conn("alice")
    ok_upload(c, png(1, 1))
    ok_upload(c, png(1, 1))
    r = upload(c, png(1, 1))
    assert r.status == 429, r
    err = r.json()["error"]
    assert err["code"] == "rate_limited"
    assert err["message"] == "too many uploads, slow down"
    # 2r/m: one more file in 30 s (rounded up)
    assert 1 <= int(r.header("retry-after")) <= 31
    # someone else is not limited by alice's uploads
    ok_upload(env.conn("bob"), png(1, 1))
    assert len(stored(store)) == 3
    assert len(rows(env.pg)) == 3


def test_daily_quota(env, store):
    start(env, store, "chat_upload_quota 2500; chat_upload_rate off;")
    c = env.conn("alice")
    ok_upload(c, blob(1000))
    ok_upload(c, blob(1000))

    # known from Content-Length: refused before the body is read
    r = upload(c, blob(1000))
    assert r.status == 429, r
    assert r.json()["error"]["message"] == "too many uploads, slow down"
    assert int(r.header("retry-after")) > 1000

    # chunked: refused once the size is known, nothing kept
    r = upload(env.conn("alice"), None, chunks=[blob(1000)])
    assert r.status == 429, r
    assert r.json()["error"] == {
        "code": "rate_limited",
        "message": "the daily upload quota is used up",
        "retry_after_ms": r.json()["error"]["retry_after_ms"]}
    assert int(r.header("retry-after")) > 1000

    # more than a whole day's quota
    assert_error(upload(env.conn("alice"), blob(2501)), "too_large",
                 "the file is larger than the daily upload quota")

    # bob has a quota of his own
    ok_upload(env.conn("bob"), blob(2000))
    assert len(stored(store)) == 3
    assert len(rows(env.pg)) == 3
    wait_until(lambda: temp_files(store) == [], "tmp/ empty")


# --------------------------------------------------------------------------
# the store failing

def test_store_not_a_directory(env, store):
    """A file where ab/ should be: 503, no row, no temporary file."""
    start(env, store)
    data = png(2, 2)
    with open(os.path.join(store, sha(data)[:2]), "w") as f:
        f.write("in the way")
    c = env.conn("alice")
    r = upload(c, data)
    assert_error(r, "unavailable", "the file could not be stored")
    assert rows(env.pg) == []
    assert temp_files(store) == []
    # other files are stored as ever
    other = png(3, 3)
    while sha(other)[:2] == sha(data)[:2]:
        other = png(3, 3)
    ok_upload(env.conn("alice"), other)
    env.ng.allow_log.append(r"chat upload: mkdir\(\) .* failed")


def test_store_subdirectory_not_writable(env, store):
    start(env, store)
    data = png(2, 2)
    sub = os.path.join(store, sha(data)[:2])
    os.mkdir(sub)
    os.chown(sub, NOBODY, NOBODY)
    os.chmod(sub, 0o500)
    assert_error(upload(env.conn("alice"), data), "unavailable",
                 "the file could not be stored")
    assert rows(env.pg) == []
    assert temp_files(store) == []
    env.ng.allow_log.append(r"chat upload: mkdir\(\) .* failed")


@pytest.fixture
def small_disk():
    """A store on a 256 KB tmpfs (mount needs CAP_SYS_ADMIN)."""
    path = tempfile.mkdtemp(prefix="disk-", dir=base_dir())
    r = subprocess.run(["mount", "-t", "tmpfs", "-o",
                        "size=256k,uid=%d,gid=%d,mode=0700"
                        % (NOBODY, NOBODY), "tmpfs", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs: " + r.stderr.strip())
    yield path
    subprocess.run(["umount", "-l", path])


def test_disk_full(env, small_disk):
    """The temporary file cannot be written: 507, nothing left."""
    start(env, small_disk, "chat_upload_max_size 2m;")
    env.ng.allow_log.append(r"No space left on device")
    c = env.conn("alice")
    r = upload(c, blob(1024 * 1024))
    assert_error(r, "insufficient_storage",
                 "no space left to store the file", status=507)
    assert stored(small_disk) == {}
    wait_until(lambda: temp_files(small_disk) == [], "tmp/ empty")
    assert rows(env.pg) == []
    # what fits is stored
    data = blob(10000)
    assert ok_upload(env.conn("alice"), data)["size"] == 10000
    assert stored(small_disk) == {where(data): data}


# --------------------------------------------------------------------------
# nothing waits for an upload

def test_chat_goes_on_during_uploads(env, store):
    start(env, store)
    alice = env.ws("alice")
    bob = env.ws("bob")
    cid = direct(alice, "bob")["id"]
    settle(alice, bob)

    # two uploads stalled halfway, and one slowly going on
    stalled = []
    for _ in range(2):
        c = env.conn("carol")
        c.send(c.build("POST", "uploads", headers=[
            ("Content-Length", "200000")]) + blob(50000))
        stalled.append(c)
    slow = env.conn("dave")
    data = blob(60000)
    slow.send(slow.build("POST", "uploads", headers=[
        ("Content-Length", str(len(data)))]))

    for i in range(6):
        slow.send(data[i * 10000:(i + 1) * 10000])
        m = send(alice, cid, "hello %d" % i)
        events = settle(bob)
        assert [e["message"]["id"] for e in events
                if e["type"] == "message.created"] == [m["id"]]

    r = slow.read()
    assert r.status == 201, r
    for c in stalled:
        c.close()
    wait_until(lambda: temp_files(store) == [], "tmp/ empty")
    assert stored(store) == {where(data): data}


# --------------------------------------------------------------------------
# configuration

def test_config_checks(nginx, tmp_path):
    missing = os.path.join(base_dir(), "no-such-store")
    rc, out = nginx.check_config(
        "location /api/chat/ { chat_api; chat_upload_path %s; }" % missing)
    assert rc != 0
    assert 'chat_upload_path "%s" cannot be used' % missing in out

    afile = os.path.join(base_dir(), "a-file")
    open(afile, "w").close()
    rc, out = nginx.check_config(
        "location /api/chat/ { chat_api; chat_upload_path %s; }" % afile)
    assert rc != 0
    assert 'chat_upload_path "%s" is not a directory' % afile in out

    rootonly = tempfile.mkdtemp(prefix="rootonly-", dir=base_dir())
    os.chmod(rootonly, 0o755)
    rc, out = nginx.check_config(
        "location /api/chat/ { chat_api; chat_upload_path %s; }" % rootonly)
    assert rc != 0
    assert ('chat_upload_path "%s" is not writable by the worker '
            "processes' user" % rootonly) in out

    good = make_store()
    rc, out = nginx.check_config(
        "location /api/chat/ { chat_api; chat_upload_path %s; "
        "chat_upload_max_size 10m; chat_upload_rate 10r/m burst=5; "
        "chat_upload_quota 5g; }" % good)
    assert rc == 0, out

    for bad, msg in [("chat_upload_quota lots;", "is invalid"),
                     ("chat_upload_rate 10;", "invalid value"),
                     ("chat_upload_max_size 0;", "must be more than 0")]:
        rc, out = nginx.check_config(
            "location /api/chat/ { chat_api; chat_upload_path %s; %s }"
            % (good, bad))
        assert rc != 0 and msg in out, (bad, out)


# --------------------------------------------------------------------------
# the SQL entry point's own checks (nginx sends only good rows)

GOOD = {"sha256": "ab" * 32, "size": 10, "type": "image/png",
        "name": "a.png", "width": 1, "height": 2}


@pytest.mark.parametrize("change,message", [
    ({"sha256": "AB" * 32}, "sha256 must be a SHA-256 in lower-case hex"),
    ({"sha256": None}, "sha256 is missing"),
    ({"size": 0}, "size must be a positive integer"),
    ({"size": "10"}, "size must be a positive integer"),
    ({"type": ""}, "type must be a media type"),
    ({"name": "a/b"}, "name must be a file name of 1 to 255 characters"),
    ({"name": "a\\b"}, "name must be a file name of 1 to 255 characters"),
    ({"name": "a\nb"}, "name must be a file name of 1 to 255 characters"),
    ({"name": "x" * 256}, "name must be a file name of 1 to 255 characters"),
    ({"width": 0}, "width and height must be positive integers"),
    ({"height": 2 ** 31}, "width and height must be positive integers"),
])
def test_sql_checks(postgres, change, message):
    import json
    postgres.reset()
    req = dict(GOOD, **change)
    req = {k: v for k, v in req.items() if v is not None}
    out = postgres.query("SELECT chat.api_upload_create('alice', %s::jsonb)",
                         (json.dumps(req),))[0][0]
    assert out == {"error": {"code": "bad_request", "message": message}}
    assert rows(postgres) == []


def test_sql_row(postgres):
    import json
    postgres.reset()
    out = postgres.query("SELECT chat.api_upload_create('alice', %s::jsonb)",
                         (json.dumps(dict(GOOD, name=None, width=None,
                                          height=None)),))[0][0]
    up = out["ok"]["upload"]
    assert up == {"id": up["id"], "size": 10, "type": "image/png",
                  "name": None, "width": None, "height": None}
    assert out["events"] == []


# --------------------------------------------------------------------------
# HTTP/2 (h2c, curl as the client): the same body filter and store

def test_http2(env, store):
    from conftest import free_port
    port = free_port()
    env.start("chat_upload_path %s; chat_upload_max_size 100k;" % store,
              http="server { listen 127.0.0.1:%d http2; "
                   "location /api/chat/ { chat_api; } }\n"
                   "chat_upload_path %s; chat_upload_max_size 100k;"
                   % (port, store))
    data = png(9, 8) + blob(70000)
    path = os.path.join(base_dir(), "h2-" + sha(data)[:8])
    with open(path, "wb") as f:
        f.write(data)

    def curl(*args):
        r = subprocess.run(["curl", "-sS", "--http2-prior-knowledge",
                            "-H", "Authorization: Bearer " +
                            env.token("alice"), "-o", "-", "-w",
                            "\n%{http_code} %{http_version}", *args],
                           capture_output=True, text=True, timeout=30)
        body, _, status = r.stdout.rpartition("\n")
        return status, body + r.stderr

    status, body = curl("--data-binary", "@" + path,
                        "http://127.0.0.1:%d/api/chat/uploads?name=h2.png"
                        % port)
    assert status == "201 2", (status, body)
    up = __import__("json").loads(body)["upload"]
    assert (up["size"], up["width"], up["name"]) == (len(data), 9, "h2.png")
    assert stored(store) == {where(data): data}

    # too large, announced: 413 at once, the stream's DATA dropped.  curl
    # 7.88, still sending, mostly reports the stream's end as an error
    # (92, or 18 after the head): nginx's own 413 (client_max_body_size)
    # does the same to it over HTTP/2.  Nothing is stored either way.
    big = path + "-big"
    with open(big, "wb") as f:
        f.write(blob(100 * 1024 + 1))
    status, body = curl("--data-binary", "@" + big,
                        "http://127.0.0.1:%d/api/chat/uploads" % port)
    assert status in ("413 2", "000 0"), (status, body)
    if body.startswith("{"):
        assert '"too_large"' in body, body
    wait_until(lambda: temp_files(store) == [], "tmp/ empty")
    assert len(stored(store)) == 1
