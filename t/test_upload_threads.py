"""chat_upload_threads (R16-11, R16F-9): the upload store's filesystem
calls (the mkdirs of ab/cd/, the mtime, the rename; the sweep's renames,
stats, unlinks and its crawl's listings) in one of nginx's thread pools,
so that a stalled network filesystem stalls a thread, not the worker.

Each test runs inline (no directive), in the built-in "default" pool and
in a pool of its own defined by thread_pool in the main context: the
same results.  The whole of test_uploads.py, test_files.py and the
review files also run in a pool with CHAT_UPLOAD_THREADS=default.
"""

import os
import socket
import time

import pytest

from chatlib import assert_error, direct, send
from test_files import LOCATIONS, attach, ok_get, orphan_file
from test_uploads import (NOBODY, blob, make_store, png, rows, sha, stored,
                          temp_files, upload, wait_until, where)


CHAT_ENV = dict(zone="16m")

POOLS = [None, "default", "chatfs"]


@pytest.fixture
def store():
    return make_store()


@pytest.fixture(autouse=True)
def no_env_pool(monkeypatch):
    # the directive is this file's own
    monkeypatch.delenv("CHAT_UPLOAD_THREADS", raising=False)


def start(env, store, pool, http="", loc=""):
    env.locations = LOCATIONS.replace("@STORE@", store)
    main = ""
    if pool:
        http += "chat_upload_threads %s;" % pool
        if pool != "default":
            main = "thread_pool %s threads=2;" % pool
    return env.start("chat_upload_path %s; %s" % (store, loc), http=http,
                     main=main)


def ok(c, data, name=None):
    r = upload(c, data, name)
    assert r.status == 201, r
    return r.json()["upload"]


@pytest.mark.parametrize("pool", POOLS)
def test_upload_again_and_download(env, store, pool):
    """An upload, the same bytes again (the rename over the first file),
    both downloaded."""
    start(env, store, pool)
    data = png(6, 5)
    a = ok(env.conn("alice"), data, "a.png")
    assert (a["width"], a["height"], a["type"]) == (6, 5, "image/png")
    b = ok(env.conn("bob"), data, "b.png")
    assert a["id"] != b["id"]
    assert stored(store) == {where(data): data}
    assert temp_files(store) == []
    assert [r[4] for r in rows(env.pg)] == [sha(data)] * 2
    ok_get(env.conn("alice"), a["id"], data)
    ok_get(env.conn("bob"), b["id"], data)
    # the file's mtime is the store's time (R16H-1)
    assert abs(os.path.getmtime(os.path.join(store, where(data)))
               - time.time()) < 60


@pytest.mark.parametrize("pool", POOLS)
def test_store_fails(env, store, pool):
    """mkdir() of ab/cd/ refused: 503, no row, the temporary file gone,
    the error logged from the event loop."""
    start(env, store, pool)
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
    assert "chat upload: mkdir() \"%s\" failed" % os.path.join(
        sub, sha(data)[2:4]) in env.ng.logs()


@pytest.mark.parametrize("pool", POOLS)
def test_client_leaves_while_storing(env, store, pool):
    """Clients that send a whole body and leave at once, while the store's
    task may run: the worker lives on, no temporary file stays, and what
    was stored is whole."""
    start(env, store, pool, loc="chat_upload_concurrency 100;")
    pids = env.ng.worker_pids()
    token = env.token("alice")
    bodies = [blob(20000 + i) for i in range(20)]
    for data in bodies:
        s = socket.create_connection(("127.0.0.1", env.ng.port))
        s.sendall(("POST /api/chat/uploads HTTP/1.1\r\nHost: x\r\n"
                   "Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n"
                   % (token, len(data))).encode() + data)
        s.shutdown(socket.SHUT_RDWR)
        s.close()
    wait_until(lambda: temp_files(store) == [], "the temporary files gone")
    for path, data in stored(store).items():
        assert path == where(data)
    # the same worker answers on (alice's count may be in flight still)
    data = png(3, 3)
    up = ok(env.conn("bob"), data)
    ok_get(env.conn("bob"), up["id"], data)
    assert env.ng.worker_pids() == pids
    env.ng.allow_log.append(r"client prematurely closed|"
                            r"Connection reset by peer|Broken pipe")


# --------------------------------------------------------------------------
# the sweep (worker 0): its crawl and its unlinks in the same task

def gone(pg):
    return pg.query("SELECT count(*) FROM chat.uploads_gone") == [(0,)]


@pytest.mark.parametrize("pool", POOLS)
def test_sweep_removes(env, store, pool):
    """A lone upload goes after the grace, an attached one stays, and
    files no row names (more than a call's worth in one directory) are
    crawled and go too."""
    start(env, store, pool, http="chat_upload_grace 1s;")
    c = env.conn("alice")
    lone, kept = blob(701), blob(702)
    ok(c, lone)
    k = ok(c, kept)
    attach(env.pg, send(c, direct(c, "bob")["id"], "f"), k["id"])
    old = time.time() - 3600
    orphans = [orphan_file(store, b"x", old, "0000" + os.urandom(30).hex())
               for _ in range(150)]
    lone_path = os.path.join(store, where(lone))
    wait_until(lambda: not os.path.exists(lone_path), "the lone file", 30)
    wait_until(lambda: not any(os.path.exists(p) for p in orphans),
               "the orphans unlinked", 30)
    wait_until(lambda: gone(env.pg), "the queue empty")
    assert [r[4] for r in rows(env.pg)] == [sha(kept)]
    ok_get(c, k["id"], kept)
    assert os.listdir(os.path.join(store, "tmp")) == []


@pytest.mark.parametrize("pool", POOLS)
def test_sweep_failed_unlink_retried(env, store, pool):
    """A rename to the tomb refused: logged (from the event loop's
    results, once a try), the file stays queued, goes once fixed."""
    start(env, store, pool, http="chat_upload_grace 1s;")
    data = blob(1234)
    ok(env.conn("alice"), data)
    path = os.path.join(store, where(data))
    cd = os.path.dirname(path)
    os.chmod(cd, 0o500)
    env.ng.allow_log.append(r"upload sweep: rename\(\) .* failed, "
                            r"retried later")
    try:
        env.ng.wait_log(r'upload sweep: rename\(\) "%s" to ".*" failed, '
                        r'retried later' % path, timeout=15)
        assert os.path.exists(path)
    finally:
        os.chmod(cd, 0o700)
    wait_until(lambda: not os.path.exists(path), "unlinked once fixed", 30)
    wait_until(lambda: gone(env.pg), "off the queue")


@pytest.mark.parametrize("pool", [None, "default"])
def test_sweep_across_reloads(env, store, pool):
    """Reloads while the sweep's tasks run: the old worker 0 exits with a
    task in flight or its completion pending (nothing touched after),
    the new one sweeps on."""
    start(env, store, pool, http="chat_upload_grace 1s;")
    old = time.time() - 3600
    orphans = [orphan_file(store, b"y", old, "0000" + os.urandom(30).hex())
               for _ in range(300)]
    for _ in range(4):
        env.ng.reload()
        time.sleep(0.3)
    wait_until(lambda: not any(os.path.exists(p) for p in orphans),
               "the orphans unlinked", 60)
    data = png(2, 3)
    up = ok(env.conn("alice"), data)
    ok_get(env.conn("alice"), up["id"], data)


def test_unknown_pool(nginx):
    code, out = nginx.check_config(
        "location / { return 204; }",
        http="chat_upload_threads nosuch;")
    assert code != 0
    assert 'unknown thread pool "nosuch"' in out, out


def test_duplicate(nginx):
    code, out = nginx.check_config(
        "location / { return 204; }",
        http="chat_upload_threads default; chat_upload_threads default;")
    assert code != 0
    assert '"chat_upload_threads" directive is duplicate' in out, out


def test_main_only(nginx):
    code, out = nginx.check_config(
        "location / { chat_upload_threads default; }")
    assert code != 0
    assert '"chat_upload_threads" directive is not allowed here' in out, out
