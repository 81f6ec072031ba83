"""PostgreSQL faults under a running chat: storage down at request time,
and PostgreSQL killed (immediate shutdown, as a crash) in the middle of a
stream of sends.  What must hold: never a false `ok`, `unavailable`
quickly, the pool reconnects by itself, and a retry with the same
client_msg_id makes every message exist exactly once with seqs 1..N.

nginx must log nothing at [alert] or [crit] (the fixture checks); the
PostgreSQL errors are logged at [error], which is allowed."""

import json
import os
import signal
import threading
import time

from chatlib import make_token, ws_connect


LOCATION = "location = /chat/ws { chat_websocket; }"


def start(nginx, postgres, params=""):
    return nginx(LOCATION,
                 http='chat_postgres "%s" pool=2 %s;' % (postgres.dsn,
                                                          params))


def connect(ng, user):
    return ws_connect(ng, make_token(ng.key, user))


def postmaster_pid(postgres):
    with open(os.path.join(postgres.dir, "data", "postmaster.pid")) as f:
        return int(f.readline())


def crash(postgres):
    """`pg_ctl stop -m immediate` without the wait for pg_ctl itself:
    SIGQUIT to the postmaster, which kills every backend at once (no
    checkpoint: the next start runs crash recovery).  Returns when the
    postmaster has exited."""
    pid = postmaster_pid(postgres)
    postgres.running = False        # the conftest starts it again if need be
    os.kill(pid, signal.SIGQUIT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    raise AssertionError("the postmaster did not exit after SIGQUIT")


def send_req(rid, cid, cm, body=None):
    return {"type": "message.send", "id": rid, "conversation_id": cid,
            "body": body or "body " + cm, "client_msg_id": cm}


def wait_reply(c, rid, timeout=10):
    """The reply to rid; other frames are kept in c.events."""
    deadline = time.monotonic() + timeout
    while True:
        f = json.loads(c.recv(max(0.01, deadline - time.monotonic())))
        if f.get("id") == rid and f.get("type") in ("ok", "error"):
            return f
        c.events.append(f)


def retry_until_ok(c, cid, cm, timeout=30):
    """Sends cm again until it is acknowledged (storage may still be
    coming back); every answer but ok must be `unavailable`."""
    deadline = time.monotonic() + timeout
    n = 0
    while True:
        n += 1
        rid = "retry-%s-%d" % (cm, n)
        c.send_json(send_req(rid, cid, cm))
        reply = wait_reply(c, rid)
        if reply["type"] == "ok":
            return reply["data"]["message"]
        assert reply["error"] == {"code": "unavailable",
                                  "message": "storage is unavailable, "
                                             "retry later"}, reply
        assert time.monotonic() < deadline, \
            "storage not back %s s after PostgreSQL started" % timeout
        time.sleep(0.2)


UNAVAILABLE = {"code": "unavailable",
               "message": "storage is unavailable, retry later"}


def first_send(nginx, postgres, pg_params=""):
    """nginx, alice and a direct conversation with one message stored."""
    postgres.reset()
    ng = start(nginx, postgres, pg_params)
    alice = connect(ng, "alice")
    cid = alice.ok("conversation.create", kind="direct",
                   user_id="bob")["conversation"]["id"]
    m1 = alice.ok("message.send", conversation_id=cid, body="before",
                  client_msg_id="m1")["message"]
    assert m1["seq"] == 1
    alice.next_event("conversation.created")
    alice.next_event("message.created")
    # let the pool go idle, as it is when PostgreSQL goes down unannounced
    time.sleep(0.3)
    return ng, alice, cid, m1


class Frozen:
    """SIGSTOP for the (only) nginx worker while the block runs, so that
    whatever PostgreSQL sends meanwhile is waiting in the sockets, all of
    it, when the worker looks again: one edge-triggered read event."""

    def __init__(self, ng):
        (self.pid,) = ng.worker_pids()

    def __enter__(self):
        os.kill(self.pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc):
        os.kill(self.pid, signal.SIGCONT)


# Regression (fixed in 0ae2dd0, sockets level-triggered): an idle pool
# connection that read the server's FATAL "terminating connection" and its
# EOF in one edge-triggered event stayed "ready"; the next query went to
# the dead connection and waited for query_timeout.
def test_storage_down_answers_unavailable_quickly(nginx, postgres):
    # query_timeout 6 s: a stall would exceed the 5 s bound
    ng, alice, cid, _ = first_send(nginx, postgres, "query_timeout=6s")
    try:
        with Frozen(ng):
            postgres.stop()
        t0 = time.monotonic()
        alice.send_json(send_req("down", cid, "m2"))
        reply = wait_reply(alice, "down", timeout=15)
        elapsed = time.monotonic() - t0
        assert reply == {"type": "error", "id": "down",
                         "error": UNAVAILABLE}
        assert elapsed < 5.0, "unavailable after %.2f s" % elapsed
    finally:
        postgres.start()
    alice.close()


def test_storage_down_answers_unavailable_and_comes_back(nginx, postgres):
    # query_timeout 3 s: should a query still wait on a dead connection,
    # the bounds below hold; this test is about what else must hold while
    # storage is down, and after
    ng, alice, cid, m1 = first_send(nginx, postgres, "query_timeout=3s")

    try:
        postgres.stop()

        # a send: unavailable, never a false ok; a ping right behind it is
        # answered at once, ahead of the pending send
        t0 = time.monotonic()
        alice.send_json(send_req("down", cid, "m2"))
        alice.send_json({"type": "ping", "id": "pg"})
        got = {}
        while len(got) < 2:
            f = json.loads(alice.recv(timeout=10))
            assert f.get("id") in ("down", "pg"), f
            got[f["id"]] = (f, time.monotonic() - t0)
        reply, elapsed = got["down"]
        assert reply == {"type": "error", "id": "down",
                         "error": UNAVAILABLE}
        assert elapsed < 5.0, "unavailable after %.2f s" % elapsed
        pong, ping_elapsed = got["pg"]
        assert pong["type"] == "ok" and set(pong["data"]) == {"time"}
        assert ping_elapsed < 1.0, "ping answered after %.2f s" % \
            ping_elapsed

        # other storage requests too, and the connection stays usable
        for type_, fields in [("messages.history",
                               {"conversation_id": cid}),
                              ("conversation.list", {}),
                              ("sync", {}),
                              ("message.send", send_req("x", cid, "m2"))]:
            fields = {k: v for k, v in fields.items()
                      if k not in ("type", "id")}
            t0 = time.monotonic()
            r = alice.request(type_, timeout=10, **fields)
            assert r == {"type": "error", "id": r["id"],
                         "error": UNAVAILABLE}, (type_, r)
            assert time.monotonic() - t0 < 5.0, type_
            t0 = time.monotonic()
            assert set(alice.ok("ping")) == {"time"}
            assert time.monotonic() - t0 < 1.0
        assert alice.events == []
    finally:
        postgres.start()

    # the pool reconnects by itself: the same send, retried, goes through
    m2 = retry_until_ok(alice, cid, "m2", timeout=20)
    assert m2 == dict(m2, seq=2, updated_seq=2, body="body m2",
                      client_msg_id="m2", sender_id="alice")
    # said once, at [notice], with what the outage cost
    ng.wait_log(r"\[notice\] \d+#\d+: chat: PostgreSQL connection ready "
                r"again after \d+ failed attempts in \d+\.\d s")
    assert postgres.query("SELECT seq, client_msg_id FROM chat.messages "
                          "ORDER BY seq") == [(1, "m1"), (2, "m2")]
    # and a new connection works from the start
    bob = connect(ng, "bob")
    assert bob.ok("messages.history", conversation_id=cid)["messages"] == \
        [m1, m2]
    alice.close()
    bob.close()


def test_crash_in_the_middle_of_a_stream_loses_nothing(nginx, postgres):
    postgres.reset()
    # query_timeout 3 s bounds a wait on a dead connection
    ng = start(nginx, postgres, "query_timeout=3s")
    alice, bob = connect(ng, "alice"), connect(ng, "bob")
    cid = alice.ok("conversation.create", kind="direct",
                   user_id="bob")["conversation"]["id"]
    bob.next_event("conversation.created")
    alice.next_event("conversation.created")

    n = 300
    cms = ["s%03d" % i for i in range(n)]
    # pipelined in waves of `window`: a connection's pipelined sends are
    # stored together, so all 300 at once would be one or two batches and
    # the crash could not land in the middle
    window = 5

    acked, failed, killer = {}, [], None
    try:
        deadline = time.monotonic() + 60
        for start_at in range(0, n, window):
            wave = range(start_at, min(n, start_at + window))
            for i in wave:
                alice.send_json(send_req("q%d" % i, cid, cms[i]))
            while len(acked) + len(failed) < wave[-1] + 1:
                f = json.loads(alice.recv(max(0.01,
                                              deadline - time.monotonic())))
                if f.get("type") == "ok":
                    m = f["data"]["message"]
                    assert f["id"] == "q%d" % cms.index(m["client_msg_id"])
                    acked[m["client_msg_id"]] = m
                    if len(acked) >= 100 and killer is None:
                        # the rest of this wave is in flight; the next
                        # waves go to a dead server
                        killer = threading.Thread(target=crash,
                                                  args=(postgres,))
                        killer.start()
                        killer.join(30)
                elif f.get("type") == "error":
                    assert f["error"] == {"code": "unavailable",
                                          "message": "storage is "
                                                     "unavailable, retry "
                                                     "later"}, f
                    failed.append(cms[int(f["id"][1:])])
                else:
                    assert f["type"] == "message.created", f
        if killer is not None:
            killer.join(30)
    finally:
        if not postgres.running:
            postgres.start()

    # the crash landed in the middle: some acknowledged, some not
    assert killer is not None
    assert 100 <= len(acked) < n and failed, (len(acked), len(failed))
    # replies in send order: every ok before the first failure
    assert sorted(acked) == cms[:len(acked)]
    assert sorted(failed) == cms[len(acked):]

    # every acknowledged send is stored, exactly once, as acknowledged
    stored = {r[0]: r[1:] for r in postgres.query(
        "SELECT client_msg_id, seq, count(*) OVER (PARTITION BY "
        "client_msg_id) FROM chat.messages WHERE conversation_id = %s",
        (cid,))}
    for cm, m in acked.items():
        assert stored.get(cm) == (m["seq"], 1), cm
    # an unacknowledged one may have been committed (the crash hit its
    # batch between commit and answer), but no more than a wave
    assert 0 <= len(stored) - len(acked) <= window, \
        sorted(set(stored) - set(acked))

    # retry every unacknowledged one with its client_msg_id
    for cm in failed:
        m = retry_until_ok(alice, cid, cm, timeout=30)
        assert m["client_msg_id"] == cm and m["body"] == "body " + cm
        if cm in stored:
            assert m["seq"] == stored[cm][0]

    assert postgres.query(
        "SELECT count(*), count(DISTINCT client_msg_id), min(seq), "
        "max(seq), count(DISTINCT seq), bool_and(seq = updated_seq) "
        "FROM chat.messages WHERE conversation_id = %s", (cid,)) == \
        [(n, n, 1, n, n, True)]
    assert postgres.query("SELECT last_seq FROM chat.conversations "
                          "WHERE id = %s", (cid,)) == [(n,)]
    # history agrees with storage
    hist = []
    after = 0
    while True:
        page = alice.ok("messages.history", conversation_id=cid,
                        after_seq=after, limit=100)
        hist += page["messages"]
        if not page["has_more"]:
            break
        after = page["messages"][-1]["seq"]
    assert [m["seq"] for m in hist] == list(range(1, n + 1))
    assert sorted(m["client_msg_id"] for m in hist) == cms

    # bob saw every message at most once (a send committed but never
    # answered is not delivered live: sync brings it)
    ping_rid = bob.request("ping")
    assert ping_rid["type"] == "ok"
    seen = [e["message"]["client_msg_id"] for e in bob.events
            if e.get("type") == "message.created"]
    assert len(seen) == len(set(seen))
    assert set(seen) == set(cms) - (set(stored) - set(acked))
    alice.close()
    bob.close()


# Regression (fixed in 0ae2dd0): with edge-triggered events a result
# bigger than libpq's input buffer (16 KB at first) that had arrived whole
# was read only in part (PQconsumeInput does not read to EAGAIN) and the
# request stalled until query_timeout, then answered `unavailable`.
def test_a_large_result_that_arrives_at_once_is_read(nginx, postgres):
    postgres.reset()
    ng = start(nginx, postgres, "query_timeout=3s")
    alice = connect(ng, "alice")
    cid = alice.ok("conversation.create", kind="direct",
                   user_id="bob")["conversation"]["id"]
    n = 100
    for i in range(n):
        alice.send_json(send_req("q%d" % i, cid, "s%d" % i, "x" * 300))
    for i in range(n):
        assert wait_reply(alice, "q%d" % i)["type"] == "ok"

    # the history query waits for a lock; meanwhile the worker sleeps, the
    # lock goes away and PostgreSQL writes the whole result (about 55 KB)
    locker = postgres.connect(autocommit=False)
    try:
        locker.execute("LOCK TABLE chat.messages IN ACCESS EXCLUSIVE MODE")
        alice.send_json({"type": "messages.history", "id": "h",
                         "conversation_id": cid, "limit": n})
        pid = wait_backend(postgres, "api_messages_history", "active")
        with Frozen(ng):
            locker.commit()
            wait_backend(postgres, "api_messages_history", "idle", pid)
        t0 = time.monotonic()
    finally:
        locker.close()
    reply = wait_reply(alice, "h", timeout=10)
    elapsed = time.monotonic() - t0
    assert reply["type"] == "ok", reply
    assert [m["seq"] for m in reply["data"]["messages"]] == \
        list(range(1, n + 1))
    assert elapsed < 2.0
    alice.close()


def wait_backend(postgres, text, state, pid=None, timeout=5):
    """The pid of the backend whose last query contains text, once it is
    in state ("active": waiting for a lock, "idle": done)."""
    deadline = time.monotonic() + timeout
    while True:
        r = postgres.query(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE %s "
            "AND state = %s AND (%s::int IS NULL OR pid = %s::int) "
            "AND (%s <> 'active' OR wait_event_type = 'Lock')",
            ("%" + text + "%", state, pid, pid, state))
        if r:
            return r[0][0]
        assert time.monotonic() < deadline, (text, state)
        time.sleep(0.02)


def test_typing_keeps_working_while_storage_is_down(nginx, postgres):
    """SPEC: PostgreSQL down, typing keeps working in groups of three or
    more: the members come from the conversation's last change this worker
    delivered."""
    postgres.reset()
    ng = start(nginx, postgres)
    alice, bob, carol = connect(ng, "alice"), connect(ng, "bob"), \
        connect(ng, "carol")
    cid = alice.ok("conversation.create", kind="group", title="g",
                   members=["bob", "erin"])["conversation"]["id"]
    other = carol.ok("conversation.create", kind="group", title="h",
                     members=["dave", "erin"])["conversation"]["id"]
    alice.ok("message.send", conversation_id=cid, body="hi",
             client_msg_id="t1")
    bob.next_event("message.created")
    try:
        postgres.stop()
        assert alice.ok("typing", conversation_id=cid, active=True) == {}
        ev = bob.next_event("typing")
        assert ev == {"type": "typing", "conversation_id": cid,
                      "user_id": "alice", "active": True}
        # not a member: the worker knows the members, carol is not one
        reply = carol.request("typing", conversation_id=cid, active=True)
        assert reply["error"]["code"] == "unavailable"
        # a conversation without a change seen here: unknown
        reply = carol.request("typing", conversation_id=other, active=True)
        assert reply["error"]["code"] == "unavailable"
        # the typist leaves: the others hear it stopped
        alice.close()
        ev = bob.next_event("typing")
        assert ev["active"] is False and ev["user_id"] == "alice"
        # and pings were answered throughout
        bob.ok("ping")
    finally:
        postgres.start()


def no_event(c, type_, timeout=1.0):
    """Nothing of type_ reaches c within timeout (others are kept)."""
    try:
        ev = c.next_event(type_, timeout=timeout)
    except Exception:
        return
    raise AssertionError("unexpected %r" % ev)


def test_l6_typing_while_storage_is_down_not_from_removed_members(
        nginx, postgres):
    """L6: PostgreSQL down, a member removed since the conversation's last
    message cannot type there: member.left forgets the cached members."""
    postgres.reset()
    ng = start(nginx, postgres)
    alice, bob, carol = connect(ng, "alice"), connect(ng, "bob"), \
        connect(ng, "carol")
    cid = alice.ok("conversation.create", kind="group", title="g",
                   members=["bob", "carol", "erin"])["conversation"]["id"]
    alice.ok("message.send", conversation_id=cid, body="hi",
             client_msg_id="l6a")
    bob.next_event("message.created")
    carol.next_event("message.created")
    # the host removes carol (through chat.outbox, as the host app would)
    postgres.query("SELECT chat.publish(chat.api_member_remove('alice', "
                   "%s::jsonb))", (json.dumps({"conversation_id": cid,
                                               "user_id": "carol"}),))
    assert carol.next_event("member.left")["user_id"] == "carol"
    bob.next_event("member.left")
    try:
        postgres.stop()
        reply = carol.request("typing", conversation_id=cid, active=True)
        assert reply["type"] == "error", reply
        assert reply["error"]["code"] == "unavailable"
        no_event(bob, "typing")
        bob.ok("ping")
    finally:
        postgres.start()


def test_l6_typing_while_storage_is_down_not_in_direct_conversations(
        nginx, postgres):
    """L6: PostgreSQL down, typing in a direct conversation (or any of two
    members) is `unavailable`: blocks are not known without storage."""
    postgres.reset()
    ng = start(nginx, postgres)
    alice, mallory = connect(ng, "alice"), connect(ng, "mallory")
    cid = mallory.ok("conversation.create", kind="direct",
                     user_id="alice")["conversation"]["id"]
    mallory.ok("message.send", conversation_id=cid, body="hi",
               client_msg_id="l6b")
    alice.next_event("message.created")
    postgres.query("SELECT chat.api_block('alice', "
                   "'{\"user_id\": \"mallory\"}')")
    try:
        postgres.stop()
        reply = mallory.request("typing", conversation_id=cid, active=True)
        assert reply["type"] == "error", reply
        assert reply["error"]["code"] == "unavailable"
        no_event(alice, "typing")
        alice.ok("ping")
    finally:
        postgres.start()
