"""Review of the download route and the file lifecycle (issue 16 item 3,
review 16f).  Each test names the finding it reproduces (R16F-n)."""

import os

import pytest

from chatlib import assert_error, direct, group, send
from test_files import (CHAT_ENV, attach, get, not_found, ok_get, sha,
                        start, upload)
from test_uploads import blob, make_store, png, where


@pytest.fixture
def store():
    return make_store()


INERT = ("x-content-type-options", "content-security-policy")


def inert(r):
    return {h: r.header(h) for h in INERT}


SAFE = {"x-content-type-options": "nosniff",
        "content-security-policy": "sandbox"}


def test_r16f_1_row_type_is_not_trusted(env, store):
    """R16F-1: the type of the row goes into Content-Type as it is (only
    control characters are checked): a row saying text/html or
    image/svg+xml (the host's role, a restored backup, a later API that
    writes types) is served as such, an SVG inline.  Only the sniffer's
    types should ever be served; anything else is
    application/octet-stream, as an attachment."""
    start(env, store)
    c = env.conn("alice")
    data = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>\n'
    up = upload(c, data, "x.svg")
    for hostile in ("text/html", "image/svg+xml", "text/xml",
                    "application/javascript"):
        env.pg.query("UPDATE chat.uploads SET type = %s WHERE id = %s",
                     (hostile, up["id"]))
        r = ok_get(c, up["id"], data)
        assert r.header("content-type") == "application/octet-stream", r
        assert r.header("content-disposition").startswith("attachment;"), r


def test_r16f_2_error_answers_of_the_store_are_inert(env, store):
    """R16F-2: every answer of the route carries nosniff and the sandbox,
    also the static module's refusals after the redirect (416 of a range
    past the end, 412 of If-Match) whose headers nginx cleans.  Fixed: a
    header filter of the chat_files location adds them when missing."""
    start(env, store)
    c = env.conn("alice")
    data = blob(1000)
    up = upload(c, data, "a.bin")
    etag = '"%s"' % sha(data)

    r = get(c, up["id"], [("If-None-Match", etag)])
    assert r.status == 304, r
    assert inert(r) == SAFE, r

    r = get(c, up["id"], [("Range", "bytes=10-19")])
    assert r.status == 206, r
    assert inert(r) == SAFE, r

    r = get(c, up["id"], method="HEAD")
    assert r.status == 200 and inert(r) == SAFE, r

    r = get(c, up["id"], [("Range", "bytes=0-1,5-6")])
    assert r.status == 206, r
    assert inert(r) == SAFE, r

    r = get(c, up["id"], [("Range", "bytes=5000-")])
    assert r.status == 416, r
    assert inert(r) == SAFE, r

    r = get(c, up["id"], [("If-Match", '"%s"' % ("0" * 64))])
    assert r.status == 412, r
    assert inert(r) == SAFE, r


def test_r16f_3_no_heuristic_freshness(env, store):
    """R16F-3 (informational, after R16F-7's fix): a file's answer is
    "Cache-Control: private" without max-age; with Last-Modified gone a
    browser has nothing to compute a heuristic lifetime from, so it
    revalidates (and is refused once its rights went).  "private,
    no-cache" would say so explicitly."""
    start(env, store)
    c = env.conn("alice")
    data = blob(100)
    up = upload(c, data)
    r = ok_get(c, up["id"], data)
    assert r.header("cache-control") == "private"
    assert r.header("last-modified") is None and r.header("expires") is None


def test_r16f_bidi_controls_in_a_name(env, store):
    """Not a finding: a name with U+202E (right-to-left override, which
    would show "invoice\u202efdp.exe" as "invoiceexe.pdf") loses it at
    upload (upload.c), so filename* never carries it."""
    start(env, store)
    c = env.conn("alice")
    name = "invoice\u202efdp.exe"
    r = c.request("POST", "uploads?name=" +
                  __import__("urllib.parse").parse.quote(name, safe=""),
                  body=b"MZ plain\n")
    if r.status == 201:
        up = r.json()["upload"]
        g = get(c, up["id"])
        assert "%E2%80%AE" not in g.header("content-disposition"), g
    else:
        assert r.status == 400, r


def test_r16f_member_who_joined_later(env, store):
    """Not a finding: a member added after the message downloads its file,
    as they read the message in the history (no joined_at filter there
    either)."""
    start(env, store)
    alice, bob, carol = (env.conn(u) for u in ("alice", "bob", "carol"))
    data = blob(321)
    up = upload(alice, data)
    g = group(alice, "late", ["bob"])
    attach(env.pg, send(alice, g["id"], "f"), up["id"])
    not_found(carol, up["id"])
    alice.ok("POST", "conversations/%d/members" % g["id"], 201,
             obj={"user_id": "carol"})
    ok_get(carol, up["id"], data)


def test_r16f_act_as(env, store):
    """Not a finding: a service acting for a user has that user's rights,
    no more; the service itself owns nothing and is a member of nothing."""
    from chatlib import make_token
    from test_files import LOCATIONS
    env.locations = LOCATIONS.replace("@STORE@", store)
    env.start("chat_upload_path %s;" % store,
              http="chat_service_claim scope chat:service;")
    alice, bob = env.conn("alice"), env.conn("bob")
    data = blob(222)
    up = upload(alice, data)
    attach(env.pg, send(alice, direct(alice, "bob")["id"], "f"), up["id"])
    svc = make_token(env.ng.key, "svc:shop", scope="chat:service")

    def as_(user):
        h = [("Chat-Act-As", user)] if user else []
        return bob.request("GET", "files/%d" % up["id"], headers=h,
                           token=svc)

    r = as_("bob")
    assert (r.status, r.body) == (200, data), r
    assert as_("carol").status == 404
    assert as_(None).status == 404
    # a user may not act for another
    r = bob.request("GET", "files/%d" % up["id"],
                    headers=[("Chat-Act-As", "alice")])
    assert r.status == 403, r


def test_r16f_5_a_deleted_message_gives_its_files_the_grace(env, store):
    """R16F-5: docs/operations.md says a message's files go "by a
    message's delete followed by the grace"; the sweep measures the grace
    from the upload's created_at, so an upload older than the grace goes
    at the very next sweep after its message is deleted (no time to
    attach it again, as item 2 allows its owner to).  The sweep is called
    here as nginx calls it, with a grace of an hour.  Fixed: the grace
    counts from the later of the upload and the last time a message's
    link to it went (chat.uploads.unattached_since)."""
    start(env, store)
    alice, bob = env.conn("alice"), env.conn("bob")
    data = blob(444)
    up = upload(alice, data)
    d = direct(alice, "bob")
    m = send(alice, d["id"], "f")
    attach(env.pg, m, up["id"])
    env.pg.query("UPDATE chat.uploads SET created_at = now() - "
                 "interval '2 hours' WHERE id = %s", (up["id"],))
    alice.ok("DELETE", "messages/%d" % m["id"])

    sweep = ("SELECT chat.api_upload_sweep('', %s)",
             ('{"grace": 3600, "limit": 100, "retry": 60}',))
    env.pg.query(*sweep)
    assert env.pg.query("SELECT id FROM chat.uploads") == [(up["id"],)]
    ok_get(alice, up["id"], data)
    # attached again, and its message deleted again: the grace again
    m = send(alice, d["id"], "again")
    attach(env.pg, m, up["id"])
    env.pg.query("UPDATE chat.uploads SET unattached_since = now() - "
                 "interval '2 hours' WHERE id = %s", (up["id"],))
    env.pg.query(*sweep)
    alice.ok("DELETE", "messages/%d" % m["id"])
    env.pg.query(*sweep)
    assert env.pg.query("SELECT id FROM chat.uploads") == [(up["id"],)]
    # once both are older than the grace, it goes
    env.pg.query("UPDATE chat.uploads SET unattached_since = now() - "
                 "interval '2 hours' WHERE id = %s", (up["id"],))
    env.pg.query(*sweep)
    assert env.pg.query("SELECT id FROM chat.uploads") == []


@pytest.mark.allow_log(r"is not in a chat_files location")
def test_r16f_6_a_server_without_the_chat_files_location(env, store):
    """R16F-6: chat_files is one URI for the http block, but nothing checks
    that a server with chat_api (and a chat_upload_path) has that
    location: nginx -t passes, and a download there is redirected to
    whatever location of that server matches the URI (here "/", which
    could be a proxy_pass given the client's bearer token, or a root).
    Fixed: such a redirected request is a 404 with a line in the log."""
    from conftest import free_port
    port = free_port()
    from test_files import LOCATIONS
    env.locations = LOCATIONS.replace("@STORE@", store)
    env.start("chat_upload_path %s;" % store,
              http="server { listen 127.0.0.1:%d; "
                   "location /api/chat/ { chat_api; "
                   "chat_upload_path %s; } "
                   "location / { return 200 \"elsewhere: $uri\\n\"; } }"
                   % (port, store))
    c = env.conn("alice")
    data = blob(555)
    up = upload(c, data)
    import http.client
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h.request("GET", "/api/chat/files/%d" % up["id"],
              headers={"Authorization": "Bearer " + env.token("alice")})
    r = h.getresponse()
    body = r.read()
    assert not body.startswith(b"elsewhere"), (r.status, body)
    assert r.status == 404, (r.status, body)
    env.ng.wait_log(r'chat files: "/_chat_files/%s" is not in a chat_files '
                    r'location' % where(data))
    # the server that has it still serves
    ok_get(c, up["id"], data)


@pytest.mark.parametrize("name", ["\U0001f600" * 255, "%" * 255,
                                  "\"" * 254 + "x"])
def test_r16f_long_names(env, store, name):
    """Not a finding: the longest names, each byte at its most expensive
    in Content-Disposition (4-byte UTF-8, percent-encoded: 12 bytes a
    character), fit and are exact."""
    from urllib.parse import quote
    start(env, store)
    c = env.conn("alice")
    r = c.request("POST", "uploads?name=" + quote(name, safe=""),
                  body=b"some text\n")
    assert r.status == 201, r
    up = r.json()["upload"]
    r = ok_get(c, up["id"], b"some text\n")
    cd = r.header("content-disposition")
    ascii_ = "".join("_" if ch in "\"\\%" or ord(ch) >= 0x80 else ch
                     for ch in name)
    assert cd == "attachment; filename=\"%s\"; filename*=UTF-8''%s" \
        % (ascii_, quote(name, safe="!#$&+-.^_`|~")), r
    c.alive()


def test_r16f_7_last_modified_tells_of_others_uploads(env, store):
    """R16F-7: the same bytes are stored once, and an upload that finds
    them sets the file's time (for the sweep).  Last-Modified is that
    time: a user who uploaded a document watches its Last-Modified (or
    asks with If-Modified-Since) and learns that, and when, somebody else
    uploaded the very same bytes (a dedup side channel: guess a form
    letter's blanks, upload every guess, see which one moves).  Fixed:
    no Last-Modified (the ETag validates), If-Modified-Since never 304."""
    start(env, store)
    alice, bob = env.conn("alice"), env.conn("bob")
    data = blob(777)
    up = upload(alice, data)
    past = 1_000_000_000
    os.utime(os.path.join(store, where(data)), (past, past))

    def seen():
        r = ok_get(alice, up["id"], data)
        ims = get(alice, up["id"], [("If-Modified-Since",
                                     "Sun, 09 Sep 2001 01:46:41 GMT")])
        return r.header("last-modified"), ims.status

    before = seen()
    upload(bob, data)
    assert seen() == before
    assert before == (None, 200)
    # the ETag still validates
    r = get(alice, up["id"], [("If-None-Match", '"%s"' % sha(data))])
    assert r.status == 304, r


def test_r16f_10_a_send_linking_while_the_sweep_runs(env, store):
    """R16F-10: the sweep deleted its candidates in one statement, whose
    NOT EXISTS read the links at the statement's snapshot: a send whose
    link committed after that snapshot but before the row's lock (the
    link's key check holds a lock only until its commit) was not seen,
    the upload was deleted and the ON DELETE CASCADE removed the new link
    (the message keeps an attachment whose file is then unlinked).  That
    interleaving cannot be forced from outside; fixed by locking the
    candidates first and deleting them in a statement of its own (a new
    snapshot, after the locks).  What can be forced: a link in flight
    (its key lock held) keeps the upload, and the sweep goes on."""
    start(env, store)
    alice = env.conn("alice")
    data = blob(888)
    up = upload(alice, data)
    m = send(alice, direct(alice, "bob")["id"], "f")
    env.pg.query("UPDATE chat.uploads SET created_at = now() - "
                 "interval '2 hours' WHERE id = %s", (up["id"],))
    sweep = ("SELECT chat.api_upload_sweep('', %s)",
             ('{"grace": 3600, "limit": 100, "retry": 60}',))
    with env.pg.connect(autocommit=False) as tx:
        tx.execute("INSERT INTO chat.message_uploads (message_id, "
                   "upload_id, conversation_id) VALUES (%s, %s, %s)",
                   (m["id"], up["id"], m["conversation_id"]))
        env.pg.query(*sweep)
        assert env.pg.query("SELECT id FROM chat.uploads") == [(up["id"],)]
        tx.commit()
    env.pg.query(*sweep)
    assert env.pg.query("SELECT upload_id FROM chat.message_uploads") == \
        [(up["id"],)]
    ok_get(env.conn("bob"), up["id"], data)


def test_r16f_client_gone_during_the_check(env, store):
    """Not a finding: clients that close (or reset) while storage answers
    the check, over and over: no alert, no leak, the worker goes on."""
    import socket
    import struct
    start(env, store)
    c = env.conn("alice")
    data = blob(4096)
    up = upload(c, data)
    req = c.build("GET", "files/%d" % up["id"])
    for i in range(30):
        s = socket.create_connection(("127.0.0.1", env.ng.port))
        s.sendall(req)
        if i % 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                         struct.pack("ii", 1, 0))
        s.close()
    ok_get(c, up["id"], data)
    c.alive()


# --------------------------------------------------------------------------
# The sweep's queue (R16F-11) and its race with a re-upload (R16F-8)

def gone(pg):
    return pg.query("SELECT sha256, tries, taken IS NOT NULL, "
                    "due_at > now() FROM chat.uploads_gone")


@pytest.mark.allow_log(r"upload sweep: rename\(\) .* failed, retried later")
def test_r16f_11_a_failed_unlink_is_retried_once_fixed(env, store):
    """R16F-11: chat.api_upload_sweep deleted the chat.uploads_gone rows
    it handed out, before nginx unlinked anything: a failed unlink (the
    directory not writable, the share down) left the file for good.
    Fixed: a file leaves the queue once nginx has said it is gone; a
    failure is logged and handed out again later, not at once."""
    from test_files import wait_until
    start(env, store, grace=1)
    c = env.conn("alice")
    data = blob(1234)
    upload(c, data)
    path = os.path.join(store, where(data))
    cd = os.path.dirname(path)
    os.chmod(cd, 0o500)
    try:
        env.ng.wait_log(r'upload sweep: rename\(\) "%s" to ".*" failed, '
                        r'retried later' % path, timeout=15)
        wait_until(lambda: env.pg.query("SELECT tries FROM "
                                        "chat.uploads_gone")[0][0] >= 2,
                   "handed out twice")
        assert os.path.exists(path)
        assert env.pg.query("SELECT count(*) FROM chat.uploads") == [(0,)]
        # not in a tight loop: due again later, one log line a try
        (sha_, tries, taken, later), = gone(env.pg)
        assert sha_ == sha(data) and taken and later
        assert env.ng.error_log().count("failed, retried later") <= tries
    finally:
        os.chmod(cd, 0o700)
    wait_until(lambda: not os.path.exists(path), "unlinked once fixed", 30)
    wait_until(lambda: gone(env.pg) == [], "off the queue")
    assert os.listdir(os.path.join(store, "tmp")) == []


def test_r16f_11_a_missing_file_leaves_the_queue(env, store):
    """A file already gone (removed by hand, a store restored without it)
    is as good as unlinked."""
    from test_files import wait_until
    start(env, store, grace=1)
    data = blob(1235)
    upload(env.conn("alice"), data)
    path = os.path.join(store, where(data))
    os.unlink(path)
    wait_until(lambda: env.pg.query("SELECT count(*) FROM chat.uploads")
               == [(0,)], "the row swept")
    wait_until(lambda: gone(env.pg) == [], "off the queue")


def test_r16f_11_the_queue_as_nginx_calls_it(env, store):
    """The SQL protocol, called as nginx calls it (nginx's own sweep, at
    the default grace, does not run within the test): a file handed out
    stays queued until a call says it is done with the token it was
    handed out under; a row of the same bytes that went meanwhile queues
    it again; a failure comes back after "retry", doubled."""
    import json
    start(env, store)
    data = blob(1236)
    upload(env.conn("alice"), data)
    h = sha(data)

    def sweep(**kw):
        req = dict(grace=3600, limit=100, retry=60, **kw)
        return env.pg.query("SELECT chat.api_upload_sweep('', %s)",
                            (json.dumps(req),))[0][0]["ok"]

    env.pg.query("DELETE FROM chat.uploads")
    a = sweep()
    assert a["files"] == [h] and a["more"] is False
    assert gone(env.pg) == [(h, 1, True, True)]
    # not due again: nothing handed out; another token's word is ignored
    b = sweep(token=a["token"] + 1, done=[h])
    assert b["files"] == [] and gone(env.pg) == [(h, 1, True, True)]
    # due again (a failure): handed out again, under a new token, later
    env.pg.query("UPDATE chat.uploads_gone SET due_at = now()")
    c = sweep()
    assert c["files"] == [h] and c["token"] != a["token"]
    left = env.pg.query("SELECT due_at - now() FROM chat.uploads_gone")
    assert 60 < left[0][0].total_seconds() <= 120
    # the old token says nothing any more
    sweep(token=a["token"], done=[h])
    assert len(gone(env.pg)) == 1
    # a row of the same bytes came and went meanwhile: queued again
    upload(env.conn("bob"), data)
    env.pg.query("DELETE FROM chat.uploads")
    assert gone(env.pg) == [(h, 2, False, True)]
    sweep(token=c["token"], done=[h])
    assert len(gone(env.pg)) == 1
    # handed out, done: off the queue
    env.pg.query("UPDATE chat.uploads_gone SET due_at = now()")
    d = sweep()
    assert d["files"] == [h]
    sweep(token=d["token"], done=[h])
    assert gone(env.pg) == []
    # a row has the bytes again: off the queue, nothing handed out
    upload(env.conn("carol"), data)
    upload(env.conn("dave"), data)
    env.pg.query("DELETE FROM chat.uploads WHERE owner_id = 'carol'")
    assert sweep()["files"] == [] and gone(env.pg) == []


HOLD = 1616


def test_r16f_8_a_re_upload_during_the_sweep_keeps_its_file(env, store):
    """R16F-8: the sweep found no row for a file, then checked its mtime
    and unlinked it; an upload of the same bytes that stored the file
    (rename) between the two, its row not in yet, lost its file.  The
    moment between stat() and unlink() cannot be hit from outside; what
    can: the upload's file stored, its row held back (a trigger waits on
    an advisory lock the test holds), the old row swept meanwhile and the
    file handed out.  The sweep renames it to a tomb, sees it was written
    after its transaction began (less the grace) and puts it back."""
    from test_files import wait_until
    start(env, store, grace=8)
    alice, bob = env.conn("alice"), env.conn("bob")
    data = blob(1237)
    d = direct(alice, "bob")
    m = send(alice, d["id"], "f")
    old = upload(alice, data)
    attach(env.pg, m, old["id"])
    env.pg.query("""CREATE OR REPLACE FUNCTION public.test_hold_upload()
                    RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN PERFORM pg_advisory_xact_lock_shared(%d);
                    RETURN NEW; END $$""" % HOLD)
    env.pg.query("CREATE TRIGGER test_hold BEFORE INSERT ON chat.uploads "
                 "FOR EACH ROW EXECUTE FUNCTION public.test_hold_upload()")
    lock = env.pg.connect()
    try:
        lock.execute("SELECT pg_advisory_lock(%s)", (HOLD,))
        path = os.path.join(store, where(data))
        before = os.stat(path).st_ino
        bob.send(bob.build("POST", "uploads", body=data))
        wait_until(lambda: os.stat(path).st_ino != before,
                   "bob's file renamed into the store")
        # the old row's grace over: swept, the file handed out
        env.pg.query("DELETE FROM chat.message_uploads")
        env.pg.query("UPDATE chat.uploads SET created_at = now() - "
                     "interval '1 hour', unattached_since = now() - "
                     "interval '1 hour' WHERE id = %s", (old["id"],))
        env.ng.wait_log(r'upload sweep: "%s" was stored again just now: '
                        r'kept' % path, timeout=15)
        assert os.path.exists(path)
    finally:
        lock.execute("SELECT pg_advisory_unlock(%s)", (HOLD,))
        lock.close()
        env.pg.query("DROP TRIGGER IF EXISTS test_hold ON chat.uploads")
        env.pg.query("DROP FUNCTION IF EXISTS public.test_hold_upload()")
    r = bob.read()
    assert r.status == 201, r
    up = r.json()["upload"]
    # its row in: off the queue at the next hand-out, the file kept
    wait_until(lambda: gone(env.pg) == [], "off the queue")
    ok_get(bob, up["id"], data)
    assert os.listdir(os.path.join(store, "tmp")) == []
