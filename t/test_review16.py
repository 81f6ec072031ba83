"""Review of the upload route (issue 16 item 1): each test reproduces one
finding (R16-n in the review report) against a real nginx and PostgreSQL.
No timing is asserted: a read that never gets its answer fails after the
harness's TIMEOUT.
"""

import os

import pytest

from chatlib import API_LOCATIONS, TIMEOUT
from chatlib import assert_error
from test_uploads import (blob, make_store, ok_upload, png, rows, sha,
                          start, stored, temp_files, upload, wait_until,
                          where)


CHAT_ENV = dict(locations=API_LOCATIONS, timeout=TIMEOUT, zone="16m")

NOBODY = 65534


@pytest.fixture
def store():
    return make_store()


def age(store, seconds):
    """Every file in tmp/ made seconds older."""
    import time
    tmp = os.path.join(store, "tmp")
    for name in os.listdir(tmp):
        then = time.time() - seconds
        os.utime(os.path.join(tmp, name), (then, then))


def first_response_line(c):
    """The status line of the first thing the server answers."""
    buf = b""
    c.sock.settimeout(TIMEOUT)
    while b"\r\n" not in buf:
        chunk = c.sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\r\n", 1)[0].decode("latin-1")


# --------------------------------------------------------------------------
# R16-1: chat_upload_path raises client_max_body_size for the whole chat_api
# location, so every JSON route reads a chunked body of up to
# chat_upload_max_size into chat_upload_path/tmp before its 413 (no upload
# rate or quota spent).  A JSON body must stop at chat_max_message_size.

@pytest.mark.review16("R16-1")
def test_r16_1_json_route_chunked_body_stops_at_max_message_size(env, store):
    start(env, store, "chat_upload_max_size 64m; chat_max_message_size 1k;")
    c = env.conn("alice")
    # a chunk of 8 MB announced, 256 KB of it sent, never finished
    c.send(c.build("POST", "conversations", headers=[
        ("Content-Type", "application/json"),
        ("Transfer-Encoding", "chunked")]) + b"800000\r\n")
    try:
        c.send(b"[" + b" " * (256 * 1024))
    except OSError:
        pass            # refused while sending: what a fix does
    line = first_response_line(c)
    assert line.startswith("HTTP/1.1 413"), line
    wait_until(lambda: temp_files(store) == [], "tmp/ empty")


# --------------------------------------------------------------------------
# R16-2: a refusal before the body (429 files per minute, a bad name) goes
# through ngx_http_discard_request_body, which answers "Expect:
# 100-continue" with 100 Continue: the client is invited to send the whole
# body (of any size) only for it to be read and thrown away.

@pytest.mark.review16("R16-2")
def test_r16_2_rate_limited_upload_does_not_invite_the_body(env, store):
    start(env, store, "chat_upload_rate 1r/m; chat_upload_max_size 100m;")
    ok_upload(env.conn("alice"), png(1, 1))
    c = env.conn("alice")
    c.send(c.build("POST", "uploads", headers=[
        ("Content-Length", str(50 * 1024 * 1024)),
        ("Expect", "100-continue")]))
    line = first_response_line(c)
    assert line.startswith("HTTP/1.1 429"), line


@pytest.mark.review16("R16-2")
def test_r16_2_bad_name_does_not_invite_the_body(env, store):
    start(env, store, "chat_upload_max_size 100m;")
    c = env.conn("alice")
    c.send(c.build("POST", "uploads?name=a%FFb", headers=[
        ("Content-Length", str(50 * 1024 * 1024)),
        ("Expect", "100-continue")]))
    line = first_response_line(c)
    assert line.startswith("HTTP/1.1 400"), line


# --------------------------------------------------------------------------
# R16-3: a file already at ab/cd/<sha256> is trusted on its size alone
# (stat(), which follows symlinks): other bytes of the same size, or a
# symlink to any file of that size, stay in the store under the hash of
# the bytes uploaded (and would be served for them).  The same holds for a
# file torn by a crash (no fsync): every later upload of those bytes keeps
# the torn one.  Fixed: the new file is renamed over whatever is there.

def plant(store, data, make):
    d = os.path.join(store, where(data)[:5])
    os.makedirs(d, exist_ok=True)
    os.chown(os.path.join(store, where(data)[:2]), NOBODY, NOBODY)
    os.chown(d, NOBODY, NOBODY)
    make(os.path.join(store, where(data)))


@pytest.mark.review16("R16-3")
def test_r16_3_same_size_other_bytes_replaced(env, store):
    start(env, store)
    data = png(4, 4)
    other = b"X" * len(data)

    def make(path):
        with open(path, "wb") as f:
            f.write(other)
        os.chown(path, NOBODY, NOBODY)
    plant(store, data, make)

    up = ok_upload(env.conn("alice"), data, "a.png")
    assert rows(env.pg)[0][4] == sha(data) and up["size"] == len(data)
    assert stored(store) == {where(data): data}


@pytest.mark.review16("R16-3")
def test_r16_3_torn_file_replaced_and_a_reader_keeps_the_old(env, store):
    """A file torn by a crash (shorter) is replaced by the next upload of
    those bytes; a reader that opened the old file keeps reading it (a
    local filesystem: the rename unlinks the old inode, open files keep
    it)."""
    start(env, store)
    data = blob(5000)

    def make(path):
        with open(path, "wb") as f:
            f.write(data[:1000])
        os.chown(path, NOBODY, NOBODY)
    plant(store, data, make)
    path = os.path.join(store, where(data))
    with open(path, "rb") as reader:
        ok_upload(env.conn("alice"), data)
        ok_upload(env.conn("bob"), data)
        assert reader.read() == data[:1000]
    assert stored(store) == {where(data): data}
    assert temp_files(store) == []


@pytest.mark.review16("R16-3")
def test_r16_3_symlink_in_store_replaced(env, store):
    start(env, store)
    data = png(4, 4)
    # any file the workers can read, here one beside the store's tree
    secret = os.path.join(store, "secret")
    with open(secret, "wb") as f:
        f.write(b"S" * len(data))
    os.chmod(secret, 0o644)
    plant(store, data, lambda path: os.symlink(secret, path))

    ok_upload(env.conn("alice"), data, "a.png")
    with open(secret, "rb") as f:
        assert f.read() == b"S" * len(data)
    path = os.path.join(store, where(data))
    assert not os.path.islink(path)
    with open(path, "rb") as f:
        assert f.read() == data


# --------------------------------------------------------------------------
# R16-4: names lose bidirectional marks, but not U+061C ARABIC LETTER MARK
# (a bidi formatting character like U+200E/U+200F).

@pytest.mark.review16("R16-4")
def test_r16_4_arabic_letter_mark_removed(env, store):
    start(env, store)
    up = ok_upload(env.conn("alice"), png(2, 2), "abc%D8%9Cfdp.exe")
    assert up["name"] == "abcfdp.exe"


# --------------------------------------------------------------------------
# regressions that pass (kept: they pin what the review checked)

def test_r16_hash_over_tiny_chunks_and_the_head_boundary(env, store):
    """1-byte chunks, zero-size pieces, and sizes around the 64 KB head:
    the row's hash and size are those of the stored bytes."""
    start(env, store, "chat_upload_rate off;")
    c = env.conn("alice")
    for n in (65535, 65536, 65537):
        data = b"a" * (n - 1) + b"\n"
        up = ok_upload(c, data)
        assert up["size"] == n and up["type"].startswith("text/plain"), up
    # a text whose last character is cut at byte 65536 of a longer file
    data = b"a" * 65535 + "é".encode() + b"b"
    assert ok_upload(c, data)["type"].startswith("text/plain")
    # exactly 65536 bytes ending in half a character: not text
    data = b"a" * 65535 + b"\xc3"
    assert ok_upload(c, data)["type"] == "application/octet-stream"
    data = png(3, 3) + blob(300)
    chunks = [data[i:i + 1] for i in range(len(data))]
    ok_upload(c, None, chunks=chunks)
    got = [r for r in rows(env.pg) if r[4] == sha(data)]
    assert got and got[0][1] == len(data) and got[0][3] == "image/png"
    assert stored(store)[where(data)] == data
    assert temp_files(store) == []


def test_r16_pipelined_after_short_content_length(env, store):
    """A body longer than its Content-Length: the rest is the next
    request, not part of the file."""
    start(env, store)
    c = env.conn("alice")
    data = png(2, 2)
    nxt = c.build("GET", "conversations")
    c.send(c.build("POST", "uploads", body=data) + nxt)
    r = c.read()
    assert r.status == 201, r
    assert r.json()["upload"]["size"] == len(data)
    r2 = c.read()
    assert r2.status == 200, r2
    assert stored(store) == {where(data): data}


@pytest.mark.review16("R16-2")
def test_r16_2_no_token_does_not_invite_the_body(env, store):
    """The same for the route's 401 (api.c's refusal)."""
    start(env, store, "chat_upload_max_size 100m;")
    c = env.conn("alice")
    c.send(c.build("POST", "uploads", token=None, headers=[
        ("Content-Length", str(50 * 1024 * 1024)),
        ("Expect", "100-continue")]))
    line = first_response_line(c)
    assert line.startswith("HTTP/1.1 401"), line


@pytest.mark.review16("R16-1")
def test_r16_1_http2_json_body_without_length(env, store):
    """HTTP/2 bodies without a length are held to chat_max_message_size
    through the stream's count (nginx's received): a small one passes,
    a larger one is a 413."""
    import subprocess
    from conftest import free_port
    port = free_port()
    conf = "chat_upload_path %s; chat_max_message_size 1k;" % store
    env.start(conf, http="server { listen 127.0.0.1:%d http2; "
                         "location /api/chat/ { chat_api; } }\n%s"
                         % (port, conf))

    def curl(body):
        r = subprocess.run(["curl", "-sS", "--http2-prior-knowledge",
                            "-X", "POST", "-T", "-",
                            "-H", "Content-Type: application/json",
                            "-H", "Authorization: Bearer "
                            + env.token("alice"), "-o", "/dev/null", "-w",
                            "%{http_code} %{http_version}",
                            "http://127.0.0.1:%d/api/chat/conversations"
                            % port],
                           input=body, capture_output=True, timeout=30)
        return r.stdout.decode()

    small = b'{"kind":"direct","members":["bob"]}'
    assert not curl(small).startswith("413"), curl(small)
    # refused: a 413, or (now and then) curl reads only the stream's
    # reset that follows it ("000"): either way never taken
    assert curl(b"[" + b" " * 4096 + b"]")[:3] in ("413", "000")
    wait_until(lambda: temp_files(store) == [], "tmp/ empty")


# --------------------------------------------------------------------------
# the name: C's filter and SQL's check agree

def c_strips(cp):
    """What ngx_http_chat_upload_name takes out of a name."""
    return (cp < 0x20 or 0x7f <= cp <= 0x9f or cp == 0x061c
            or cp in (0x200e, 0x200f, 0x2028, 0x2029)
            or 0x202a <= cp <= 0x202e or 0x2066 <= cp <= 0x2069)


def test_r16_sql_name_check_refuses_nothing_c_keeps(env):
    """A character chat.api_upload_create refuses in a name but the C
    filter keeps would be a 400 after the file was stored: none (in the
    test cluster's locale)."""
    refused = env.pg.query(
        "SELECT c FROM generate_series(1, 1114111) c "
        "WHERE c NOT BETWEEN 55296 AND 57343 "
        "AND chr(c) ~ '[/\\\\[:cntrl:]]'")
    kept = [hex(c) for (c,) in refused
            if not c_strips(c) and c not in (0x2f, 0x5c)]
    assert kept == []


@pytest.mark.parametrize("given", [
    "a%C0%AFb",             # overlong '/'
    "a%E0%80%AFb",          # overlong '/', three bytes
    "a%ED%A0%80b",          # a surrogate
    "a%F4%90%80%80b",       # past U+10FFFF
    "a%C2b",                # cut short
])
def test_r16_name_not_utf8(env, store, given):
    start(env, store)
    r = env.conn("alice").request("POST", "uploads?name=" + given,
                                  body=png(1, 1))
    assert r.status == 400, r
    assert r.json()["error"]["message"] == "name must be UTF-8"
    assert stored(store) == {}


def test_r16_name_nul_and_255_characters(env, store):
    """%00 is a control (taken out); 255 characters are counted in code
    points after the filter, as char_length does in SQL."""
    start(env, store)
    c = env.conn("alice")
    assert ok_upload(c, png(1, 1), "a%00b")["name"] == "ab"
    name = "\U0001F600" * 255
    from urllib.parse import quote
    assert ok_upload(c, png(1, 1), quote(name) + "%E2%80%AE")["name"] \
        == name


# --------------------------------------------------------------------------
# R16-6: nothing bounds a user's uploads in flight but chat_upload_rate,
# which counts starts: with the default (30r/m burst=30) one user holds 30
# slow uploads at once, and 30 more every minute for as long as they trickle
# a byte per client_body_timeout.  Each holds a connection, a socket and a
# temporary file descriptor, a 64 KB sniff head, a client_body_buffer_size
# buffer and a request pool: the workers' connections run out long before
# the quota does.  The bound asserted (8) is the review's proposal.

@pytest.mark.review16("R16-6")
def test_r16_6_uploads_in_flight_per_user_bounded(env, store):
    import select
    start(env, store)
    conns = []
    held = 0
    for _ in range(30):
        c = env.conn("alice")
        conns.append(c)
        # past client_body_buffer_size: the temporary file is made
        c.send(c.build("POST", "uploads", headers=[
            ("Content-Length", "1000000")]) + blob(40000))
        before = held

        def settled():
            if select.select([c.sock], [], [], 0)[0]:
                return True         # answered (refused)
            return len(temp_files(store)) > before
        wait_until(settled, "the upload in flight or refused")
        held = len(temp_files(store))
    for c in conns:
        c.close()
    assert held <= 8, "%d uploads of one user in flight" % held


# --------------------------------------------------------------------------
# R16-7: a REST-only user's upload buckets (files a minute, bytes a day)
# live in an offline presence entry, first in the LRU that makes room in a
# full zone; a lookup does not move it.  Once other users have filled the
# zone, the entry is forgotten and the day's quota starts afresh (and with
# no offline entry left to forget, there is no limit at all).

@pytest.mark.review16("R16-7")
@pytest.mark.parametrize("chat_env", [dict(zone="256k")], indirect=True)
def test_r16_7_quota_survives_a_full_zone(env, store):
    start(env, store, "chat_upload_quota 2500; chat_upload_rate 1000r/s;")
    c = env.conn("alice")
    ok_upload(c, blob(1000))
    ok_upload(c, blob(1000))
    assert upload(c, blob(1000)).status == 429

    # other users, each with an entry of their own (an empty upload: a
    # file of chat_upload_rate checked, nothing stored); one request at a
    # time (pipelining many trips UBSan in nginx's own header buffers)
    for batch in range(8):
        other = env.conn("bob")     # within nginx's keepalive_requests
        for i in range(500):
            r = other.request("POST", "uploads", body=b"",
                              token=env.token("u%d" % (batch * 500 + i)))
            assert r.status == 400, r
        other.close()
    r = upload(env.conn("alice"), blob(1000))
    assert r.status == 429, r


# --------------------------------------------------------------------------
# R16-8: the temporary file of an upload whose worker dies (a crash, the
# OOM killer) stays in chat_upload_path/tmp for ever: nginx removes it only
# in the request pool's cleanup, and nothing sweeps tmp/ (not at start, not
# on a reload; the sweep of issue 16 item 3 is for the store).  The test
# expects a reload to clear what a dead worker left.  Fixed: the first
# worker sweeps tmp/ of files older than chat_upload_timeout and a margin
# (a live upload's is younger), so the file is aged here as the hours of
# a real crash would.

@pytest.mark.review16("R16-8")
@pytest.mark.allow_log(r"exited on signal 9")
def test_r16_8_dead_worker_temp_file_swept(env, store):
    import signal
    start(env, store)
    c = env.conn("alice")
    c.send(c.build("POST", "uploads", headers=[
        ("Content-Length", "1000000")]) + blob(40000))
    wait_until(lambda: len(temp_files(store)) == 1, "the temporary file")
    for pid in env.ng.worker_pids():
        os.kill(pid, signal.SIGKILL)
    c.close()
    age(store, 2 * 3600)
    env.ng.reload()
    ok_upload(env.conn("alice"), png(1, 1))
    wait_until(lambda: temp_files(store) == [], "tmp/ swept")


# --------------------------------------------------------------------------
# R16-6, R16-7, R16-8 fixed: what the count in flight, the deadline and the
# sweep of tmp/ must also do.

def begin(env, store, user="alice"):
    """An upload of user in flight (a temporary file made), its
    connection; or the connection of one refused at once."""
    import select
    c = env.conn(user)
    before = len(temp_files(store))
    c.send(c.build("POST", "uploads", headers=[
        ("Content-Length", "1000000")]) + blob(40000))
    wait_until(lambda: select.select([c.sock], [], [], 0)[0]
               or len(temp_files(store)) > before,
               "the upload in flight or refused")
    return c


def refused(r, status, code):
    assert r.status == status, r
    assert r.json()["error"]["code"] == code, r


def accepted_again(env, data=None):
    """An upload of alice succeeds, once what held her count is gone
    (429 meanwhile)."""
    seen = []

    def ok():
        r = upload(env.conn("alice"), data or png(1, 1))
        seen.append(r.status)
        assert r.status in (201, 429), r
        return r.status == 201
    wait_until(ok, "an upload accepted again")


def closed_by_server(c):
    """The server closed c (EOF or a reset), bytes trickled meanwhile."""
    import time
    c.sock.settimeout(0.2)
    deadline = time.monotonic() + TIMEOUT + 10
    while time.monotonic() < deadline:
        try:
            c.sock.sendall(b"x")
            if c.sock.recv(4096) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def test_r16_6_refused_over_concurrency_with_retry_after(env, store):
    start(env, store, "chat_upload_concurrency 2;")
    held = [begin(env, store), begin(env, store)]
    r = upload(env.conn("alice"), png(1, 1))
    refused(r, 429, "rate_limited")
    assert r.header("retry-after") == "1", r
    # another user is not counted with alice
    ok_upload(env.conn("bob"), png(2, 1))
    assert len(temp_files(store)) == 2
    for c in held:
        c.close()


def test_r16_6_count_released_when_the_client_leaves(env, store):
    start(env, store, "chat_upload_concurrency 1;")
    c = begin(env, store)
    assert upload(env.conn("alice"), png(1, 1)).status == 429
    c.close()
    accepted_again(env)
    wait_until(lambda: temp_files(store) == [], "tmp/ empty")


def test_r16_6_count_released_after_refusals(env, store):
    """Refused after the count was taken (an empty file, the day's quota,
    the count itself): nothing stays held."""
    start(env, store, "chat_upload_concurrency 1; chat_upload_quota 2500k; "
          "chat_upload_rate 1000r/s;")
    c = env.conn("alice")
    for _ in range(3):
        refused(upload(c, b""), 400, "bad_request")
    # refused by the count itself
    held = begin(env, store)
    for _ in range(3):
        refused(upload(c, b""), 429, "rate_limited")
    held.close()
    wait_until(lambda: upload(env.conn("alice"), b"").status == 400,
               "the count given back")
    # refused by the day's quota once the body is in
    ok_upload(c, blob(1200000))
    ok_upload(c, blob(1200001))
    refused(upload(c, blob(200000)), 429, "rate_limited")
    refused(upload(c, blob(200001)), 429, "rate_limited")
    # not the count's 429: an empty file is read and refused as such
    refused(upload(c, b""), 400, "bad_request")


def test_r16_6_deadline_cuts_a_slow_upload_and_releases(env, store):
    """chat_upload_timeout is for the whole body: a byte every 0.2 s (well
    within client_body_timeout) is cut, its file removed, its count
    given back."""
    start(env, store, "chat_upload_concurrency 1; chat_upload_timeout 1s;")
    c = begin(env, store)
    assert closed_by_server(c)
    wait_until(lambda: temp_files(store) == [], "tmp/ empty")
    accepted_again(env)
    assert "chat_upload_timeout" in env.ng.error_log()


def test_r16_6_deadline_spares_a_body_in_time(env, store):
    start(env, store, "chat_upload_timeout 2s;")
    ok_upload(env.conn("alice"), blob(300000))


@pytest.mark.parametrize("chat_env", [dict(zone="256k")], indirect=True)
def test_r16_7_no_entry_no_upload(env, store):
    """A zone full of entries whose upload buckets hold something (a file
    of 1r/m each: a minute): a new user's upload is refused, not
    unlimited; the entries kept are not forgotten for it."""
    start(env, store, "chat_upload_rate 1r/m;")
    r = None
    for batch in range(8):
        other = env.conn("bob")
        for i in range(500):
            r = other.request("POST", "uploads", body=b"",
                              token=env.token("u%d" % (batch * 500 + i)))
            if r.status != 400:
                break
        other.close()
        if r.status != 400:
            break
    refused(r, 503, "unavailable")
    assert r.header("retry-after") == "1", r
    # u0's bucket was kept: still its minute's file
    r = env.conn("bob").request("POST", "uploads", body=b"",
                                token=env.token("u0"))
    refused(r, 429, "rate_limited")


def test_r16_6_count_is_the_nodes_not_the_workers(env, store):
    """Two workers: an upload held on one counts on the other (the kernel
    spreads the connections; each of them is refused)."""
    env.start("chat_upload_path %s; chat_upload_concurrency 1;" % store,
              workers=2)
    c = begin(env, store)
    for _ in range(6):
        refused(upload(env.conn("alice"), png(1, 1)), 429, "rate_limited")
    c.close()
    accepted_again(env)


@pytest.mark.allow_log(r"exited on signal 9")
def test_r16_6_count_of_a_dead_worker_released(env, store):
    """A worker killed with uploads in flight: the sweep of its slot gives
    their counts back (the respawned worker's start sweeps it)."""
    import signal
    start(env, store, "chat_upload_concurrency 1;")
    c = begin(env, store)
    (pid,) = env.ng.worker_pids()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: env.ng.worker_pids() not in ([], [pid]),
               "a worker respawned")
    c.close()
    accepted_again(env)


@pytest.mark.parametrize("chat_env", [dict(zone=None)], indirect=True)
def test_r16_6_without_a_zone_counted_per_worker(env, store):
    start(env, store, "chat_upload_concurrency 1;")
    c = begin(env, store)
    refused(upload(env.conn("alice"), png(1, 1)), 429, "rate_limited")
    ok_upload(env.conn("bob"), png(2, 1))
    c.close()
    accepted_again(env)


def test_r16_8_young_temp_file_kept(env, store):
    """tmp/'s sweep removes only what is older than chat_upload_timeout
    and its margin: a file younger (an upload in flight, here or on
    another node of a shared store) stays."""
    start(env, store, "chat_upload_timeout 10m;")
    tmp = os.path.join(store, "tmp")
    young, old, other = (os.path.join(tmp, n)
                         for n in ("0000012345", "0000012346", "keep.me"))
    # the store sweep's tombs (files.c) that a dead worker left
    tomb, young_tomb = (os.path.join(tmp, n + ".swept")
                        for n in ("ab" * 32, "cd" * 32))
    import time

    def touch(path, seconds):
        with open(path, "wb") as f:
            f.write(b"x")
        then = time.time() - seconds
        os.utime(path, (then, then))
    touch(old, 12 * 60)         # past 10 minutes and a minute
    touch(other, 12 * 60)
    touch(young, 9 * 60)
    touch(tomb, 12 * 60)
    touch(young_tomb, 9 * 60)
    env.ng.reload()
    wait_until(lambda: not os.path.exists(old), "the old file swept")
    wait_until(lambda: not os.path.exists(tomb), "the old tomb swept")
    assert os.path.exists(young)
    assert os.path.exists(young_tomb)
    assert os.path.exists(other)     # not nginx's name: not ours to remove
    os.unlink(young_tomb)
    # an upload in flight is not touched either
    c = begin(env, store)
    touch(old, 12 * 60)
    env.ng.reload()
    wait_until(lambda: not os.path.exists(old), "the old file swept again")
    assert os.path.exists(young)
    assert len(temp_files(store)) == 3      # young, other, the upload's
    c.close()


# --------------------------------------------------------------------------
# R16-9: upload_body unlinks the temporary name early, but nginx's pool
# cleanup still deletes that name when the request ends (after the row's
# round trip).  A name freed early can be taken meanwhile: on the shared
# filesystem operations.md prescribes for several nodes, every node's
# nginx numbers its temporary files from 1, so another node's upload takes
# it, and the first request's cleanup deletes that upload's file: its
# link() then fails (503).  Made deterministic here with two nginx on one
# store and chat.uploads locked while the first row waits.

@pytest.mark.review16("R16-9")
def test_r16_9_early_unlink_does_not_delete_another_nodes_file(env, store):
    from chatlib import Conn, make_token
    start(env, store)
    ng2 = env.factory(**env.ng.conf_args)
    lock = env.pg.connect()
    try:
        lock.execute("BEGIN")
        lock.execute("LOCK TABLE chat.uploads IN ACCESS EXCLUSIVE MODE")
        # node A: the body in, linked, its temporary name unlinked, the
        # row waiting for the lock
        a = env.conn("alice")
        first = png(3, 3)
        a.send(a.build("POST", "uploads", body=first))
        wait_until(lambda: where(first) in stored(store)
                   and temp_files(store) == [], "A's file in the store")
        # node B: an upload in flight, its temporary file the same name
        b = Conn(ng2.port, make_token(ng2.key, "bob"), "bob", TIMEOUT)
        second = blob(100000)
        b.send(b.build("POST", "uploads", body=second)[:-60000])
        wait_until(lambda: len(temp_files(store)) == 1, "B's temporary file")
    finally:
        lock.rollback()
        lock.close()
    assert a.read().status == 201
    # A's request is over once its connection has answered another
    assert a.request("GET", "conversations").status == 200
    b.send(second[-60000:])
    r = b.read()
    assert r.status == 201, r
    assert stored(store)[where(second)] == second


def test_r16_chunked_extensions_and_trailers(env, store):
    """Chunk extensions and trailers are framing: not in the file, not in
    its hash or size."""
    start(env, store)
    c = env.conn("alice")
    data = png(2, 2) + blob(5000)
    body = (b"%x;ext=1\r\n" % 10 + data[:10] + b"\r\n"
            + b"%x\r\n" % (len(data) - 10) + data[10:] + b"\r\n"
            + b"0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n")
    c.send(c.build("POST", "uploads", headers=[
        ("Transfer-Encoding", "chunked")]) + body)
    r = c.read()
    assert r.status == 201, r
    assert r.json()["upload"]["size"] == len(data)
    assert stored(store) == {where(data): data}
    # and the connection goes on
    assert c.request("GET", "conversations").status == 200


# --------------------------------------------------------------------------
# R16-10: the rest of a body is read by upload_read through
# ngx_http_read_unbuffered_request_body, which is for unbuffered bodies:
# after the post handler (upload_body) has run it clears r->reading_body.
# When upload_body answers at once (an empty file, over the day's quota, a
# store that fails) it finalizes the request, which is freed (count 1: the
# handler's NGX_DONE is long past): the write lands in freed memory
# (heap-use-after-free, found by make test-asan; silent without ASan).
# Here: a chunked body over the day's quota whose end comes in a later
# read.

@pytest.mark.review16("R16-10")
def test_r16_10_body_ending_in_a_later_read_answered_at_once(env, store):
    start(env, store, "chat_upload_quota 10000; chat_upload_rate off;")
    c = env.conn("alice")
    c.send(c.build("POST", "uploads", headers=[
        ("Transfer-Encoding", "chunked")])
        + b"%x\r\n" % 20000 + blob(20000) + b"\r\n")
    wait_until(lambda: len(temp_files(store)) == 1, "the body being read")
    c.send(b"0\r\n\r\n")
    assert_error(c.read(), "too_large",
                 "the file is larger than the daily upload quota")
    assert c.request("GET", "conversations").status == 200
    assert stored(store) == {}


@pytest.mark.parametrize("token", ["expired", "alg-none", "other-key"])
def test_r16_bad_tokens_store_nothing(env, store, token):
    """An expired token, an unsigned one, one of another key: 401 before
    the body, nothing stored, no temporary file."""
    from chatlib import make_token
    start(env, store)
    tok = {"expired": lambda: make_token(env.ng.key, "alice", exp_in=-60),
           "alg-none": lambda: make_token(env.ng.key, "alice",
                                          header={"alg": "none"}),
           "other-key": lambda: make_token(os.urandom(32), "alice")}[token]()
    c = env.conn("alice")
    r = c.request("POST", "uploads", body=png(1, 1), token=tok)
    assert r.status == 401, r
    assert stored(store) == {} and temp_files(store) == []
    assert rows(env.pg) == []
