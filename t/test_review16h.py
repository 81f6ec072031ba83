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
