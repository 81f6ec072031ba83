"""Outside review of the upload limits (R16-6..8 follow-up, review 16g):
each test reproduces one finding R16G-n against a real nginx and
PostgreSQL.  No timing is asserted.
"""

import os
import socket
import struct
import time

import pytest

from chatlib import API_LOCATIONS, TIMEOUT
from conftest import base_dir, free_port
from test_handshake import _h2_frame, _h2_literal
from test_review16 import accepted_again, first_response_line
from test_uploads import (blob, make_store, ok_upload, small_disk, start,
                          temp_files,
                          wait_until)


CHAT_ENV = dict(locations=API_LOCATIONS, timeout=TIMEOUT, zone="16m")


@pytest.fixture
def store():
    return make_store()


def h2_env(env, store, extra=""):
    port = free_port()
    conf = "chat_upload_path %s; %s" % (store, extra)
    env.start(conf, http="server { listen 127.0.0.1:%d http2; "
                         "location /api/chat/ { chat_api; } }\n%s"
                         % (port, conf))
    return port


def h2_post(env, port, path, body, headers=(), end=True, user="alice",
            pause=0):
    """POST over HTTP/2 (prior knowledge, no content-length) with body in
    DATA frames (within the first windows); the response body, or what
    ended the stream: "RST", "GOAWAY", "EOF"."""
    block = b"".join(_h2_literal(k, v) for k, v in
                     [(":method", "POST"), (":scheme", "http"),
                      (":path", "/api/chat/" + path),
                      (":authority", "127.0.0.1:%d" % port),
                      ("authorization", "Bearer " + env.token(user))]
                     + list(headers))
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        out = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
               + _h2_frame(4, 0, 0, b"") + _h2_frame(1, 0x4, 1, block))
        for i in range(0, len(body), 16384):
            last = end and i + 16384 >= len(body)
            out += _h2_frame(0, 1 if last else 0, 1, body[i:i + 16384])
        if pause:
            # the body after the handler began to read it: through
            # HTTP/2's DATA handler, not the stream's preread buffer
            sock.sendall(out[:out.index(block) + len(block)])
            time.sleep(pause)
            out = out[out.index(block) + len(block):]
        sock.sendall(out)
        buf, resp = b"", b""
        while True:
            while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3],
                                                                "big"):
                chunk = sock.recv(65536)
                if not chunk:
                    return "EOF"
                buf += chunk
            n = int.from_bytes(buf[:3], "big")
            type_, flags = buf[3], buf[4]
            stream = struct.unpack("!I", buf[5:9])[0] & 0x7fffffff
            payload, buf = buf[9:9 + n], buf[9 + n:]
            if type_ == 4 and not flags & 1:
                sock.sendall(_h2_frame(4, 1, 0, b""))
            elif type_ == 7:
                return "GOAWAY"
            elif stream == 1 and type_ == 3:
                return "RST"
            elif stream == 1 and type_ in (0, 1) and flags & 1:
                return (resp + payload).decode("latin-1") if type_ == 0 \
                    else resp.decode("latin-1")
            elif stream == 1 and type_ == 0:
                resp += payload
    finally:
        sock.close()


# --------------------------------------------------------------------------
# R16G-1: over HTTP/2 a body that goes past its limit while it is read
# (no content-length: an upload past chat_upload_max_size, a JSON body past
# client_max_body_size) got nginx's HTML 413, not the protocol's JSON one:
# the filters' 413 goes from nginx's DATA frame handler straight to
# ngx_http_finalize_request (HTTP/1.1 goes through the module's read
# handler, which answers in JSON).  Fixed: over HTTP/2 the filter sends
# the JSON 413 itself and has the stream closed (NGX_HTTP_CLOSE).

@pytest.mark.review16("R16G-1")
@pytest.mark.parametrize("pause", [0, 0.5])
def test_r16g_1_h2_upload_past_max_is_json(env, store, pause):
    port = h2_env(env, store, "chat_upload_max_size 10k; "
                  "chat_upload_concurrency 1;")
    out = h2_post(env, port, "uploads", blob(40 * 1024), pause=pause)
    assert "too_large" in out, out
    # the stream closed, its count given back, its file removed
    accepted_again(env, blob(100))
    wait_until(lambda: temp_files(store) == [], "tmp/ empty")


@pytest.mark.review16("R16G-1")
@pytest.mark.parametrize("pause", [0, 0.5])
def test_r16g_1_h2_json_past_client_max_body_size_is_json(env, store, pause):
    port = h2_env(env, store, "chat_max_message_size 1k; "
                  "client_max_body_size 4k;")
    out = h2_post(env, port, "conversations", b"[" + b" " * 40 * 1024,
                  [("content-type", "application/json")], pause=pause)
    assert "too_large" in out, out


# --------------------------------------------------------------------------
# R16G-2: with "client_max_body_size 0" in the chat_api location (what
# sites that take uploads often set), a chunked JSON body past
# chat_max_message_size is read on and dropped without end: one connection
# of one user keeps a worker reading gigabytes, and the connection, for
# as long as it sends (client_body_timeout is between reads only).  Fixed:
# no client_max_body_size is chat_max_message_size for a JSON body, which
# is refused at once past it.

@pytest.mark.review16("R16G-2")
def test_r16g_2_json_chunked_without_client_max_body_size(env, store):
    start(env, store, "chat_max_message_size 1k; client_max_body_size 0;")
    c = env.conn("alice")
    c.send(c.build("POST", "conversations", headers=[
        ("Content-Type", "application/json"),
        ("Transfer-Encoding", "chunked")]) + b"40000000\r\n")
    try:
        for _ in range(16):
            c.send(b"[" + b" " * (64 * 1024))
    except OSError:
        pass            # refused while sending: what the fix does
    line = first_response_line(c)
    assert line.startswith("HTTP/1.1 413"), line


# --------------------------------------------------------------------------
# R16G-3: the day's upload quota is checked before the body only against
# a Content-Length: a user whose quota is used up still has every chunked
# upload read whole into tmp/ (hashed, written, up to chat_upload_max_size
# each, chat_upload_concurrency at once, 30 a minute) before its 429.
# Fixed: a chunked upload is refused at once when not a byte of the quota
# is left.

@pytest.mark.review16("R16G-3")
def test_r16g_3_chunked_upload_past_quota_refused_before_body(env, store):
    start(env, store, "chat_upload_quota 1k; chat_upload_rate 1000r/s; "
          "chat_upload_max_size 64m;")
    ok_upload(env.conn("alice"), blob(1024))
    c = env.conn("alice")
    c.send(c.build("POST", "uploads", headers=[
        ("Transfer-Encoding", "chunked")]) + b"1000000\r\n")
    try:
        for _ in range(16):
            c.send(blob(64 * 1024))
    except OSError:
        pass
    line = first_response_line(c)
    assert line.startswith("HTTP/1.1 429"), line


# --------------------------------------------------------------------------
# R16G-4: tmp/'s sweep after a reload uses the new configuration's
# chat_upload_timeout; the old workers finish their uploads under the old
# one.  A reload that shortens chat_upload_timeout has the new first
# worker remove the temporary files of uploads still in flight in old
# workers (begun longer ago than the new deadline, within the old): the
# client sends the whole body and gets 503.  The file's age stands for
# the two hours the upload has run.  Fixed: each worker's slot of the
# zone (which outlives a reload) holds its chat_upload_timeout, and the
# sweep spares what is younger than the longest of the live workers'.

@pytest.mark.review16("R16G-4")
def test_r16g_4_reload_shortening_the_deadline_spares_old_uploads(env,
                                                                  store):
    import time
    from test_uploads import stored, where
    start(env, store, "chat_upload_timeout 3h;")
    data = blob(1000000)
    c = env.conn("alice")
    c.send(c.build("POST", "uploads", headers=[
        ("Content-Length", str(len(data)))]) + data[:40000])
    wait_until(lambda: len(temp_files(store)) == 1, "the temporary file")
    tmp = os.path.join(store, "tmp")
    then = time.time() - 2 * 3600
    for name in os.listdir(tmp):
        os.utime(os.path.join(tmp, name), (then, then))
    env.ng.reload(locations=env.locations % (
        "chat_upload_path %s; chat_upload_timeout 1h;" % store))
    ok_upload(env.conn("bob"), blob(100))      # the new workers are up
    c.send(data[40000:])
    line = first_response_line(c)
    assert line.startswith("HTTP/1.1 201"), line
    assert stored(store).get(where(data)) == data


# --------------------------------------------------------------------------
# R16G-5: a malformed chunked body (a chunk size that is no hex number)
# in the chat_api location gets nginx's HTML 400, an upload's and a JSON
# route's alike: the module passed nginx's 400 on as the client's own
# failure.  Fixed: answered with the protocol's JSON 400, the connection
# closed after it (the rest of the stream cannot be parsed).

@pytest.mark.review16("R16G-5")
@pytest.mark.parametrize("path", ["uploads", "conversations"])
def test_r16g_5_malformed_chunked_body_is_json(env, store, path):
    start(env, store)
    c = env.conn("alice")
    c.send(c.build("POST", path, headers=[
        ("Content-Type", "application/json"),
        ("Transfer-Encoding", "chunked")]) + b"2\r\n{}\r\nzz\r\n")
    r = c.read()
    assert r.status == 400, r
    assert r.json()["error"]["code"] == "bad_request", r
    assert not r.keep_alive, r


# --------------------------------------------------------------------------
# R16G-6: a full zone makes room by forgetting the users offline for
# longest, passing over at most 64 entries kept for their upload buckets
# (NGX_HTTP_CHAT_PRESENCE_KEPT_SCAN): when 64 such entries lead the list,
# the allocation fails as if nothing could be forgotten, though thousands
# of entries behind them could.  That allocation is anyone's: a
# WebSocket's (refused, "chat_zone is full"), an upload's (503), a REST
# user's buckets.  64 users who each uploaded a file recently (under the
# default 1 GB a day, 25 MB keeps an entry 35 minutes) and are offline
# for longest: in a zone that has filled with offline users (its steady
# state) that happens by itself.  Here: 70 users' files of chat_upload_rate
# 1r/m lead the list, then users of another server (1000r/s: nothing kept)
# fill the zone; one of them is refused when the zone becomes full.
# Fixed: an entry kept for its upload buckets that the LRU's scan meets
# moves to a list of its own, looked at only when the LRU is empty.

@pytest.mark.review16("R16G-6")
@pytest.mark.parametrize("chat_env", [dict(zone="256k")], indirect=True)
def test_r16g_6_kept_entries_do_not_refuse_others(env, store):
    from chatlib import Conn
    port = free_port()
    env.start("chat_upload_path %s; chat_upload_rate 1r/m;" % store,
              http="server { listen 127.0.0.1:%d; location /api/chat/ { "
                   "chat_api; chat_upload_path %s; "
                   "chat_upload_rate 1000r/s; } }\n" % (port, store))
    c = env.conn("bob")
    for i in range(70):
        r = c.request("POST", "uploads", body=b"",
                      token=env.token("k%d" % i))
        assert r.status == 400, r           # an empty file, a file taken
    statuses = {}
    for batch in range(10):
        other = Conn(port, env.token("bob"), "bob", TIMEOUT)
        for i in range(500):
            r = other.request("POST", "uploads", body=b"",
                              token=env.token("f%d" % (batch * 500 + i)))
            statuses[r.status] = statuses.get(r.status, 0) + 1
        other.close()
    assert statuses == {400: 5000}, statuses


# --------------------------------------------------------------------------
# R16G-7: a reload closes the WebSockets so that old workers exit at once
# (protocol.md), but an upload in flight keeps its old worker, and the
# worker's slot of chat_zone, for up to chat_upload_timeout (an hour by
# default): anyone may hold one with a byte a minute.  Slots are 64; with
# reloads more frequent than the uploads' deadline, old workers pile up
# until a new worker gets no slot, and then its WebSocket clients are all
# refused ("all 64 slots of chat_zone are taken").  Here one upload pins
# each generation.  Open: a way out needs a decision (an exiting worker
# giving its slot up for its uploads' sake, or a shorter deadline for
# uploads of an exiting worker).

@pytest.mark.review16("R16G-7")
@pytest.mark.xfail(strict=True, reason="R16G-7, open: uploads in flight pin "
                   "old workers and their zone slots across reloads "
                   "(bounded by nginx's worker_shutdown_timeout, which "
                   "nginx.conf.example sets and this test does not)")
@pytest.mark.allow_log(r"slots of chat_zone are taken")
def test_r16g_7_uploads_in_flight_do_not_exhaust_zone_slots(env, store):
    start(env, store)
    held = []
    try:
        for i in range(64):
            c = env.conn("u%d" % i)
            c.send(c.build("POST", "uploads", headers=[
                ("Content-Length", "1000000")]) + blob(40000))
            held.append(c)
            wait_until(lambda: len(temp_files(store)) == i + 1,
                       "the temporary file")
            env.ng.reload()
        ws = env.ws("bob")
        ws.close()
    finally:
        for c in held:
            c.close()
    assert "slots of chat_zone are taken" not in env.ng.error_log()


@pytest.mark.review16("R16G-1")
@pytest.mark.parametrize("pause", [0, 0.5])
def test_r16g_1_h2_upload_disk_full_is_json(env, small_disk, pause):
    """The temporary file cannot be written, over HTTP/2: the JSON 507."""
    port = h2_env(env, small_disk, "chat_upload_max_size 2m;")
    env.ng.allow_log.append(r"No space left on device")
    # the tmpfs nearly full: what is left is less than the body
    with open(os.path.join(small_disk, "filler"), "wb") as f:
        try:
            f.write(b"\0" * (256 * 1024))
        except OSError:
            pass
    os.truncate(os.path.join(small_disk, "filler"), 236 * 1024)
    out = h2_post(env, port, "uploads", blob(60 * 1024), pause=pause)
    assert "insufficient_storage" in out, out
    wait_until(lambda: temp_files(small_disk) == [], "tmp/ empty")
