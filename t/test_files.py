"""GET /api/chat/files/{id} (issue 16, item 3) and the life of a stored
file: who may download it (its owner, the members of a conversation where
a message that is not deleted attaches it), how nginx's static module
serves it through the internal chat_files location (type, ETag of the
hash, Range, If-None-Match, the headers that keep it inert), the sweep of
uploads no message attaches and of files no row has, and the deletion of
a user's uploads.

Real nginx, real PostgreSQL.  Until sends write chat.message_uploads
(item 2), the tests attach an upload to a message they sent normally by
inserting that row as the superuser.
"""

import hashlib
import os
import socket
import time

from urllib.parse import quote

import pytest

from chatlib import Conn, assert_error, direct, group, send
from test_metrics import Metrics, scrape
from test_uploads import JPEG, NOBODY, PDF, blob, make_store, png, where


LOCATIONS = """
        location /api/chat/ { chat_api; %s }
        location = /chat/ws { chat_websocket; }
        location /_chat_files/ { chat_files; alias @STORE@/; sendfile on; }
        location = /chat/status { chat_status; }
"""

CHAT_ENV = dict(locations=LOCATIONS, zone="16m")


@pytest.fixture
def store():
    return make_store()


def start(env, store, grace=None):
    env.locations = LOCATIONS.replace("@STORE@", store)
    http = "chat_upload_grace %ds;" % grace if grace else ""
    return env.start("chat_upload_path %s;" % store, http=http)


def upload(c, data, name=None):
    path = "uploads" + ("?name=" + quote(name, safe="") if name else "")
    r = c.request("POST", path, body=data)
    assert r.status == 201, r
    return r.json()["upload"]


def attach(pg, message, upload_id):
    """The link a send will write (item 2): until sends write them."""
    pg.query("INSERT INTO chat.message_uploads (message_id, upload_id, "
             "conversation_id) VALUES (%s, %s, %s)",
             (message["id"], upload_id, message["conversation_id"]))


def get(c, up_id, headers=(), method="GET"):
    return c.request(method, "files/%s" % up_id, headers=headers)


def ok_get(c, up_id, data, headers=()):
    r = get(c, up_id, headers)
    assert r.status == 200, r
    assert r.body == data
    return r


def not_found(c, up_id):
    assert_error(get(c, up_id), "not_found", "file not found")


def sha(data):
    return hashlib.sha256(data).hexdigest()


def wait_until(cond, what, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("not within %ss: %s" % (timeout, what))


# --------------------------------------------------------------------------
# who

def test_owner_downloads(env, store):
    start(env, store)
    c = env.conn("alice")
    data = png(4, 3)
    up = upload(c, data, "cat.png")
    r = ok_get(c, up["id"], data)
    assert r.header("content-type") == "image/png"
    assert r.header("content-length") == str(len(data))
    assert r.header("content-disposition") == \
        "inline; filename=\"cat.png\"; filename*=UTF-8''cat.png"
    assert r.header("x-content-type-options") == "nosniff"
    assert r.header("content-security-policy") == "sandbox"
    assert r.header("cache-control") == "private"
    assert r.all("etag") == ['"%s"' % sha(data)]
    assert r.header("accept-ranges") == "bytes"
    assert r.keep_alive

    # HEAD: the same head, no body
    h = get(c, up["id"], method="HEAD")
    assert h.status == 200 and h.body == b""
    assert h.header("content-length") == str(len(data))
    assert h.all("etag") == ['"%s"' % sha(data)]

    # the same connection goes on
    c.alive()

    # counted under their route, as the other routes are (the redirected
    # request in the chat_files location; a refusal in the API's)
    not_found(c, up["id"] + 1)
    m = Metrics(scrape(env.ng))
    assert m.get("chat_http_requests_total", route="files/{id}",
                 status="2xx") == 2
    assert m.get("chat_http_requests_total", route="files/{id}",
                 status="4xx") == 1


def test_member_downloads_others_do_not(env, store):
    start(env, store)
    alice, bob, carol = (env.conn(u) for u in ("alice", "bob", "carol"))
    data = blob(3000)
    up = upload(alice, data, "notes.bin")
    g = group(alice, "team", ["bob"])

    # a member, before any message attaches it: nothing
    not_found(bob, up["id"])

    m = send(alice, g["id"], "the file")
    attach(env.pg, m, up["id"])

    ok_get(bob, up["id"], data)
    # a stranger, and an id that does not exist: the same answer
    not_found(carol, up["id"])
    not_found(carol, up["id"] + 1000)
    not_found(bob, up["id"] + 1000)

    # a member removed: nothing any more
    alice.ok("DELETE", "conversations/%d/members/bob" % g["id"])
    not_found(bob, up["id"])
    ok_get(alice, up["id"], data)


def test_malformed_ids(env, store):
    start(env, store)
    c = env.conn("alice")
    up = upload(c, b"hello\n" * 10, "a.txt")
    for path in ("files/abc", "files/-1", "files/0", "files/01",
                 "files/%d/../x" % up["id"], "files/%d/x" % up["id"],
                 "files/", "files/%d%%2f" % up["id"],
                 "files/99999999999999999999"):
        c.error("GET", path, "not_found", "no such route")
    # the store is no route of its own
    r = c.request("GET", "/_chat_files/" + where(b"hello\n" * 10))
    assert r.status == 404, r
    c.error("POST", "files/%d" % up["id"], "bad_request",
            "method not allowed", status=405)
    # no token: 401 before anything
    r = c.request("GET", "files/%d" % up["id"], token=None)
    assert r.status == 401, r


def test_deleted_message_stops_serving(env, store):
    start(env, store)
    alice, bob = env.conn("alice"), env.conn("bob")
    data = PDF + os.urandom(8).hex().encode()
    up = upload(alice, data, "doc.pdf")
    d = direct(alice, "bob")
    m = send(alice, d["id"], "see the pdf")
    attach(env.pg, m, up["id"])
    ok_get(bob, up["id"], data)

    alice.ok("DELETE", "messages/%d" % m["id"])
    assert env.pg.query("SELECT count(*) FROM chat.message_uploads") \
        == [(0,)]
    not_found(bob, up["id"])
    # its owner still has it
    ok_get(alice, up["id"], data)


def test_blocked_sender(env, store):
    """A member who blocked the sender (or was blocked by them) sees none
    of the sender's messages in the conversation, and none of the files
    those attach; the others still do."""
    start(env, store)
    alice, bob, carol = (env.conn(u) for u in ("alice", "bob", "carol"))
    data = blob(500)
    up = upload(alice, data)
    g = group(alice, "three", ["bob", "carol"])
    m = send(alice, g["id"], "file")
    attach(env.pg, m, up["id"])
    ok_get(carol, up["id"], data)

    carol.ok("PUT", "blocks/alice")
    not_found(carol, up["id"])
    ok_get(bob, up["id"], data)

    # the other way: the sender blocked the member
    alice.ok("PUT", "blocks/bob")
    not_found(bob, up["id"])
    ok_get(alice, up["id"], data)

    carol.ok("DELETE", "blocks/alice")
    ok_get(carol, up["id"], data)


@pytest.mark.allow_log(r"is missing")
def test_missing_file_is_404(env, store):
    start(env, store)
    c = env.conn("alice")
    data = blob(100)
    up = upload(c, data)
    os.unlink(os.path.join(store, where(data)))
    not_found(c, up["id"])
    env.ng.wait_log(r"chat files: \"%s\" of upload %d is missing"
                    % (os.path.join(store, where(data)), up["id"]))
    c.alive()


# --------------------------------------------------------------------------
# how: ranges, validators, types, names

def test_range_and_conditionals(env, store):
    start(env, store)
    c = env.conn("alice")
    data = blob(1000)
    up = upload(c, data)
    etag = '"%s"' % sha(data)

    r = get(c, up["id"], [("Range", "bytes=10-19")])
    assert r.status == 206, r
    assert r.body == data[10:20]
    assert r.header("content-range") == "bytes 10-19/1000"
    assert r.header("etag") == etag

    r = get(c, up["id"], [("Range", "bytes=-5")])
    assert (r.status, r.body) == (206, data[-5:])

    r = get(c, up["id"], [("If-None-Match", etag)])
    assert r.status == 304, r
    assert r.header("etag") == etag

    # another tag: the whole file
    ok_get(c, up["id"], data, [("If-None-Match", '"%s"' % ("0" * 64))])

    # If-Range: the range while the tag holds, else the whole file
    r = get(c, up["id"], [("Range", "bytes=0-3"), ("If-Range", etag)])
    assert (r.status, r.body) == (206, data[:4])
    ok_get(c, up["id"], data, [("Range", "bytes=0-3"),
                               ("If-Range", '"%s"' % ("0" * 64))])


def test_large_file_read_slowly(env, store):
    """A file larger than the socket's buffers, read slowly: the static
    module's sendfile goes on in later write events, after the module is
    done with the request."""
    start(env, store)
    c = env.conn("alice")
    data = blob(4 * 1024 * 1024)
    up = upload(c, data)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    c.send(c.build("GET", "files/%d" % up["id"]))
    time.sleep(0.5)
    r = c.read()
    assert r.status == 200, r
    assert r.body == data
    c.alive()


@pytest.mark.parametrize("data, name, type_, kind", [
    (png(2, 2), "p.png", "image/png", "inline"),
    (JPEG, "j.jpg", "image/jpeg", "inline"),
    (PDF, "d.pdf", "application/pdf", "inline"),
    ("héllo\n".encode() * 5, "t.txt", "text/plain; charset=utf-8",
     "attachment"),
    (b"\0\1\2binary" * 10, "b.bin", "application/octet-stream",
     "attachment"),
    (b"<!DOCTYPE html><html><script>alert(1)</script></html>\n", "x.html",
     "text/plain; charset=utf-8", "attachment"),
    (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>\n',
     "x.svg", "text/plain; charset=utf-8", "attachment"),
])
def test_types_and_disposition(env, store, data, name, type_, kind):
    start(env, store)
    c = env.conn("alice")
    up = upload(c, data, name)
    r = ok_get(c, up["id"], data)
    assert r.header("content-type") == type_
    assert r.header("content-disposition") == \
        "%s; filename=\"%s\"; filename*=UTF-8''%s" % (kind, name, name)
    assert r.header("x-content-type-options") == "nosniff"
    assert r.header("content-security-policy") == "sandbox"


@pytest.mark.parametrize("name, ascii_, utf8", [
    ('a"b;c.txt', 'a_b;c.txt', "a%22b%3Bc.txt"),
    ("résumé ü.txt", "r_sum_ _.txt",
     "r%C3%A9sum%C3%A9%20%C3%BC.txt"),
    ("100%.txt", "100_.txt", "100%25.txt"),
    ("back\\slash.txt", "slash.txt", "slash.txt"),   # a path: its base
    ("a\r\nSet-Cookie: x=1.txt", "aSet-Cookie: x=1.txt",
     "aSet-Cookie%3A%20x%3D1.txt"),                   # controls dropped
])
def test_names(env, store, name, ascii_, utf8):
    start(env, store)
    c = env.conn("alice")
    up = upload(c, b"plain text\n", name)
    r = ok_get(c, up["id"], b"plain text\n")
    assert r.header("content-disposition") == \
        "attachment; filename=\"%s\"; filename*=UTF-8''%s" % (ascii_, utf8)
    assert r.header("set-cookie") is None


def test_no_name_and_control_characters_in_a_row(env, store):
    """A row without a name; a name with CR LF written past the API (the
    table does not forbid it): no header is ever split."""
    start(env, store)
    c = env.conn("alice")
    up = upload(c, b"text\n")
    r = ok_get(c, up["id"], b"text\n")
    assert r.header("content-disposition") == "attachment"

    env.pg.query("UPDATE chat.uploads SET name = %s WHERE id = %s",
                 ("evil\r\nSet-Cookie: a=b\r\n\r\nx", up["id"]))
    r = ok_get(c, up["id"], b"text\n")
    assert r.header("set-cookie") is None
    assert r.header("content-disposition") == \
        "attachment; filename=\"evil__Set-Cookie: a=b____x\"; " \
        "filename*=UTF-8''evil%0D%0ASet-Cookie%3A%20a%3Db%0D%0A%0D%0Ax"
    c.alive()


def test_http2(env, store):
    """h2c (curl): the redirect and the static module's answer, a range
    included, on a stream."""
    import subprocess
    from conftest import free_port
    port = free_port()
    env.locations = LOCATIONS.replace("@STORE@", store)
    env.start("chat_upload_path %s;" % store,
              http="server { listen 127.0.0.1:%d http2; "
                   "location /api/chat/ { chat_api; "
                   "chat_upload_path %s; } "
                   "location /_chat_files/ { chat_files; alias %s/; } }"
                   % (port, store, store))
    c = env.conn("alice")
    data = png(5, 5) + blob(5000)
    up = upload(c, data, "h2 ü.png")

    def curl(*args):
        r = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-D",
                            "-", "-H", "Authorization: Bearer "
                            + env.token("alice"), *args,
                            "http://127.0.0.1:%d/api/chat/files/%d"
                            % (port, up["id"])],
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r
        head, _, body = r.stdout.partition(b"\r\n\r\n")
        return head.decode("latin-1").lower(), body

    head, body = curl()
    assert head.startswith("http/2 200"), head
    assert body == data
    assert "content-type: image/png" in head
    assert "etag: \"%s\"" % sha(data) in head
    assert "content-disposition: inline; filename=\"h2 _.png\"; " \
        "filename*=utf-8''h2%20%c3%bc.png" in head
    head, body = curl("-H", "Range: bytes=100-199")
    assert head.startswith("http/2 206"), head
    assert body == data[100:200]


def test_cross_origin_download(env, store):
    """A page on an allowed origin (chat_cors_origins) may read what a
    download says of itself: its name (Content-Disposition), its ETag (for
    If-None-Match, If-Range) and its ranges; and send those headers after
    a preflight.  Other routes expose only their own headers."""
    app = "https://app.example"
    env.locations = LOCATIONS.replace("@STORE@", store)
    env.start("chat_cors_origins %s; chat_upload_path %s;" % (app, store))
    c = env.conn("alice")
    data = png(4, 3)
    up = upload(c, data, "cat.png")
    origin = [("Origin", app)]
    expose = "Retry-After, WWW-Authenticate, Content-Disposition, ETag, " \
        "Accept-Ranges, Content-Range"

    def cors(r):
        assert r.header("access-control-allow-origin") == app, r
        assert r.header("vary") == "Origin", r
        assert r.all("access-control-expose-headers") == [expose], r

    r = ok_get(c, up["id"], data, origin)
    cors(r)
    assert r.header("content-disposition") == \
        "inline; filename=\"cat.png\"; filename*=UTF-8''cat.png"
    assert r.header("etag") == '"%s"' % sha(data)

    r = get(c, up["id"], origin + [("Range", "bytes=1-2")])
    assert (r.status, r.body) == (206, data[1:3]), r
    cors(r)
    assert r.header("content-range") == "bytes 1-2/%d" % len(data)

    r = get(c, up["id"], origin + [("If-None-Match", '"%s"' % sha(data))])
    assert r.status == 304, r
    cors(r)

    # a refusal says no more than the other routes' answers
    r = get(c, up["id"] + 1, origin)
    assert_error(r, "not_found", "file not found")
    cors(r)

    # the preflight: the download's request headers allowed
    r = c.request("OPTIONS", "files/%d" % up["id"], token=None,
                  headers=origin + [("Access-Control-Request-Method", "GET"),
                                    ("Access-Control-Request-Headers",
                                     "authorization, range")])
    assert r.status == 204, r
    cors(r)
    assert r.header("access-control-allow-headers") == \
        "Authorization, Content-Type, Chat-Act-As, Range, If-None-Match, " \
        "If-Range", r

    # the other routes: unchanged
    r = c.request("GET", "users/me", headers=origin)
    assert r.status == 200, r
    assert r.header("access-control-expose-headers") == \
        "Retry-After, WWW-Authenticate", r
    r = c.request("OPTIONS", "users/me", token=None,
                  headers=origin + [("Access-Control-Request-Method", "GET")])
    assert r.header("access-control-allow-headers") == \
        "Authorization, Content-Type, Chat-Act-As", r

    # an origin not allowed: no file
    r = get(c, up["id"], [("Origin", "https://evil.example")])
    assert_error(r, "forbidden", "origin not allowed")
    c.alive()


# --------------------------------------------------------------------------
# the sweep, and a user's data erased

def rows(pg):
    return pg.query("SELECT owner_id, sha256 FROM chat.uploads ORDER BY id")


def on_disk(store, data):
    return os.path.exists(os.path.join(store, where(data)))


def test_sweep(env, store):
    start(env, store, grace=1)
    alice, bob = env.conn("alice"), env.conn("bob")
    d = direct(alice, "bob")

    lone = blob(700)             # nobody attaches it: row and file go
    shared = blob(800)           # alice's copy goes, bob's attached stays
    kept = blob(900)             # attached: stays
    upload(alice, lone)
    upload(alice, shared)
    b = upload(bob, shared)
    k = upload(alice, kept)
    attach(env.pg, send(bob, d["id"], "mine"), b["id"])
    attach(env.pg, send(alice, d["id"], "kept"), k["id"])

    wait_until(lambda: not on_disk(store, lone), "the lone file unlinked")
    wait_until(lambda: len(rows(env.pg)) == 2, "two rows left")
    assert sorted(rows(env.pg)) == sorted([("bob", sha(shared)),
                                           ("alice", sha(kept))])
    assert on_disk(store, shared) and on_disk(store, kept)
    # off the queue once the next call has heard that the file is gone
    wait_until(lambda: env.pg.query("SELECT count(*) FROM "
                                    "chat.uploads_gone") == [(0,)],
               "the queue empty")
    ok_get(alice, k["id"], kept)

    # the message deleted: its upload is no one's any more after the grace
    m = env.pg.query("SELECT message_id FROM chat.message_uploads "
                     "WHERE upload_id = %s", (b["id"],))[0][0]
    bob.ok("DELETE", "messages/%d" % m)
    wait_until(lambda: not on_disk(store, shared), "the shared file unlinked")
    assert rows(env.pg) == [("alice", sha(kept))]


def test_user_deletion(env, store):
    start(env, store, grace=1)
    alice, bob = env.conn("alice"), env.conn("bob")
    d = direct(alice, "bob")
    data = blob(600)
    up = upload(alice, data)
    attach(env.pg, send(alice, d["id"], "file"), up["id"])
    ok_get(bob, up["id"], data)
    mine = blob(650)
    upload(bob, mine)
    b = upload(bob, blob(660))
    attach(env.pg, send(bob, d["id"], "bob's"), b["id"])

    assert env.pg.query("SELECT chat.delete_user_uploads('alice')") \
        == [(1,)]
    not_found(bob, up["id"])
    not_found(alice, up["id"])
    wait_until(lambda: not on_disk(store, data), "alice's file unlinked")
    # bob's attached upload stays; his unattached one goes with the grace
    wait_until(lambda: not on_disk(store, mine), "bob's lone file unlinked")
    assert [r[0] for r in rows(env.pg)] == ["bob"]


def orphan_file(store, data, mtime=None, name=None):
    """A file in the store as an upload whose row failed leaves it."""
    path = os.path.join(store, where(data))
    if name is not None:
        path = os.path.join(store, name[:2], name[2:4], name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    for p in (path, os.path.dirname(path),
              os.path.dirname(os.path.dirname(path))):
        os.chown(p, NOBODY, NOBODY)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_files_no_row_named_are_crawled(env, store):
    """A file whose row was never written (the insert failed after the
    file was stored) is in no queue: the sweep's crawl finds the files of
    the store older than the grace, the SQL queues those no row names,
    and they go as any other; a file a row names stays.  More than a
    call's worth in one directory go over several calls."""
    start(env, store, grace=1)
    c = env.conn("alice")
    named = blob(501)
    up = upload(c, named)
    attach(env.pg, send(c, direct(c, "bob")["id"], "f"), up["id"])
    old = time.time() - 3600
    os.utime(os.path.join(store, where(named)), (old, old))
    orphan = orphan_file(store, blob(503), old)
    many = [orphan_file(store, b"x", old,
                        "0000" + os.urandom(30).hex())
            for _ in range(230)]
    wait_until(lambda: not os.path.exists(orphan), "the orphan unlinked",
               30)
    wait_until(lambda: not any(os.path.exists(p) for p in many),
               "the directory's orphans unlinked", 30)
    wait_until(lambda: env.pg.query("SELECT count(*) FROM "
                                    "chat.uploads_gone") == [(0,)],
               "the queue empty")
    assert on_disk(store, named)
    ok_get(c, up["id"], named)


def test_files_no_row_named_the_operations_procedure(env, store, tmp_path):
    """docs/operations.md's procedure, run as written, queues the files
    older than a day that no row names at once (nginx's sweep, at the
    default grace, does not run within the test)."""
    import re
    import subprocess
    start(env, store)
    c = env.conn("alice")
    named = blob(501)
    upload(c, named)
    old = time.time() - 2 * 86400
    os.utime(os.path.join(store, where(named)), (old, old))
    orphan = blob(503)
    orphan_file(store, orphan, old)
    orphan_file(store, blob(504))

    doc = open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "..", "docs", "operations.md")).read()
    doc = doc[doc.index("**Files no row ever named.**"):]
    script = re.search(r"```sh\n(.*?)```", doc, re.S).group(1)
    script = (script.replace("/var/lib/chat/uploads", store)
              .replace("/tmp/store-files", str(tmp_path / "files"))
              .replace("psql ", "psql -X -h %s -U postgres "
                       % env.pg.socket_dir))
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                       env=dict(os.environ, PATH="/usr/lib/postgresql/15/"
                                "bin:" + os.environ["PATH"]))
    assert r.returncode == 0, r.stderr
    assert env.pg.query("SELECT sha256 FROM chat.uploads_gone") \
        == [(sha(orphan),)]


def test_grace_keeps_new_uploads(env, store):
    """The default grace (a day): nothing is swept from under a client that
    has not sent its message yet."""
    start(env, store)
    c = env.conn("alice")
    data = blob(300)
    upload(c, data)
    time.sleep(2.5)
    assert on_disk(store, data)
    assert len(rows(env.pg)) == 1


# --------------------------------------------------------------------------
# configuration

@pytest.mark.parametrize("locations, message", [
    ("location = /f/ { chat_files; alias /tmp/; }",
     '"chat_files" directive must be in a prefix location ending in "/"'),
    ("location /f { chat_files; alias /tmp/; }",
     '"chat_files" directive must be in a prefix location ending in "/"'),
    ("location @f { chat_files; root /tmp; }",
     '"chat_files" directive must be in a prefix location ending in "/"'),
    ("location /f/ { chat_files; chat_files; alias /tmp/; }",
     '"chat_files" directive is duplicate'),
    ("location /f/ { chat_files; alias /tmp/; }\n"
     "location /g/ { chat_files; alias /tmp/; }",
     '"chat_files" directive is in another location already'),
])
def test_chat_files_checks(nginx, locations, message):
    rc, out = nginx.check_config(locations)
    assert rc != 0, out
    assert message in out, out


def test_chat_files_alias_is_the_store(nginx, store):
    api = "location /api/chat/ { chat_api; chat_upload_path %s; }\n" % store
    rc, out = nginx.check_config(
        api + "location /f/ { chat_files; alias /tmp/; }")
    assert rc != 0, out
    assert '"chat_files" alias "/tmp/" is no chat_upload_path' in out, out

    rc, out = nginx.check_config(
        api + "location /f/ { chat_files; root %s; }" % store)
    assert rc != 0, out
    assert '"chat_files" needs "alias" set to the chat_upload_path ' \
        'directory' in out, out

    for alias in (store, store + "/", store + "//"):
        rc, out = nginx.check_config(
            api + "location /f/ { chat_files; alias %s; }" % alias)
        assert rc == 0, out


def test_grace_at_least_a_second(nginx):
    rc, out = nginx.check_config("location /f/ { chat_files; alias /tmp/; }",
                                 http="chat_upload_grace 0s;")
    assert rc != 0, out
    assert '"chat_upload_grace" must be at least 1s' in out, out
