"""Review 16h: an outsider's attack on the content-addressed store, the
downloads and the sweep (schema 16, API 6).  Each test names the finding
it reproduces (R16H-n)."""

import os
import socket
import time

import pytest

from chatlib import direct, send
from test_files import (CHAT_ENV, attach, get, ok_get, sha, start, upload,
                        wait_until)
from test_uploads import blob, make_store, where


@pytest.fixture
def store():
    return make_store()


def raw_upload_dribbled(env, c, data, seconds):
    """POST uploads chunked: the body in one chunk, then the last chunk's
    line with an extension sent a byte at a time over `seconds` (nginx
    accepts chunk extensions and writes nothing for them).  The time the
    body ended, and the response."""
    s = socket.create_connection(("127.0.0.1", c.port), timeout=30)
    head = ("POST /api/chat/uploads HTTP/1.1\r\nHost: x\r\n"
            "Authorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n"
            "\r\n" % c.token).encode()
    s.sendall(head)
    time.sleep(0.3)
    s.sendall(b"%x\r\n" % len(data) + data + b"\r\n0;x=")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        s.sendall(b"a")
        time.sleep(0.2)
    s.sendall(b"\r\n\r\n")
    end = time.time()
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
    s.close()
    return end, buf


@pytest.mark.review16("R16H-1")
def test_r16h_1_stored_mtime_is_when_stored(env, store):
    """R16H-1: the sweep keeps a tomb whose mtime is within "fresh" of its
    transaction (R16F-8), on the word that a stored file's mtime is the
    end of its body.  It is the body's last write(): a body whose size
    fills nginx's buffers is written as it comes, and a client that then
    dribbles the last chunk's extension (or trailers) for up to
    chat_upload_timeout (an hour by default) gets a file stored with an
    mtime that old, which the sweep, handed its hash meanwhile, unlinks
    under a row that commits right after.  Fixed: the upload sets the
    file's mtime to now just before the rename."""
    start(env, store)
    c = env.conn("alice")
    # the chunk's size line and the data fill nginx's body buffers (8k or
    # 16k) exactly: the last write is that of the data
    data = blob(64 * 1024 - len(b"%x\r\n" % (64 * 1024 - 7)))
    end, resp = raw_upload_dribbled(env, c, data, 3)
    assert resp.startswith(b"HTTP/1.1 201"), resp
    mtime = os.stat(os.path.join(store, where(data))).st_mtime
    assert mtime >= end - 1, (mtime, end)


@pytest.mark.review16("R16H-2")
@pytest.mark.xfail(strict=True, reason="R16H-2, open: the sweep's fresh "
                   "window is min(grace, 60 s); a grace below the pool's "
                   "queue_timeout + query_timeout lets a row commit after "
                   "its file was judged old and unlinked")
def test_r16h_2_short_grace_unlinks_a_committing_upload(env, store):
    """R16H-2: the tomb check keeps a file stored within min(grace, a
    minute) of the sweep's transaction.  The directive allows a grace of
    1s, while the row of an upload commits up to queue_timeout +
    query_timeout (12 s by default) after the rename.  Bytes whose last
    row went (queued), stored again by an upload whose insert is slow
    (PostgreSQL busy: a trigger's sleep stands for it): the sweep finds no
    row, buries the file as older than the grace, and the upload then
    answers 201 with a row whose file is gone for good."""
    start(env, store, grace=1)
    c = env.conn("alice")
    data = blob(777)
    # its last row went (by the sweep, or delete_user_uploads): queued
    env.pg.query("INSERT INTO chat.uploads_gone (sha256) VALUES (%s)",
                 (sha(data),))
    env.pg.query("""
        CREATE FUNCTION chat.slow_insert() RETURNS trigger LANGUAGE plpgsql
        AS $$ BEGIN PERFORM pg_sleep(4.5); RETURN NEW; END $$;
        CREATE TRIGGER slow_insert BEFORE INSERT ON chat.uploads
        FOR EACH ROW EXECUTE FUNCTION chat.slow_insert();""")
    try:
        up = upload(c, data)
    finally:
        env.pg.query("DROP TRIGGER slow_insert ON chat.uploads; "
                     "DROP FUNCTION chat.slow_insert();")
    ok_get(c, up["id"], data)


def sweep_reads(pg, req):
    """One call of chat.api_upload_sweep (as nginx makes it), and the rows
    of chat.uploads and chat.message_uploads it read."""
    with pg.connect(autocommit=False) as conn:
        conn.execute("SELECT chat.api_upload_sweep('', %s::jsonb)", (req,))
        n = conn.execute(
            "SELECT coalesce(sum(coalesce(seq_tup_read, 0) "
            "+ coalesce(idx_tup_fetch, 0)), 0) FROM pg_stat_xact_user_tables "
            "WHERE relid IN ('chat.uploads'::regclass, "
            "'chat.message_uploads'::regclass)").fetchone()[0]
        conn.rollback()
    return n


@pytest.mark.review16("R16H-3")
def test_r16h_3_sweep_does_not_walk_attached_uploads(env, store):
    """R16H-3: every tick (each minute at the default grace) the sweep
    looks for uploads no message attaches among all uploads older than
    the grace, in created_at order, with a probe of chat.message_uploads
    for each: an installation's every attached upload (they are most of
    them, and only grow) is read again each minute, forever, to find the
    few unattached ones.  The work of a call should follow its limit,
    not the number of files ever attached.  Fixed: the candidates come
    from a partial index of chat.uploads.unattached_since, which the
    links' triggers keep."""
    start(env, store)
    c = env.conn("alice")
    m = send(c, direct(c, "bob")["id"], "files")
    n = 20000
    env.pg.query("""
        WITH u AS (
            INSERT INTO chat.uploads (owner_id, size, type, sha256,
                                      created_at)
            SELECT 'alice', 1, 'application/octet-stream',
                   encode(sha256(i::text::bytea), 'hex'),
                   now() - interval '2 days'
            FROM generate_series(1, %s) AS i
            RETURNING id)
        INSERT INTO chat.message_uploads (message_id, upload_id,
                                          conversation_id)
        SELECT %s, u.id, %s FROM u""", (n, m["id"], m["conversation_id"]))
    env.pg.query("ANALYZE chat.uploads; ANALYZE chat.message_uploads")
    reads = sweep_reads(env.pg, '{"grace": 86400, "limit": 100, '
                                '"retry": 60}')
    assert reads < 2000, reads


@pytest.mark.review16("R16H-4")
def test_r16h_4_user_erasure_and_a_message_delete_do_not_deadlock(env,
                                                                  store):
    """R16H-4: chat.delete_user_uploads locks the user's uploads (its
    delete), then their links (the cascade, at the statement's end); a
    message delete locks its links (its delete), then their uploads (the
    unattached_since trigger).  Run together on one message's uploads, each
    waits for the other: PostgreSQL kills one with "deadlock detected"
    (the host's erasure fails, or the user's delete answers 503).  A
    third session's share lock on the second upload makes the
    interleaving certain.  Fixed: both lock the uploads first, in id
    order."""
    import threading
    start(env, store)
    c = env.conn("alice")
    u1 = upload(c, blob(321))
    u2 = upload(c, blob(322))
    m = send(c, direct(c, "bob")["id"], "two files")
    attach(env.pg, m, u1["id"])
    attach(env.pg, m, u2["id"])

    errors = []

    def run(sql, params):
        try:
            env.pg.query(sql, params)
        except Exception as e:          # the deadlock's victim
            errors.append(str(e))

    def waiting(n):
        return env.pg.query("SELECT count(*) FROM pg_stat_activity "
                            "WHERE wait_event_type = 'Lock'")[0][0] == n

    with env.pg.connect(autocommit=False) as hold:
        hold.execute("SELECT 1 FROM chat.uploads WHERE id = %s FOR SHARE",
                     (u2["id"],))
        erase = threading.Thread(target=run, args=(
            "SELECT chat.delete_user_uploads('alice')", None))
        erase.start()
        wait_until(lambda: waiting(1), "the erasure waits")
        delete = threading.Thread(target=run, args=(
            "SELECT chat.api_message_delete('alice', %s::jsonb)",
            ('{"message_id": %d}' % m["id"],)))
        delete.start()
        wait_until(lambda: waiting(2), "the message delete waits")
        hold.commit()
    erase.join(15)
    delete.join(15)
    assert errors == []
    assert env.pg.query("SELECT count(*) FROM chat.uploads") == [(0,)]
    assert env.pg.query("SELECT deleted_at IS NOT NULL FROM chat.messages "
                        "WHERE id = %s", (m["id"],)) == [(True,)]


@pytest.mark.review16("R16H-3")
def test_r16h_3_unattached_since_follows_the_links(env, store):
    """chat.uploads.unattached_since, which the sweep's partial index
    reads: set at the upload, NULL once a message attaches it, still NULL
    while one of two messages that attach it goes, the time the last
    one went after that."""
    start(env, store)
    c = env.conn("alice")
    up = upload(c, blob(555))
    d = direct(c, "bob")["id"]

    def since():
        return env.pg.query("SELECT unattached_since IS NOT NULL, "
                            "unattached_since > now() - interval '1 minute' "
                            "FROM chat.uploads WHERE id = %s", (up["id"],))[0]
    assert since() == (True, True)
    m1, m2 = send(c, d, "one"), send(c, d, "two")
    attach(env.pg, m1, up["id"])
    attach(env.pg, m2, up["id"])
    assert since() == (False, None)
    c.ok("DELETE", "messages/%d" % m1["id"])
    assert since() == (False, None)
    env.pg.query("UPDATE chat.uploads SET created_at = now() - "
                 "interval '2 days' WHERE id = %s", (up["id"],))
    c.ok("DELETE", "messages/%d" % m2["id"])
    assert since() == (True, True)
