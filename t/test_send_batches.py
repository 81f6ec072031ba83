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
