"""Several nginx nodes over one PostgreSQL (`chat_cluster on`): three
instances on this machine, each with its own prefix, port and chat_zone,
sharing the JWT key and the database.  Clients on different nodes must
behave as if on one: messages, edits, deletes, typing, receipts and
presence cross; a node killed with SIGKILL takes its users offline once
its lease expires; a PostgreSQL restart loses and duplicates nothing; a
retry through another node is stored and delivered once.

What crosses nodes goes through PostgreSQL (NOTIFY chat_cluster, then a
read), so waits are generous; nothing here measures speed.  The nodes sign
their notices (chat_cluster_secret) unless a test says otherwise; the M3
tests send forged ones as a role with no rights at all.
"""

import json
import os
import re
import time
import uuid

import pytest

from chatlib import http, make_token, parse_metrics, pid_of, ws_connect

LEASE = 10          # seconds, NGX_HTTP_CHAT_CLUSTER_LEASE
TICK = 2            # seconds between round trips
GRACE = 3           # presence grace period
CROSS = 10          # seconds to wait for something to cross nodes

WS = """
    location = /chat/ws { chat_websocket; }
    location /api/chat/ { chat_api; }
    location = /chat/status { chat_status; }
"""


@pytest.fixture
def cluster(nginx, postgres, tmp_path):
    """start(n): n nodes "node1".. sharing the key; returns the list."""
    postgres.reset()
    key = os.urandom(32)
    keyfile = tmp_path / "jwt.key"
    keyfile.write_bytes(key)
    os.chmod(keyfile, 0o644)
    secretfile = tmp_path / "cluster.secret"
    secretfile.write_text(os.urandom(32).hex() + "\n")
    os.chmod(secretfile, 0o644)

    class Cluster:
        nodes = []

        def start(self, n, workers=1, secret=True, pool=2):
            for i in range(n):
                http = ('chat_jwt_key hs256 file=%s;\n'
                        'chat_zone chat 8m;\n'
                        'chat_postgres "%s" pool=%d;\n'
                        'chat_cluster on;\n'
                        'chat_node_id node%d;\n'
                        % (keyfile, postgres.dsn, pool, len(self.nodes) + 1))
                if secret:
                    http += 'chat_cluster_secret file=%s;\n' % secretfile
                ng = nginx(WS, http=http, workers=workers)
                # every worker knows where the outbox ends: conversation
                # events made from here on cross (a worker starts there)
                deadline = time.monotonic() + 15
                while len(re.findall(r"reading chat\.outbox after id",
                                     ng.error_log())) < workers:
                    assert time.monotonic() < deadline, ng.error_log()
                    time.sleep(0.05)
                self.nodes.append(ng)
            return self.nodes

        def connect(self, node, user):
            return ws_connect(node, make_token(key, user))

        def rest(self, node, user, method, path):
            return http(node, method, "/api/chat/" + path,
                        token=make_token(key, user))

    c = Cluster()
    c.nodes = []
    c.pg = postgres
    return c


def new_id():
    return str(uuid.uuid4())


def events_of(client, type_, quiet=1.5, timeout=CROSS):
    """Every event of type_ until none came for `quiet` seconds (waiting
    at most `timeout` for the first)."""
    out = []
    wait = timeout
    while True:
        try:
            out.append(client.next_event(type_, timeout=wait))
        except TimeoutError:
            return out
        wait = quiet


def send_retrying(client, cid, body, timeout=30):
    """message.send with one client_msg_id, again while storage is
    unavailable; the stored message."""
    cmid = new_id()
    deadline = time.monotonic() + timeout
    while True:
        r = client.request("message.send", conversation_id=cid, body=body,
                           client_msg_id=cmid)
        if r["type"] == "ok":
            return r["data"]["message"]
        assert r["error"]["code"] == "unavailable", r
        assert time.monotonic() < deadline, "storage never came back"
        time.sleep(0.2)


def conv_created(client, cid, timeout=CROSS):
    """Waits for conversation.created of cid (earlier ones are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        ev = client.next_event("conversation.created",
                               timeout=max(0.01, deadline - time.monotonic()))
        if ev["conversation"]["id"] == cid:
            return ev


def direct_pair(cluster, node_a, node_b):
    """alice on node_a, bob on node_b, and their direct conversation (bob
    has heard of it; alice watches bob's presence)."""
    alice = cluster.connect(node_a, "alice")
    bob = cluster.connect(node_b, "bob")
    conv = alice.ok("conversation.create", kind="direct",
                    user_id="bob")["conversation"]
    conv_created(bob, conv["id"])
    # alice connected before they were partners: she asks for bob
    alice.ok("presence.subscribe", user_ids=["bob"])
    return alice, bob, conv


def created(client, n, timeout=CROSS):
    """Exactly n message.created events, then a quiet period."""
    evs = []
    deadline = time.monotonic() + timeout
    while len(evs) < n and time.monotonic() < deadline:
        try:
            evs.append(client.next_event("message.created",
                                         timeout=deadline - time.monotonic()))
        except TimeoutError:
            break
    evs += events_of(client, "message.created", timeout=1.5)
    return [e["message"] for e in evs]


def test_direct_and_group_conversations_cross_nodes(cluster):
    a, b, c = cluster.start(3)
    alice = cluster.connect(a, "alice")
    bob = cluster.connect(b, "bob")
    carol = cluster.connect(c, "carol")

    # a direct conversation made on node 1 reaches bob on node 2
    conv = alice.ok("conversation.create", kind="direct",
                    user_id="bob")["conversation"]
    conv_created(bob, conv["id"])

    sent = alice.ok("message.send", conversation_id=conv["id"], body="hi bob",
                    client_msg_id=new_id())["message"]
    got = created(bob, 1)
    assert [m["id"] for m in got] == [sent["id"]]
    assert got[0]["body"] == "hi bob"

    reply = bob.ok("message.send", conversation_id=conv["id"], body="hi!",
                   client_msg_id=new_id())["message"]
    mine_and_reply = created(alice, 2)
    assert [m["id"] for m in mine_and_reply] == [sent["id"], reply["id"]]

    # typing crosses, and so does its end
    bob.ok("typing", conversation_id=conv["id"], active=True)
    ev = alice.next_event("typing", timeout=CROSS)
    assert (ev["user_id"], ev["active"]) == ("bob", True)
    bob.ok("typing", conversation_id=conv["id"], active=False)
    ev = alice.next_event("typing", timeout=CROSS)
    assert (ev["user_id"], ev["active"]) == ("bob", False)

    # a read receipt crosses
    bob.ok("message.read", conversation_id=conv["id"], seq=reply["seq"])
    ev = alice.next_event("receipt", timeout=CROSS)
    assert (ev["user_id"], ev["kind"], ev["seq"]) == \
        ("bob", "read", reply["seq"])

    # edits and deletes cross
    alice.ok("message.edit", message_id=sent["id"], body="hi bob (edited)")
    ev = bob.next_event("message.updated", timeout=CROSS)
    assert ev["message"]["body"] == "hi bob (edited)"
    alice.ok("message.delete", message_id=sent["id"])
    ev = bob.next_event("message.deleted", timeout=CROSS)
    assert ev["message"]["id"] == sent["id"] and ev["message"]["deleted"]

    # a group over three nodes: every message once to each other member
    group = carol.ok("conversation.create", kind="group", title="three",
                     members=["alice", "bob"])["conversation"]
    for who in (alice, bob):
        conv_created(who, group["id"])
    ids = []
    for who, text in ((alice, "one"), (bob, "two"), (carol, "three"),
                      (alice, "four")):
        ids.append(who.ok("message.send", conversation_id=group["id"],
                          body=text, client_msg_id=new_id())["message"]["id"])
    for who in (alice, bob, carol):
        got = [m for m in created(who, 4) if m["conversation_id"] == group["id"]]
        assert [m["id"] for m in got] == ids, who

    for cl in (alice, bob, carol):
        cl.close()


def test_many_messages_cross_in_order_once(cluster):
    a, b = cluster.start(2)
    alice, bob, conv = direct_pair(cluster, a, b)
    # pipelined: consecutive sends share batches and notices
    for i in range(200):
        alice.send_json({"type": "message.send", "id": i,
                         "conversation_id": conv["id"], "body": "m%d" % i,
                         "client_msg_id": "c%d" % i})
    acks = 0
    while acks < 200:
        frame = alice.recv_json(timeout=30)
        acks += frame.get("type") == "ok"
    got = created(bob, 200, timeout=30)
    assert [m["body"] for m in got] == ["m%d" % i for i in range(200)]
    assert [m["seq"] for m in got] == list(range(1, 201))
    alice.close()
    bob.close()


def test_an_earlier_change_from_another_node_comes_after_a_local_one(
        cluster, postgres):
    """A worker follows a conversation from the first change it sees.  When
    that was one committed on its own node, and another node's earlier
    change was still on its way, the notice of the earlier one was declined
    ("delivered already": it is numbered below) and never read: the first
    messages of a conversation under load, lost for the receiver (bench
    scenario f).  It now comes, late.

    Deterministic: node2 starts after the conversation exists (its worker
    knows no start), alice's message is committed without a notice (SQL),
    bob's through node2, and only then does the notice of alice's arrive
    (unsigned, as node1 would send it)."""
    (a,) = cluster.start(1, secret=False)
    alice = cluster.connect(a, "alice")
    cid = alice.ok("conversation.create", kind="direct",
                   user_id="bob")["conversation"]["id"]
    (_, b) = cluster.start(1, secret=False)
    bob = cluster.connect(b, "bob")

    first = postgres.query(
        "SELECT chat.api_message_send('alice', %s::jsonb)",
        (json.dumps({"conversation_id": cid, "body": "first",
                     "client_msg_id": new_id()}),))[0][0]
    assert first["ok"]["message"]["seq"] == 1, first
    mine = bob.ok("message.send", conversation_id=cid, body="second",
                  client_msg_id=new_id())["message"]
    assert mine["seq"] == 2
    assert [m["body"] for m in created(bob, 1)] == ["second"]

    with lowpriv(postgres) as db:
        notify(db, {"o": "node1", "x": [["m", cid, 1, 1]]})
    postgres.query("DROP ROLE m3_lowpriv")
    assert [(m["seq"], m["body"]) for m in created(bob, 1)] == [
        (1, "first")]
    alice.close()
    bob.close()


def test_presence_across_nodes(cluster):
    a, b, c = cluster.start(3)
    alice, bob, conv = direct_pair(cluster, a, b)
    bob.close()
    ev = alice.next_event("presence", timeout=CROSS)
    assert (ev["user_id"], ev["online"]) == ("bob", False)

    # bob comes back on node 2: alice on node 1 hears it and can ask
    bob = cluster.connect(b, "bob")
    ev = alice.next_event("presence", timeout=CROSS)
    assert (ev["user_id"], ev["online"]) == ("bob", True)
    assert alice.ok("presence.query", user_ids=["bob"])["presence"]["bob"] \
        == {"online": True, "last_seen": None}
    # node 3 has never seen bob: it knows from the others (carol may know
    # of bob: bob lists her as a contact, M1)
    cluster.pg.query("INSERT INTO chat.contacts (owner_id, contact_id) "
                     "VALUES ('bob', 'carol')")
    carol = cluster.connect(c, "carol")
    deadline = time.monotonic() + CROSS
    while carol.ok("presence.query",
                   user_ids=["bob"])["presence"]["bob"]["online"] is not True:
        assert time.monotonic() < deadline, "node 3 never saw bob online"
        time.sleep(0.2)

    # bob on two nodes: leaving one says nothing
    bob3 = cluster.connect(c, "bob")
    bob.close()
    assert events_of(alice, "presence", quiet=GRACE + 2,
                     timeout=GRACE + 2) == []
    assert alice.ok("presence.query",
                    user_ids=["bob"])["presence"]["bob"]["online"] is True
    # leaving the last one does
    bob3.close()
    ev = alice.next_event("presence", timeout=GRACE + CROSS)
    assert (ev["user_id"], ev["online"]) == ("bob", False)
    assert ev["last_seen"]
    deadline = time.monotonic() + CROSS
    while alice.ok("presence.query",
                   user_ids=["bob"])["presence"]["bob"]["online"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    alice.close()
    carol.close()


def test_presence_by_interest_across_nodes(cluster):
    """Issue 15: a watcher on node 1 hears the users of node 2 it asked
    for, and only those (a shared group alone says nothing); a block made
    on node 2 ends it on node 1; presence.count counts every node."""
    a, b = cluster.start(2)
    alice = cluster.connect(a, "alice")
    carol = cluster.connect(b, "carol")
    g = alice.ok("conversation.create", kind="group", title="g",
                 members=["bob", "carol", "dave"])["conversation"]["id"]
    assert alice.ok("presence.subscribe", user_ids=["bob", "carol"]) == {
        "presence": {"bob": {"online": False, "last_seen": None},
                     "carol": {"online": True, "last_seen": None}}}
    cluster.connect(b, "dave")
    bob = cluster.connect(b, "bob")
    ev = alice.next_event("presence", timeout=CROSS)
    assert (ev["user_id"], ev["online"]) == ("bob", True)
    deadline = time.monotonic() + CROSS
    while alice.ok("presence.count", conversation_id=g)["online"] != 4:
        assert time.monotonic() < deadline, "node 1 never counted 4"
        time.sleep(0.2)
    # bob blocks alice through node 2; then bob and carol go: alice hears
    # of carol only
    assert cluster.rest(b, "bob", "PUT", "blocks/alice").status == 200
    time.sleep(1)
    bob.close()
    carol.close()
    got = events_of(alice, "presence", quiet=GRACE + 1,
                    timeout=GRACE + CROSS)
    assert [(e["user_id"], e["online"]) for e in got] == [("carol", False)]
    alice.close()


@pytest.mark.allow_log(r"stopped renewing its lease")
def test_a_killed_node_takes_its_users_offline(cluster):
    a, b, c = cluster.start(3)
    alice, bob, conv = direct_pair(cluster, a, c)
    assert alice.ok("presence.query",
                    user_ids=["bob"])["presence"]["bob"]["online"] is True

    c.kill()
    killed = time.monotonic()
    ev = alice.next_event("presence", timeout=LEASE + 3 * TICK + CROSS)
    assert (ev["user_id"], ev["online"]) == ("bob", False)
    assert time.monotonic() - killed > LEASE - 2 * TICK     # by the lease
    assert alice.ok("presence.query",
                    user_ids=["bob"])["presence"]["bob"]["online"] is False

    # the others keep serving: bob on node 2 now
    bob = cluster.connect(b, "bob")
    alice.next_event("presence", timeout=CROSS)
    m = alice.ok("message.send", conversation_id=conv["id"], body="still here",
                 client_msg_id=new_id())["message"]
    assert [x["id"] for x in created(bob, 1)] == [m["id"]]
    alice.close()
    bob.close()


def test_postgres_restart_loses_and_duplicates_nothing(cluster, postgres):
    a, b = cluster.start(2)
    alice, bob, conv = direct_pair(cluster, a, b)
    first = alice.ok("message.send", conversation_id=conv["id"], body="before",
                     client_msg_id=new_id())["message"]
    assert [m["id"] for m in created(bob, 1)] == [first["id"]]

    postgres.stop()
    postgres.start()

    # sends retried until storage is back, each with its own id
    bodies = ["after%d" % i for i in range(20)]
    for body in bodies:
        send_retrying(alice, conv["id"], body)
    got = created(bob, 20, timeout=30)
    assert [m["body"] for m in got] == bodies
    alice.close()
    bob.close()


@pytest.mark.parametrize("workers", [1, 3])
def test_listener_lost_meanwhile_catches_up(cluster, postgres, workers):
    """Node 2's PostgreSQL connections are cut while node 1 sends: the
    notices are gone, the round trip finds the messages (with several
    workers, for clients on every worker of the reader's node)."""
    a, b = cluster.start(2, workers=workers)
    alice, bob, conv = direct_pair(cluster, a, b)
    others = [c for c, _ in on_every_worker(cluster, b, "bob")] \
        if workers > 1 else []
    alice.ok("message.send", conversation_id=conv["id"], body="zero",
             client_msg_id=new_id())
    assert len(created(bob, 1)) == 1

    ids = []
    for i in range(5):
        ids.append(send_retrying(alice, conv["id"], "gap%d" % i)["id"])
        if i == 1:
            postgres.query("SELECT pg_terminate_backend(pid) FROM "
                           "pg_stat_activity WHERE datname = 'chat' AND "
                           "pid <> pg_backend_pid() AND "
                           "backend_type = 'client backend'")
    got = created(bob, 5, timeout=30)
    assert [m["id"] for m in got] == ids
    for c in others:
        assert [m["id"] for m in created(c, 6, timeout=30)][-5:] == ids
        c.close()
    alice.close()
    bob.close()


def test_a_retry_through_another_node_is_delivered_once(cluster):
    a, b, c = cluster.start(3)
    alice, bob, conv = direct_pair(cluster, a, c)

    # the send reaches node 1, the connection dies before its answer
    cmid = new_id()
    alice.send_json({"type": "message.send", "id": 1,
                     "conversation_id": conv["id"], "body": "once",
                     "client_msg_id": cmid})
    alice.close()
    # the client fails over to node 2 and sends again
    alice2 = cluster.connect(b, "alice")
    m = alice2.ok("message.send", conversation_id=conv["id"], body="once",
                  client_msg_id=cmid)["message"]
    got = created(bob, 1)
    assert [x["id"] for x in got] == [m["id"]]
    mine = created(alice2, 1)
    assert [x["id"] for x in mine] in ([m["id"]], [])
    alice2.close()
    bob.close()


def test_bad_notices_change_nothing(cluster, postgres):
    """Whatever arrives on chat_cluster (another program, a bug) is
    checked: wrong notices are skipped and the node keeps working."""
    a, b = cluster.start(2)
    alice, bob, conv = direct_pair(cluster, a, b)
    bad = [
        "not json", "[]", "{}", '{"o": 1, "x": []}',
        '{"o": "evil", "x": 7}',
        '{"o": "evil", "x": [1, [], ["mm", 1, 1, 1], ["m"], ["m", "1", 1, 1],'
        ' ["m", -5, 1, 2], ["m", %d, 5, 1], ["m", 1, 0, 0]]}' % conv["id"],
        '{"o": "evil", "x": [["e"], ["e", "typing", []], ["e", {}, "bob"],'
        ' ["e", {"type": "message.created", "message": 5}, ["bob"]]]}',
        '{"o": "evil", "x": [["p"], ["p", 5, true], ["p", "", true],'
        ' ["p", "%s", true], ["p", "carol", true, "yesterday"]]}' % ("x" * 300),
    ]
    with postgres.connect() as db:
        for payload in bad:
            db.execute("SELECT pg_notify('chat_cluster', %s)", (payload,))
    # still one chat: a message crosses once
    m = alice.ok("message.send", conversation_id=conv["id"], body="fine",
                 client_msg_id=new_id())["message"]
    assert [x["id"] for x in created(bob, 1)] == [m["id"]]
    # an event that is not one a node sends by notice is not delivered
    assert events_of(bob, "message.created", quiet=0.5, timeout=0.5) == []
    a.wait_log(r"notice without a valid signature was refused")
    alice.close()
    bob.close()


def presence_of(client, users):
    return {u: p["online"] for u, p in client.ok(
        "presence.query", user_ids=users)["presence"].items()}


def wait_presence(client, users, want, timeout=CROSS):
    deadline = time.monotonic() + timeout
    while True:
        got = presence_of(client, users)
        if got == want:
            return
        assert time.monotonic() < deadline, got
        time.sleep(0.1)


def test_gone_notices_about_this_node_an_unknown_one_or_again_harm_nothing(
        cluster, postgres):
    """["g", node] says a node is gone and every receiver forgets its
    users.  Nodes send it signed (chat_cluster_secret: only a node holding
    the secret can, and a replay is refused, test_m3_*); without the
    secret any role that can connect may.  Either way, one naming the
    receiving node, an unknown or malformed node, or one heard again
    after the node was forgotten, forgets nobody else and breaks
    nothing."""
    a, b = cluster.start(2, secret=False)
    pids = (a.worker_pids(), b.worker_pids())
    alice, bob, conv = direct_pair(cluster, a, b)
    carol = cluster.connect(a, "carol")
    dave = cluster.connect(b, "dave")
    # contacts, so that presence answers about each of them (and erin)
    postgres.query("INSERT INTO chat.contacts (owner_id, contact_id) "
                   "SELECT o, w FROM unnest(ARRAY['carol', 'dave', 'erin']) "
                   "o, unnest(ARRAY['alice', 'bob']) w")
    users = ["alice", "bob", "carol", "dave", "erin"]
    everyone = dict.fromkeys(users[:4], True)
    wait_presence(alice, users, dict(everyone, erin=False))
    wait_presence(bob, users, dict(everyone, erin=False))

    def erin_on_ghost_then_gone(db, before):
        """erin online on a made-up node "ghost", then ghost gone: when
        both nodes say erin is offline again, they have handled what was
        notified before (one listener hears a channel in order)."""
        notify(db, {"o": "ghost", "x": [["p", "erin", True, None]]})
        wait_presence(alice, users, dict(everyone, erin=True))
        wait_presence(bob, users, dict(everyone, erin=True))
        for payload in before:
            notify(db, payload)
        notify(db, {"o": "ghost", "x": [["g", "ghost"]]})
        for client in (alice, bob):
            wait_presence(client, users, dict(everyone, erin=False))

    with lowpriv(postgres) as db:
        erin_on_ghost_then_gone(db, [
            # each node is told that it is gone itself (a node skips its
            # own notices: "o" the other one reaches only the one named)
            {"o": "node2", "x": [["g", "node1"]] * 3},
            {"o": "node1", "x": [["g", "node2"]] * 3},
            # unknown or malformed nodes
            {"o": "ghost", "x": [["g", "node9"], ["g", ""], ["g"],
                                 ["g", 5], ["g", None], ["g", "x" * 65],
                                 ["g", "node1\u0000"], ["g", "node"]]},
        ])
        # ghost heard gone again and again once forgotten; then it comes
        # back with erin and goes once more
        erin_on_ghost_then_gone(db, [{"o": "ghost", "x": [["g", "ghost"]]},
                                     {"o": "node9",
                                      "x": [["g", "ghost"]] * 5}])
        erin_on_ghost_then_gone(db, [])
    postgres.query("DROP ROLE m3_lowpriv")

    # every node still knows everyone it held and heard of
    for client in (alice, bob):
        assert presence_of(client, users) == dict(everyone, erin=False)
    # and the cluster still works both ways
    for sender, receiver in ((alice, bob), (bob, alice)):
        m = sender.ok("message.send", conversation_id=conv["id"],
                      body="fine", client_msg_id=new_id())["message"]
        while receiver.next_event("message.created",
                                  timeout=CROSS)["message"]["id"] != m["id"]:
            pass
    assert (a.worker_pids(), b.worker_pids()) == pids
    for c in (alice, bob, carol, dave):
        c.close()


def test_cluster_needs_a_zone_and_storage(nginx):
    rc, out = nginx.check_config(WS, http="chat_cluster on;")
    assert rc != 0 and "needs chat_zone and chat_postgres" in out
    rc, out = nginx.check_config(WS, http='chat_node_id "a b";')
    assert rc != 0 and "chat_node_id must be" in out


# --------------------------------------------------------------------------
# M3: NOTIFY is open to any role that can connect; notices are not trusted

def lowpriv(postgres):
    """A connection as a role with no rights at all (PUBLIC may CONNECT and
    NOTIFY, which is all the attack needs)."""
    import psycopg
    postgres.query("DROP ROLE IF EXISTS m3_lowpriv")
    postgres.query("CREATE ROLE m3_lowpriv LOGIN")
    return psycopg.connect("host=%s dbname=chat user=m3_lowpriv"
                           % postgres.socket_dir, autocommit=True)


def notify(db, payload):
    if not isinstance(payload, str):
        payload = json.dumps(payload)
    db.execute("SELECT pg_notify('chat_cluster', %s)", (payload,))


def worker_rss_kb(node):
    total = 0
    for pid in node.worker_pids():
        with open("/proc/%d/status" % pid) as f:
            total += int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    return total


def typing_from(client, user):
    return [e for e in events_of(client, "typing", quiet=1, timeout=2)
            if e["user_id"] == user]


STALL = 9000000000000000000


def test_m3_forged_notices_from_a_low_privilege_role_are_refused(
        cluster, postgres):
    """M3: with chat_cluster_secret, notices a role without any rights
    sends (unsigned, wrongly signed, or genuine ones sent again) forge
    nothing, and live delivery and memory stay as they were."""
    a, b = cluster.start(2)
    alice, bob, conv = direct_pair(cluster, a, b)
    cid = conv["id"]
    for i in range(20):
        alice.ok("message.send", conversation_id=cid, body="seed %d" % i,
                 client_msg_id=new_id())
    assert len(created(bob, 20)) == 20
    rss = worker_rss_kb(b)

    with lowpriv(postgres) as db:
        heard = []
        db.add_notify_handler(lambda n: heard.append(n.payload))
        db.execute("LISTEN chat_cluster")
        # a genuine signed notice, heard as anyone may hear it
        alice.ok("typing", conversation_id=cid, active=True)
        assert bob.next_event("typing", timeout=CROSS)["user_id"] == "alice"
        deadline = time.monotonic() + CROSS
        while not any('"typing"' in h for h in heard):
            assert time.monotonic() < deadline, heard
            db.execute("SELECT 1")
            time.sleep(0.1)
        genuine = [h for h in heard if '"typing"' in h][0]
        assert re.match(r"^[0-9a-f]{64}\{", genuine)

        receipt = {"type": "receipt", "conversation_id": cid,
                   "user_id": "ceo", "kind": "read", "seq": 999999,
                   "message": {"body": "forged body, reset your password"}}
        typing = {"type": "typing", "conversation_id": cid,
                  "user_id": "alice", "active": True,
                  "html": "<img src=x onerror=alert(1)>"}
        attacks = [
            # 1-2: forged receipt and typing, unsigned
            {"o": "node1", "x": [["e", receipt, ["bob"]]]},
            {"o": "node1", "x": [["e", typing, ["bob"]]]},
            # 3: a made-up node says ceo is online
            {"o": "ghost", "x": [["p", "ceo", True, None]]},
            # 4: huge ranges, 5: the one-notice stall
            {"o": "node1", "x": [["m", cid, 1, 1000]] * 5},
            {"o": "node1", "x": [["m", cid, 1, STALL]]},
        ]
        # 6: seventy made-up nodes
        attacks += [{"o": "ghost%d" % i, "x": [["p", "fake%d" % i, True,
                                                None]]}
                    for i in range(70)]
        for payload in attacks:
            notify(db, payload)
        # 7: signed with a made-up signature, 8: the genuine one again
        notify(db, "0" * 64 + json.dumps(attacks[0]))
        notify(db, "f" * 64 + json.dumps({"o": "node1", "w": 1, "s": 1,
                                          "x": [["e", receipt, ["bob"]]]}))
        notify(db, genuine)
        notify(db, genuine)
        # 9: someone else's signature on another payload
        notify(db, genuine[:64] + json.dumps(attacks[0]))
        db.execute("SELECT 1")
    postgres.query("DROP ROLE m3_lowpriv")

    # nothing forged arrived
    assert events_of(bob, "receipt", quiet=1, timeout=2) == []
    assert typing_from(bob, "alice") == []
    # they list bob as a contact, so that presence answers for them (M1)
    # and says whether a forged notice made them online
    postgres.query("INSERT INTO chat.contacts (owner_id, contact_id) "
                   "VALUES ('ceo', 'bob'), ('fake0', 'bob'), "
                   "('fake69', 'bob')")
    assert bob.ok("presence.query", user_ids=["ceo", "fake0", "fake69"]) == \
        {"presence": {u: {"online": False, "last_seen": None}
                      for u in ("ceo", "fake0", "fake69")}}
    # live delivery goes on in the conversation the stall notice named
    sent = [alice.ok("message.send", conversation_id=cid, body="live %d" % i,
                     client_msg_id=new_id())["message"]["id"]
            for i in range(5)]
    assert [m["id"] for m in created(bob, 5, timeout=CROSS)] == sent
    # genuine cross-node traffic still works
    alice.ok("typing", conversation_id=cid, active=False)
    ev = bob.next_event("typing", timeout=CROSS)
    assert ev == {"type": "typing", "conversation_id": cid,
                  "user_id": "alice", "active": False}
    assert worker_rss_kb(b) - rss < 20 * 1024
    b.wait_log(r"notice without a valid signature was refused")
    alice.close()
    bob.close()


def test_m3_unsigned_notices_are_rebuilt_checked_and_clamped(
        cluster, postgres):
    """M3: even without chat_cluster_secret (or from a node whose key
    leaked), a notice's events are rebuilt from typed fields, go only to
    members and from members, presence only from a node that holds the
    user, and a range never stops live delivery."""
    a, b = cluster.start(2, secret=False)
    alice, bob, conv = direct_pair(cluster, a, b)
    cid = conv["id"]
    alice.ok("message.send", conversation_id=cid, body="hi",
             client_msg_id=new_id())
    assert len(created(bob, 1)) == 1

    with lowpriv(postgres) as db:
        for x in (
                # a receipt of a member, with a forged message in it
                ["e", {"type": "receipt", "conversation_id": cid,
                       "user_id": "alice", "kind": "read", "seq": 1,
                       "message": {"body": "forged"}}, ["bob"]],
                # typing with markup in an extra field
                ["e", {"type": "typing", "conversation_id": cid,
                       "user_id": "alice", "active": True,
                       "html": "<img src=x onerror=alert(1)>"}, ["bob"]],
                # typing of a stranger, and to a stranger
                ["e", {"type": "typing", "conversation_id": cid,
                       "user_id": "ceo", "active": True}, ["bob"]],
                # a presence online from a node that does not hold ceo
                ["e", {"type": "presence", "user_id": "ceo",
                       "online": True, "last_seen": None}, ["bob"]],
                # a receipt of another kind, and with a bad seq
                ["e", {"type": "receipt", "conversation_id": cid,
                       "user_id": "alice", "kind": "pwned", "seq": 1},
                 ["bob"]],
                ["e", {"type": "receipt", "conversation_id": cid,
                       "user_id": "alice", "kind": "read", "seq": "1"},
                 ["bob"]]):
            notify(db, {"o": "ghost", "x": [x]})
    postgres.query("DROP ROLE m3_lowpriv")

    receipts = events_of(bob, "receipt", quiet=1, timeout=3)
    assert receipts == [{"type": "receipt", "conversation_id": cid,
                         "user_id": "alice", "kind": "read", "seq": 1}]
    assert events_of(bob, "typing", quiet=1, timeout=1) == [
        {"type": "typing", "conversation_id": cid, "user_id": "alice",
         "active": True}]
    assert events_of(bob, "presence", quiet=0.5, timeout=0.5) == []
    alice.close()
    bob.close()


def test_m3_a_range_notice_never_stops_live_delivery(cluster, postgres):
    """M3: ["m", cid, 1, 9e18] (unsigned here, as from a node whose key
    leaked) made the node believe it had asked for everything up to 9e18,
    and declined every later notice of the conversation: what is asked is
    now cut to the conversation's real last number once read."""
    a, b = cluster.start(2, secret=False)
    alice, bob, conv = direct_pair(cluster, a, b)
    cid = conv["id"]
    alice.ok("message.send", conversation_id=cid, body="hi",
             client_msg_id=new_id())
    assert len(created(bob, 1)) == 1
    with lowpriv(postgres) as db:
        notify(db, {"o": "ghost", "x": [["m", cid, 1, STALL]]})
        notify(db, {"o": "ghost", "x": [["m", cid + 1000, 1, STALL]]})
    postgres.query("DROP ROLE m3_lowpriv")
    time.sleep(1)
    sent = []
    for i in range(5):
        sent.append(alice.ok("message.send", conversation_id=cid,
                             body="live %d" % i,
                             client_msg_id=new_id())["message"]["id"])
        # live: each within a second, not a round trip or a sync later
        ev = bob.next_event("message.created", timeout=1.5)
        assert ev["message"]["id"] == sent[-1]
    alice.close()
    bob.close()


def test_m3_cluster_secret_directive(nginx, tmp_path):
    """M3: chat_cluster_secret reads a file of at least 32 bytes; a cluster
    without one is warned about."""
    base = 'chat_zone chat 8m; chat_postgres "host=/tmp"; chat_cluster on;'
    rc, out = nginx.check_config(WS, http=base)
    assert rc == 0 and "without chat_cluster_secret" in out
    short = tmp_path / "short"
    short.write_text("x" * 31 + "\n")
    rc, out = nginx.check_config(
        WS, http=base + "chat_cluster_secret file=%s;" % short)
    assert rc != 0 and "at least 32 bytes" in out
    rc, out = nginx.check_config(
        WS, http=base + "chat_cluster_secret %s;" % short)
    assert rc != 0 and "expected file=PATH" in out
    rc, out = nginx.check_config(
        WS, http=base + "chat_cluster_secret file=%s;" % (tmp_path / "no"))
    assert rc != 0
    good = tmp_path / "good"
    good.write_text("y" * 32 + "\n")
    rc, out = nginx.check_config(
        WS, http=base + "chat_cluster_secret file=%s;" % good)
    assert rc == 0 and "chat_cluster_secret" not in out, out


# --------------------------------------------------------------------------
# one cluster reader per node (issue 15): one worker LISTENs and reads,
# and hands each event to the workers that hold its recipients

def metrics(node):
    r = http(node, "GET", "/chat/status")
    assert r.status == 200
    return parse_metrics(r.body.decode())


def by_slot(m, name):
    return {re.search(r'slot="(\d+)"', k).group(1): v for k, v in m.items()
            if k.startswith(name + "{")}


def stmt_calls(m, stmt):
    return m.get('chat_postgres_query_duration_seconds_count{statement="%s"}'
                 % stmt, 0)


def one_reader(node, timeout=CROSS):
    """Waits until exactly one live worker of node is its reader; that
    worker's pid (from the error log)."""
    deadline = time.monotonic() + timeout
    while True:
        readers = by_slot(metrics(node), "chat_cluster_reader")
        pids = set(node.worker_pids())
        said = [int(p) for p in re.findall(
                    r"(\d+)#\d+: .*this worker becomes the node's reader",
                    node.error_log())]
        live = [p for p in said if p in pids]
        if sum(readers.values()) == 1 and live:
            return live[-1]
        assert time.monotonic() < deadline, (readers, said, pids)
        time.sleep(0.1)


def on_every_worker(cluster, node, user, tries=60):
    """Connections of user on node until each worker holds at least one
    (the kernel spreads them, reuseport): [(client, worker pid)]."""
    out = []
    pids = set(node.worker_pids())
    for _ in range(tries):
        c = cluster.connect(node, user)
        out.append((c, pid_of(c.welcome)))
        if pids <= {p for _, p in out}:
            return out
    raise AssertionError("connections never reached every worker")


def seqs_of(client, cid, quiet=2, timeout=CROSS):
    """The seq of every message.created of cid until a quiet period (or
    the connection's end)."""
    import websockets
    out = []
    wait = timeout
    while True:
        try:
            ev = client.next_event("message.created", timeout=wait)
        except (TimeoutError, websockets.ConnectionClosed):
            return out
        if ev["message"]["conversation_id"] == cid:
            out.append(ev["message"]["seq"])
        wait = quiet


@pytest.mark.parametrize("nodes", [2, 3])
def test_one_reader_per_node_whatever_the_workers(cluster, nodes):
    """Every node has one reader; only it reads the other nodes' changes
    (chat_cluster_reads_total by slot), and a message reaches clients on
    every worker of every node once, in order.  Prints the reads per
    message (issue 15's measurement; nothing timed)."""
    ns = cluster.start(nodes, workers=3)
    for n in ns:
        one_reader(n)
    alice = cluster.connect(ns[0], "alice")
    members = ["m%d" % i for i in range(1, nodes)]
    clients = []
    for n, user in zip(ns[1:], members):
        clients += on_every_worker(cluster, n, user)
    group = alice.ok("conversation.create", kind="group", title="all",
                     members=members)["conversation"]
    cid = group["id"]
    for c, _ in clients:
        conv_created(c, cid)

    before = [metrics(n) for n in ns]
    scans = cluster.pg.query(
        "SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables "
        "WHERE relid = 'chat.messages'::regclass")[0][0]
    sent = 60
    for i in range(sent):
        alice.ok("message.send", conversation_id=cid, body="m%d" % i,
                 client_msg_id=new_id())
        time.sleep(0.02)        # one notice per message, mostly
    for c, pid in clients:
        assert seqs_of(c, cid) == list(range(1, sent + 1)), pid
    after = [metrics(n) for n in ns]
    scans = cluster.pg.query(
        "SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables "
        "WHERE relid = 'chat.messages'::regclass")[0][0] - scans

    reads = 0
    for n, b, a in zip(ns[1:], before[1:], after[1:]):
        slots = {s: v - by_slot(b, "chat_cluster_reads_total").get(s, 0)
                 for s, v in by_slot(a, "chat_cluster_reads_total").items()}
        reader = [s for s, v in by_slot(a, "chat_cluster_reader").items()
                  if v == 1]
        assert len(reader) == 1
        # the reader reads; another worker only once when a reader starts
        # listening (its listening connection made again, on a busy box)
        assert slots[reader[0]] >= sent / 2 and \
            all(v <= 2 for s, v in slots.items() if s != reader[0]), slots
        calls = (stmt_calls(a, "chat_cluster_changes")
                 - stmt_calls(b, "chat_cluster_changes"))
        # (a read in flight when a snapshot is taken counts in one only)
        assert abs(calls - sum(slots.values())) <= 1, (calls, slots)
        reads += calls
    print("\n%d nodes x 3 workers, %d messages: %d cluster reads (%.2f per "
          "message per other node); chat.messages scans %d (%.2f per "
          "message)" % (nodes, sent, reads, reads / sent / (nodes - 1),
                        scans, scans / sent))
    # at most one read per message per other node (reads batch notices)
    assert reads <= sent * (nodes - 1) + 2 * (nodes - 1)
    for c, _ in clients:
        c.close()
    alice.close()


@pytest.mark.allow_log(r"exited on signal 9")
def test_reader_killed_or_reloaded_while_messages_flow(cluster):
    """kill -9 of the reader, then a reload, while messages flow: another
    worker takes over; every client of the node gets every message once,
    in order (a client the reload closed resumes with sync)."""
    import websockets
    a, b = cluster.start(2, workers=3)
    first = one_reader(b)
    alice, bob, conv = direct_pair(cluster, a, b)
    cid = conv["id"]
    bob.close()
    clients = on_every_worker(cluster, b, "bob")

    # kill -9 of the reader after 20 of 60 messages
    for i in range(60):
        alice.ok("message.send", conversation_id=cid, body="k%d" % i,
                 client_msg_id=new_id())
        if i == 19:
            os.kill(first, 9)
        time.sleep(0.03)
    for c, pid in clients:
        got = seqs_of(c, cid, timeout=LEASE)
        if pid == first:
            assert got == list(range(1, len(got) + 1))
        else:
            assert got == list(range(1, 61)), pid
        c.close()
    second = one_reader(b)
    assert second != first

    # a reload after 20 more: new workers take over, the closed resume
    clients = on_every_worker(cluster, b, "bob")
    for i in range(60):
        alice.ok("message.send", conversation_id=cid, body="r%d" % i,
                 client_msg_id=new_id())
        if i == 19:
            b.reload()
            fresh = on_every_worker(cluster, b, "bob")
            cursor = 80
        time.sleep(0.03)
    for c, pid in clients:
        # the old workers' clients, to the reload's close
        got = seqs_of(c, cid, timeout=LEASE)
        assert got == list(range(61, 61 + len(got))), pid
        with pytest.raises(websockets.ConnectionClosed):
            c.recv(timeout=CROSS)
        # it resumes where it was
        c2 = cluster.connect(b, "bob")
        events, _ = sync_ws(c2, {str(cid): got[-1] if got else 60})
        replay = [e["message"]["seq"] for e in events
                  if e["type"] == "message.created"]
        live = seqs_of(c2, cid, timeout=2)
        assert sorted(set(replay + live)) == \
            list(range((got[-1] if got else 60) + 1, 121))
        assert live == sorted(set(live))
        c2.close()
    for c, pid in fresh:
        # the new workers' clients: from their start on, everything came
        # live, once, in order; sync has what was before
        live = seqs_of(c, cid, timeout=LEASE)
        assert live and live == list(range(live[0], 121)), (pid, live)
        events, _ = sync_ws(c, {str(cid): cursor})
        replay = [e["message"]["seq"] for e in events]
        assert replay == list(range(cursor + 1, 121)), pid
        c.close()
    assert one_reader(b) in b.worker_pids()
    alice.close()


def sync_ws(c, cursors):
    """(events before the ok, the ok's data) of a sync on a WSClient."""
    rid = "sync-" + new_id()
    c.send_json({"type": "sync", "id": rid, "conversations": cursors})
    events = []
    while True:
        f = c.recv_json(timeout=CROSS)
        if f.get("id") == rid:
            assert f["type"] == "ok", f
            return events, f["data"]
        if f.get("type") == "message.created":
            events.append(f)
        else:
            c.events.append(f)


# --------------------------------------------------------------------------
# order.c's gap reads: a worker that holds a change after a gap reads the
# gap from PostgreSQL.  One node of three workers: messages are stored by
# SQL (chat.api_message_send_rows, as nginx calls it: no notice) and made
# known by notices from a made-up node, which only the reader reads; carol
# blocks someone, so that reading her messages calls chat.recipients, where
# a test makes the gap read, and only it, fail or wait.

def conn_on(cluster, node, user, want):
    """A connection of user on a worker for which want(pid) is true; the
    others made meanwhile are closed and gone from the node's workers."""
    others = []
    for _ in range(60):
        c = cluster.connect(node, user)
        if want(pid_of(c.welcome)):
            break
        others.append(c)
    else:
        raise AssertionError("no connection of %s where wanted" % user)
    if others:
        before = metrics(node)["chat_connections"]
        for o in others:
            o.close()
        deadline = time.monotonic() + CROSS
        while metrics(node)["chat_connections"] > before - len(others):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    return c


def sql_send(postgres, user, cid, body):
    """A message stored as nginx's send batch stores it; its seq."""
    (code, seq), = postgres.query(
        "SELECT code, seq FROM chat.api_message_send_rows(%s, %s, %s, %s, "
        "ARRAY[NULL]::jsonb[], ARRAY[NULL]::bigint[])",
        ([user], [cid], [body], [new_id()]))
    assert code is None or code == "ok", code
    return seq


def gap_node(cluster, postgres, pool=2):
    """One node of 3 workers; bob and alice on two workers that do not
    read for the node, in group cid with carol (who blocks zed), bob
    following it, carol and dave (who block zed) not connected: (node,
    reader pid, alice, bob, cid, bob's last seq)."""
    node, = cluster.start(1, workers=3, secret=False, pool=pool)
    reader = one_reader(node)
    bob = conn_on(cluster, node, "bob", lambda p: p != reader)
    bob_pid = pid_of(bob.welcome)
    alice = conn_on(cluster, node, "alice",
                    lambda p: p not in (reader, bob_pid))
    cid = alice.ok("conversation.create", kind="group", title="g",
                   members=["bob", "carol", "dave"])["conversation"]["id"]
    conv_created(bob, cid)
    postgres.query("INSERT INTO chat.blocks (blocker_id, blocked_id) "
                   "VALUES ('carol', 'zed'), ('dave', 'zed')")
    m = alice.ok("message.send", conversation_id=cid, body="s0",
                 client_msg_id=new_id())["message"]
    assert seqs_of(bob, cid, quiet=0.5) == [m["seq"]]
    return node, reader, alice, bob, cid, m["seq"]


class recipients_first:
    """chat.recipients with a first statement of a test's (PostgreSQL checks
    that every function a query names may be run before it starts, so a
    REVOKE would fail every read: this fails or holds only some), put back
    as it was when done."""

    def __init__(self, postgres, first):
        self.pg = postgres
        self.first = first

    def __enter__(self):
        (self.orig,), = self.pg.query(
            "SELECT pg_get_functiondef('chat.recipients(bigint, text)'"
            "::regprocedure)")
        head, sep, body = self.orig.partition("\nBEGIN\n")
        assert sep, self.orig
        self.pg.query(head + sep + "    " + self.first + "\n" + body)
        return self

    def __exit__(self, *exc):
        self.pg.query(self.orig)


def test_a_failed_gap_read_is_tried_again(cluster, postgres):
    """A worker holds s2 and reads the gap s1 (carol's); PostgreSQL fails
    that read, then answers it: the read is tried again and bob gets s1
    then s2, once each."""
    node, reader, alice, bob, cid, s0 = gap_node(cluster, postgres)
    s1 = sql_send(postgres, "carol", cid, "s1")
    s2 = sql_send(postgres, "alice", cid, "s2")
    assert (s1, s2) == (s0 + 1, s0 + 2)
    with recipients_first(postgres, "IF p_user = 'carol' THEN RAISE "
                          "EXCEPTION 'gap read refused'; END IF;"):
        # only the reader reads s2 (alice's: no chat.recipients), and
        # gives it to bob's worker, which holds it and reads s1
        with lowpriv(postgres) as db:
            notify(db, {"o": "ghost", "x": [["m", cid, s2, s2]]})
        postgres.query("DROP ROLE m3_lowpriv")
        node.wait_log(r'PostgreSQL query "chat_gap_changes" failed: '
                      r'ERROR:  gap read refused', timeout=CROSS)
    assert seqs_of(bob, cid) == [s1, s2]
    assert "exited on signal" not in node.error_log()
    for c in (alice, bob):
        c.close()


def waiting_on(postgres, pid, timeout=CROSS):
    """Waits until backend pid waits for an advisory lock."""
    deadline = time.monotonic() + timeout
    while postgres.query("SELECT count(*) FROM pg_stat_activity WHERE pid = "
                         "%s AND wait_event = 'advisory'", (pid,)) != [(1,)]:
        assert time.monotonic() < deadline, "backend %d does not wait" % pid
        time.sleep(0.05)


def test_a_gap_read_answered_after_its_gap_filled_skips_no_newer_gap(
        cluster, postgres):
    """Regression (the gap-read skip): bob's worker W holds s2 and reads
    the gap s1; the read waits in PostgreSQL while the reader brings s1
    (W delivers s1 and s2), then W holds s4 after a newer gap, s3.  The
    late answer of the first read must not skip s3 unread: W reads it and
    bob gets s3 then s4.  (It skipped s3 and remembered it as the one hole,
    so that bob got s4 first and s3 only when the reader brought it.)
    Each node's worker has one PostgreSQL connection, so that W's is known;
    reading carol's message there waits (advisory lock 1), and reading
    dave's anywhere else (lock 2): the reader never brings s3 before W
    read it."""
    node, reader, alice, bob, cid, s0 = gap_node(cluster, postgres, pool=1)

    # W's one backend: the one a send of bob waits on a row lock in
    x = alice.ok("conversation.create", kind="group", title="x",
                 members=["bob"])["conversation"]["id"]
    conv_created(bob, x)
    with postgres.connect() as lock:
        lock.execute("BEGIN")
        lock.execute("SELECT 1 FROM chat.conversations WHERE id = %s "
                     "FOR UPDATE", (x,))
        bob.send_json({"type": "message.send", "conversation_id": x,
                       "body": "x", "client_msg_id": new_id(), "id": "wx"})
        deadline = time.monotonic() + CROSS
        while True:
            rows = postgres.query(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = "
                "'Lock' AND query LIKE '%api_message_send_rows%'")
            if rows:
                break
            assert time.monotonic() < deadline, "bob's send never waited"
            time.sleep(0.05)
        (w,), = rows
        lock.execute("ROLLBACK")
    while bob.recv_json(timeout=CROSS).get("id") != "wx":
        pass

    def stat(name):
        return sum(v for k, v in metrics(node).items()
                   if k.startswith(name))

    s1 = sql_send(postgres, "carol", cid, "s1")
    hold = postgres.connect()
    hold.execute("SELECT pg_advisory_lock(1), pg_advisory_lock(2)")
    try:
        with recipients_first(
                postgres,
                "IF p_user = 'carol' AND pg_backend_pid() = %d THEN "
                "PERFORM pg_advisory_xact_lock_shared(1); END IF; "
                "IF p_user = 'dave' AND pg_backend_pid() <> %d THEN "
                "PERFORM pg_advisory_xact_lock_shared(2); END IF;"
                % (w, w)):
            # W holds s2 (alice's, from her worker) and reads s1: waits
            s2 = alice.ok("message.send", conversation_id=cid, body="s2",
                          client_msg_id=new_id())["message"]["seq"]
            assert (s1, s2) == (s0 + 1, s0 + 2)
            waiting_on(postgres, w)
            # the reader brings s1 (it read nothing of cid yet), then, at
            # its next round trip, s2 again (a repeat, dropped)
            reads = stat('chat_postgres_query_duration_seconds_count'
                         '{statement="chat_cluster_changes"}')
            with lowpriv(postgres) as db:
                notify(db, {"o": "ghost", "x": [["m", cid, s1, s1]]})
            postgres.query("DROP ROLE m3_lowpriv")
            assert seqs_of(bob, cid, quiet=0.5) == [s1, s2]
            deadline = time.monotonic() + CROSS
            while stat('chat_postgres_query_duration_seconds_count'
                       '{statement="chat_cluster_changes"}') < reads + 2:
                assert time.monotonic() < deadline, "no round trip read"
                time.sleep(0.05)
            # the newer gap: s3 (dave's, which the reader cannot read
            # now), s4 from alice's worker, which W takes from its queue
            s3 = sql_send(postgres, "dave", cid, "s3")
            deadline = time.monotonic() + CROSS
            while True:
                m = metrics(node)
                if sum(v for k, v in m.items()
                       if k.startswith("chat_queue_bytes{")) == 0:
                    taken = sum(v for k, v in m.items()
                                if k.startswith("chat_queue_delivered_total{"))
                    break
                assert time.monotonic() < deadline
                time.sleep(0.05)
            s4 = alice.ok("message.send", conversation_id=cid, body="s4",
                          client_msg_id=new_id())["message"]["seq"]
            assert (s3, s4) == (s0 + 3, s0 + 4)
            deadline = time.monotonic() + CROSS
            while stat("chat_queue_delivered_total{") < taken + 1:
                assert time.monotonic() < deadline, "W never took s4"
                time.sleep(0.05)
            # the first read is answered (after its gap filled, while s3
            # is open): W reads s3, then gives s4
            hold.execute("SELECT pg_advisory_unlock(1)")
            assert seqs_of(bob, cid, quiet=1) == [s3, s4]
            # the reader's read of s3 and s4 comes too: repeats
            hold.execute("SELECT pg_advisory_unlock(2)")
            assert seqs_of(bob, cid, quiet=2) == []
    finally:
        hold.close()
    assert "exited on signal" not in node.error_log()
    for c in (alice, bob):
        c.close()
