"""bench/chatload, the benchmark's load generator, against the real module
and PostgreSQL at small sizes: every scenario runs, counts what the server
did exactly (nothing missing, nothing twice), and reports refusals as
failures instead of dying.  `make bench` relies on these counts; the
figures themselves are the benchmark's business, not asserted here.
"""

import json
import os
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHATLOAD = os.path.join(REPO, "bench", "chatload")

LOCATIONS = "location = /chat/ws { chat_websocket; }"


@pytest.fixture
def server(nginx, postgres):
    postgres.reset()
    if not os.path.exists(CHATLOAD):
        pytest.fail("%s is missing: make bench/chatload" % CHATLOAD,
                    pytrace=False)
    ng = nginx(LOCATIONS,
               http='chat_postgres "%s" pool=2;' % postgres.dsn)
    ng.pg = postgres
    return ng


def chatload(ng, *args, key=None, rc=0):
    key_file = os.path.join(ng.prefix, "jwt.key")
    if key is not None:
        key_file = os.path.join(ng.prefix, "other.key")
        with open(key_file, "wb") as f:
            f.write(key)
    r = subprocess.run(
        [CHATLOAD, "--proto", "chat", "--port", str(ng.port),
         "--jwt-key", key_file, "--server-pids", "%d+" % ng.pid]
        + [str(a) for a in args],
        capture_output=True, text=True, timeout=120)
    assert r.returncode == rc, r.stderr[-3000:]
    return json.loads(r.stdout) if r.stdout.strip() else None


def exact(r, senders_ack=True):
    """Every expected delivery arrived once; nothing else arrived."""
    assert r["failed"] == 0 and r["dropped"] == 0, r
    assert r["sent"] > 0 and r["send_errors"] == 0, r
    assert r["delivered"] == r["expected"], r
    assert r["missing"] == 0 and r["duplicates"] == 0, r
    assert r["unexpected"] == 0, r
    assert r["latency_us"]["count"] == r["delivered"], r
    assert 0 < r["latency_us"]["p50"] <= r["latency_us"]["max"], r
    if senders_ack:
        assert r["acked"] == r["sent"], r


def test_idle_connections_are_counted_and_held(server):
    r = chatload(server, "--scenario", "idle", "--conns", 40,
                 "--procs", 2, "--duration", 1)
    assert (r["connected"], r["failed"], r["dropped"]) == (40, 0, 0), r
    assert r["rss_after_kb"] > 0 and r["server_cpu_s"] >= 0, r


def test_room_every_member_gets_every_message(server):
    n = 30
    server.pg.query("SELECT chat.api_user_upsert('r' || i, '{}') "
                    "FROM generate_series(0, %d) i" % (n - 1))
    out = server.pg.query(
        "SELECT chat.api_conversation_create('r0', jsonb_build_object("
        "'kind', 'group', 'title', 'room', 'members', (SELECT "
        "jsonb_agg('r' || i) FROM generate_series(1, %d) i)))" % (n - 1))
    cid = out[0][0]["ok"]["conversation"]["id"]
    r = chatload(server, "--scenario", "room", "--conns", n, "--conv", cid,
                 "--user-prefix", "r", "--rate", 50, "--duration", 1,
                 "--settle", 1, "--drain", 2)
    exact(r)
    assert r["receivers"] == n
    assert r["expected"] == r["sent"] * n
    # every message persisted once, in one sequence
    assert server.pg.query("SELECT count(*), max(seq) FROM chat.messages "
                           "WHERE conversation_id = %s", (cid,)) == \
        [(r["sent"], r["sent"])]


def test_room_spread_over_two_processes(server):
    n = 20
    server.pg.query("SELECT chat.api_user_upsert('t' || i, '{}') "
                    "FROM generate_series(0, %d) i" % (n - 1))
    out = server.pg.query(
        "SELECT chat.api_conversation_create('t0', jsonb_build_object("
        "'kind', 'group', 'title', 'room', 'members', (SELECT "
        "jsonb_agg('t' || i) FROM generate_series(1, %d) i)))" % (n - 1))
    cid = out[0][0]["ok"]["conversation"]["id"]
    r = chatload(server, "--scenario", "room", "--conns", n, "--conv", cid,
                 "--user-prefix", "t", "--procs", 2, "--window", 4,
                 "--duration", 1, "--settle", 1, "--drain", 2)
    exact(r)
    assert r["expected"] == r["sent"] * n


def test_pairs_and_sends_are_persisted_and_acknowledged(server):
    r = chatload(server, "--scenario", "pairs", "--conns", 20, "--rate", 10,
                 "--duration", 1, "--drain", 2, "--user-prefix", "p")
    exact(r)
    assert r["expected"] == 2 * r["sent"]
    r2 = chatload(server, "--scenario", "sends", "--conns", 10,
                  "--window", 4, "--duration", 1, "--drain", 2,
                  "--user-prefix", "d")
    exact(r2)
    assert r2["acks_per_s"] > 0 and r2["ack_latency_us"]["count"] == \
        r2["acked"]
    stored = server.pg.query("SELECT count(*) FROM chat.messages")[0][0]
    assert stored == r["sent"] + r2["sent"]


def test_sends_spread_over_peer_ports(server):
    # several --peer-port: the receivers take them in turn (here all the
    # same server, so every message still arrives); sent_at_s is on the
    # monotonic clock, for bench/run.py to time the servers after it
    t0 = time.monotonic()
    r = chatload(server, "--scenario", "sends", "--conns", 12,
                 "--window", 2, "--duration", 1, "--drain", 2,
                 "--user-prefix", "q",
                 "--peer-port", "%d,%d" % (server.port, server.port))
    exact(r)
    assert t0 < r["sent_at_s"] < time.monotonic(), r


def test_storm_resumes_everyone_with_their_messages(server):
    r = chatload(server, "--scenario", "storm", "--conns", 40,
                 "--user-prefix", "s")
    assert r["resumed"] == 40 and r["resume_failed"] == 0, r
    assert r["replayed"] == r["replay_expected"] == 80, r
    assert r["resume_s"] > 0


def test_a_refused_token_is_a_failed_connection_not_a_crash(server):
    r = chatload(server, "--scenario", "idle", "--conns", 5,
                 "--duration", 1, key=b"not the server's key", rc=1)
    assert (r["connected"], r["failed"]) == (0, 5), r


@pytest.mark.parametrize("args", [
    ["--scenario", "idle"],                                  # no --conns
    ["--scenario", "dance", "--conns", "5"],
    ["--scenario", "pairs", "--conns", "5"],                 # odd
    ["--scenario", "idle", "--conns", "5", "--rate", "-1"],
    ["--scenario", "idle", "--conns", "5", "--peer-port", "1,x"],
    ["--scenario", "idle", "--conns", "5", "--peer-port", "70000"],
])
def test_usage_errors(server, args):
    r = subprocess.run([CHATLOAD, "--proto", "chat", "--port",
                        str(server.port)] + args,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.strip()
