"""One worker's send batches in flight share no conversation (store.c): a
send to a conversation another batch holds waits with that batch, and the
sends of its connection behind it.  Nothing is lost, answered twice or out
of order, and clients that go away meanwhile leave nothing behind."""

import json
import time

from chatlib import cmid, group, send, send_all


def collect(c, ids, timeout=60):
    """The answers to the requests ids, by id."""
    want = set(ids)
    got = {}
    deadline = time.monotonic() + timeout
    while want:
        f = json.loads(c.recv(max(0.01, deadline - time.monotonic())))
        if f.get("id") in want:
            got[f["id"]] = f
            want.discard(f["id"])
    return got


def test_pipelined_sends_over_shared_conversations_keep_their_order(chat):
    """Twelve connections pipeline fifteen sends each, four times, over
    three shared groups: every send answered ok, each connection's
    messages stored in the order sent, and in each conversation in the
    order of their numbers."""
    users = ["u%d" % i for i in range(12)]
    clients = [chat.ws(u) for u in users]
    convs = [group(clients[0], "g%d" % k, users[1:])["id"] for k in range(3)]
    sent = []
    for _ in range(4):
        for i, c in enumerate(clients):
            reqs = [{"type": "message.send",
                     "conversation_id": convs[(i + j) % 3],
                     "body": "b", "client_msg_id": cmid()}
                    for j in range(15)]
            sent.append((c, reqs, send_all(c, reqs)))
    for c, reqs, ids in sent:
        got = collect(c, ids)
        last_id, last_seq = 0, {}
        for req, rid in zip(reqs, ids):
            f = got[rid]
            assert f["type"] == "ok", f
            m = f["data"]["message"]
            assert m["id"] > last_id, (m, last_id)
            last_id = m["id"]
            cid = req["conversation_id"]
            assert m["seq"] > last_seq.get(cid, 0)
            last_seq[cid] = m["seq"]
    counts = chat.sql("SELECT conversation_id, count(*), max(seq) "
                      "FROM chat.messages GROUP BY 1 ORDER BY 1")
    assert sum(n for _, n, _ in counts) == 12 * 15 * 4
    assert all(n == top for _, n, top in counts)


def test_clients_that_leave_while_their_sends_wait(chat):
    """A batch stuck on a conversation's lock (held here from SQL); sends
    of two other clients wait behind it, first sends and the ones after
    them; the clients go away; then the lock goes: the worker is alive
    and sends to both conversations go on."""
    users = ["u%d" % i for i in range(4)]
    cs = [chat.ws(u) for u in users]
    g = group(cs[0], "g", users[1:])["id"]
    h = group(cs[0], "h", users[1:])["id"]
    lock = chat.pg.connect()
    cur = lock.cursor()
    cur.execute("BEGIN")
    cur.execute("SELECT 1 FROM chat.conversations WHERE id = %s FOR UPDATE",
                (g,))
    send_all(cs[1], [{"type": "message.send", "conversation_id": g,
                      "body": "1", "client_msg_id": cmid()}])
    time.sleep(0.3)
    send_all(cs[2], [{"type": "message.send", "conversation_id": c,
                      "body": "2", "client_msg_id": cmid()}
                     for c in (g, h, g, h)])
    send_all(cs[3], [{"type": "message.send", "conversation_id": c,
                      "body": "3", "client_msg_id": cmid()}
                     for c in (h, g, h)])
    time.sleep(0.3)
    for c in cs[1:]:
        c.close()
    time.sleep(0.3)
    lock.rollback()
    lock.close()
    for c in (g, h):
        send(cs[0], c, "after")
    assert chat.sql("SELECT count(*) FROM chat.messages "
                    "WHERE body = 'after'") == [(2,)]
    log = chat.ng.error_log()
    assert "exited on signal" not in log and "[alert]" not in log, log[-2000:]


def blocked_on_lock(chat, timeout=30):
    """Waits until a send batch waits in PostgreSQL for a row lock."""
    deadline = time.monotonic() + timeout
    while chat.sql("SELECT count(*) FROM pg_stat_activity "
                   "WHERE wait_event_type = 'Lock' "
                   "AND query LIKE '%api_message_send_rows%'") != [(1,)]:
        assert time.monotonic() < deadline, "no send batch waits on the lock"
        time.sleep(0.05)


def test_a_send_that_waited_past_queue_timeout_is_answered_unavailable(
        chat_env):
    """A batch stuck on a conversation's lock (held here from SQL); the
    first sends of two other connections to that conversation wait with
    it past queue_timeout, a send of another conversation and a second
    send of one of them behind it: when the lock goes, the two that
    waited too long are answered unavailable (by their ids) and nothing
    of them is stored; everything else is stored, in order, and the
    connections go on."""
    chat = chat_env.start(pg_params="queue_timeout=500ms query_timeout=60s")
    users = ["u%d" % i for i in range(4)]
    cs = [chat.ws(u) for u in users]
    g = group(cs[0], "g", users[1:])["id"]
    h = group(cs[0], "h", users[1:])["id"]
    lock = chat.pg.connect()
    cur = lock.cursor()
    cur.execute("BEGIN")
    cur.execute("SELECT 1 FROM chat.conversations WHERE id = %s FOR UPDATE",
                (g,))
    first = send_all(cs[1], [{"type": "message.send", "conversation_id": g,
                              "body": "first", "client_msg_id": cmid()}])
    blocked_on_lock(chat)
    late2 = send_all(cs[2], [{"type": "message.send", "conversation_id": c,
                              "body": b, "client_msg_id": cmid()}
                             for c, b in ((g, "late2"), (g, "behind"))])
    late3 = send_all(cs[3], [{"type": "message.send", "conversation_id": g,
                              "body": "late3", "client_msg_id": cmid()}])
    # a pong comes after the worker read the frames before it: the sends
    # wait from then on; then past queue_timeout, and the lock goes
    cs[2].ping()
    cs[3].ping()
    other = send(cs[0], h, "other")
    time.sleep(1.5)
    lock.rollback()
    lock.close()

    assert collect(cs[1], first)[first[0]]["type"] == "ok"
    got = collect(cs[2], late2)
    assert got[late2[0]]["type"] == "error", got
    assert got[late2[0]]["error"]["code"] == "unavailable", got
    assert got[late2[1]]["type"] == "ok", got
    got = collect(cs[3], late3)
    assert got[late3[0]]["type"] == "error", got
    assert got[late3[0]]["error"]["code"] == "unavailable", got
    # the connections go on, in the same conversation
    for i in (2, 3):
        send(cs[i], g, "after%d" % i)
    assert chat.sql("SELECT body FROM chat.messages WHERE conversation_id "
                    "= %d ORDER BY seq" % g) == [
        ("first",), ("behind",), ("after2",), ("after3",)]
    assert other["conversation_id"] == h
    log = chat.ng.error_log()
    assert "exited on signal" not in log and "[alert]" not in log, log[-2000:]
