"""End-to-end tests of the persistence and messaging core: real nginx with
the module, real PostgreSQL (sql/), several real clients.

Every payload is checked exactly.  One worker process: an event is fanned
out to every local connection in the same call that answers the request,
so once a request's reply has arrived, a `ping` on another connection
is answered behind every event already queued for it (see `settle`); no
sleeps are needed to prove that something was *not* delivered.
"""

import json
import time

from chatlib import (INT, C, M, created, direct, ev, group, send, send_all,
                     settle, sync)


# links only to this host (issue 16: attachments are uploads)
CHAT_ENV = dict(http="chat_attachment_hosts cdn.example;")


def err(code, message):
    return {"code": code, "message": message}


# --------------------------------------------------------------------------
# the environment (conftest.py's chat_env): chat_websocket and
# chat_postgres, one worker; helpers of this file

def error_of(c, type_, **fields):
    reply = c.request(type_, **fields)
    assert reply["type"] == "error", reply
    assert set(reply) == {"type", "id", "error"}, reply
    return reply["error"]


def collect(c, ids, timeout=20):
    """Every frame up to the last reply of ids, in arrival order
    (including the events kept by earlier requests)."""
    want = set(ids)
    frames = c.events[:]
    c.events.clear()
    deadline = time.monotonic() + timeout
    for f in frames:
        if f.get("type") in ("ok", "error"):
            want.discard(f.get("id"))
    while want:
        f = json.loads(c.recv(max(0.01, deadline - time.monotonic())))
        frames.append(f)
        if f.get("type") in ("ok", "error"):
            want.discard(f.get("id"))
    return frames


def rows(pg, sql, params=None):
    return pg.query(sql, params)


# --------------------------------------------------------------------------
# conversations

def test_direct_conversation_create(chat):
    alice, bob, carol = (chat.connect(u) for u in ("alice", "bob", "carol"))

    reply = alice.request("conversation.create", kind="direct",
                          user_id="bob")
    assert reply["type"] == "ok" and set(reply) == {"type", "id", "data"}
    conv = reply["data"]["conversation"]
    want = C(INT, "direct", [("alice", "member"), ("bob", "member")])
    assert reply["data"] == {"conversation": want}
    cid = conv["id"]

    # both members (the creator's connection too) get the event, once
    assert settle(alice) == [created(conv)]
    assert settle(bob) == [created(conv)]
    assert settle(carol) == []

    # again, from either side: the same conversation, no event
    assert direct(alice, "bob") == conv
    assert direct(bob, "alice") == conv
    # a ref given on the second create is ignored (it exists)
    again = alice.ok("conversation.create", kind="direct", user_id="bob",
                     ref="ad:1", metadata={"x": 1})["conversation"]
    assert again == conv and again["ref"] is None and again["metadata"] == {}
    assert settle(alice, bob, carol) == [[], [], []]

    # errors
    assert error_of(alice, "conversation.create", kind="direct",
                    user_id="alice") == \
        err("bad_request", "a direct conversation needs another user")
    for fields, message in [
            ({}, "user_id is missing"),
            ({"user_id": None}, "user_id is missing"),
            ({"user_id": 5}, "user_id must be a user id"),
            ({"user_id": ["bob"]}, "user_id must be a user id"),
            ({"user_id": ""}, "user_id must be a user id"),
            ({"user_id": "x" * 129}, "user_id must be a user id"),
            ({"user_id": "a\tb"}, "user_id must be a user id")]:
        assert error_of(alice, "conversation.create", kind="direct",
                        **fields) == err("bad_request", message), fields
    assert error_of(alice, "conversation.create", user_id="bob") == \
        err("bad_request", "kind is missing")
    assert error_of(alice, "conversation.create", kind="channel",
                    user_id="bob") == \
        err("bad_request", 'kind must be "direct" or "group"')

    assert settle(alice, bob, carol) == [[], [], []]
    assert rows(chat.pg, "SELECT id, kind, created_by FROM "
                "chat.conversations") == [(cid, "direct", "alice")]
    assert rows(chat.pg, "SELECT user_id, role FROM chat.members "
                "ORDER BY user_id") == [("alice", "member"),
                                        ("bob", "member")]


def test_group_create(chat):
    alice, bob, carol, dave = (chat.connect(u)
                               for u in ("alice", "bob", "carol", "dave"))
    meta = {"listing": {"id": 123, "tags": ["a", "é"]}, "n": None}
    reply = alice.request("conversation.create", kind="group",
                          title="Team ✓", members=["carol", "bob", "bob",
                                                   "alice"],
                          ref="ad:123", metadata=meta)
    assert reply["type"] == "ok"
    conv = reply["data"]["conversation"]
    assert conv == C(INT, "group", [("alice", "owner"), ("bob", "member"),
                                    ("carol", "member")],
                     title="Team ✓", ref="ad:123", metadata=meta)
    for c in (alice, bob, carol):
        assert settle(c) == [created(conv)]
    assert settle(dave) == []

    # stored, and returned by the list
    assert rows(chat.pg, "SELECT kind, title, ref, metadata, created_by "
                "FROM chat.conversations") == \
        [("group", "Team ✓", "ad:123", meta, "alice")]
    assert bob.ok("conversation.list") == {"conversations": [conv],
                                           "next": None}

    # alone, and title limits counted in characters
    solo = alice.ok("conversation.create", kind="group",
                    title="é" * 200)["conversation"]
    assert solo == C(INT, "group", [("alice", "owner")], title="é" * 200)
    assert settle(alice) == [created(solo)]
    assert settle(bob) == []

    cases = [
        ({"members": ["bob"]}, "bad_request", "title is missing"),
        ({"title": None}, "bad_request", "title is missing"),
        ({"title": 5}, "bad_request", "title must be a non-empty string"),
        ({"title": ""}, "bad_request", "title must be a non-empty string"),
        ({"title": ["t"]}, "bad_request", "title must be a non-empty string"),
        ({"title": "é" * 201}, "too_large",
         "title is longer than 200 characters"),
        ({"title": "t", "members": "bob"}, "bad_request",
         "members must be an array of user ids"),
        ({"title": "t", "members": {"bob": 1}}, "bad_request",
         "members must be an array of user ids"),
        ({"title": "t", "members": [1]}, "bad_request",
         "members must be an array of user ids"),
        ({"title": "t", "members": ["bob", ""]}, "bad_request",
         "members must be an array of user ids"),
        ({"title": "t", "members": ["u%d" % i for i in range(1001)]},
         "too_large", "members has more than 1000 entries"),
        ({"title": "t", "ref": 5}, "bad_request",
         "ref must be a non-empty string"),
        ({"title": "t", "ref": ""}, "bad_request",
         "ref must be a non-empty string"),
        ({"title": "t", "ref": "r" * 201}, "too_large",
         "ref is longer than 200 characters"),
        ({"title": "t", "metadata": []}, "bad_request",
         "metadata must be an object"),
        ({"title": "t", "metadata": "{}"}, "bad_request",
         "metadata must be an object"),
        ({"title": "t", "metadata": {"k": "v" * 16400}}, "too_large",
         "metadata is larger than 16384 bytes"),
    ]
    for fields, code, message in cases:
        assert error_of(alice, "conversation.create", kind="group",
                        **fields) == err(code, message), fields
    assert settle(alice, bob, carol, dave) == [[], [], [], []]
    assert rows(chat.pg, "SELECT count(*) FROM chat.conversations") == [(2,)]


# --------------------------------------------------------------------------
# sends

def test_send_reaches_every_connection_of_every_member(chat):
    alice1 = chat.connect("alice")
    alice2 = chat.connect("alice")
    bob, carol = chat.connect("bob"), chat.connect("carol")
    conv = group(alice1, "g", ["bob"])
    cid = conv["id"]
    settle(alice1, alice2, bob, carol)

    # the sending connection: its ok first, then the event
    alice1.send_json({"type": "message.send", "id": "s1",
                      "conversation_id": cid, "body": "hello",
                      "client_msg_id": "c1"})
    first, second = alice1.recv_json(), alice1.recv_json()
    m1 = M(INT, cid, 1, "alice", "hello", "c1")
    assert first == {"type": "ok", "id": "s1", "data": {"message": m1}}
    assert second == ev("created", first["data"]["message"])
    m1 = first["data"]["message"]

    assert settle(alice2) == [ev("created", m1)]
    assert settle(bob) == [ev("created", m1)]
    assert settle(carol) == []
    assert settle(alice1) == []

    # the next ones: 2, 3; attachments normalized; reply_to
    att = [{"url": "https://cdn.example/y.png", "name": "y.png",
            "mime": "image/png", "size": 10},
           {"url": "https://cdn.example/files/1"}]
    m2 = send(bob, cid, "with files", "c2", attachments=att)
    norm = [att[0], {"url": "https://cdn.example/files/1", "name": None,
                     "mime": None,
                     "size": None}]
    assert m2 == M(INT, cid, 2, "bob", "with files", "c2", attachments=norm)
    m3 = send(alice2, cid, "re", "c3", reply_to=m1["id"])
    assert m3 == M(INT, cid, 3, "alice", "re", "c3", reply_to=m1["id"])
    assert len({m1["id"], m2["id"], m3["id"]}) == 3

    assert settle(alice1) == [ev("created", m2), ev("created", m3)]
    assert settle(alice2) == [ev("created", m2), ev("created", m3)]
    assert settle(bob) == [ev("created", m2), ev("created", m3)]
    assert settle(carol) == []

    assert rows(chat.pg, "SELECT seq, updated_seq, sender_id, body, "
                "client_msg_id, attachments, reply_to FROM chat.messages "
                "ORDER BY seq") == [
        (1, 1, "alice", "hello", "c1", [], None),
        (2, 2, "bob", "with files", "c2", norm, None),
        (3, 3, "alice", "re", "c3", [], m1["id"])]
    assert rows(chat.pg, "SELECT last_seq FROM chat.conversations") == [(3,)]


def test_send_validation_and_length_in_characters(env):
    env.start(loc="chat_max_message_length 10;")
    alice, bob = env.connect("alice"), env.connect("bob")
    assert alice.welcome["limits"]["max_message_length"] == 10
    cid = direct(alice, "bob")["id"]
    other = direct(alice, "carol")["id"]
    foreign = send(alice, other, "elsewhere")
    settle(alice, bob)

    ten = "ééééééééé€"          # 10 characters, 21 bytes
    assert len(ten) == 10 and len(ten.encode()) == 21
    m1 = send(alice, cid, ten, "ten")
    assert m1 == M(INT, cid, 1, "alice", ten, "ten")

    # 11 characters: too_large (the SQL decides: over a length limit)
    assert error_of(alice, "message.send", conversation_id=cid,
                    body=ten + "x", client_msg_id="eleven") == \
        err("too_large", "body is longer than 10 characters")
    # a max_length in the client's frame does not raise the limit
    assert error_of(alice, "message.send", conversation_id=cid,
                    body=ten + "x", client_msg_id="eleven",
                    max_length=1000) == \
        err("too_large", "body is longer than 10 characters")

    cm64 = "é" * 64              # 64 characters, 128 bytes
    U = "https://cdn.example/a"
    cases = [
        ({"body": ""}, "bad_request", "body must not be empty"),
        ({"body": 5}, "bad_request", "body must be a string"),
        ({"body": ["x"]}, "bad_request", "body must be a string"),
        ({"body": None}, "bad_request", "body is missing"),
        ({"client_msg_id": None}, "bad_request", "client_msg_id is missing"),
        ({"client_msg_id": ""}, "bad_request",
         "client_msg_id must be a non-empty string"),
        ({"client_msg_id": 7}, "bad_request",
         "client_msg_id must be a non-empty string"),
        ({"client_msg_id": "x" * 65}, "too_large",
         "client_msg_id is longer than 64 characters"),
        ({"client_msg_id": "é" * 65}, "too_large",
         "client_msg_id is longer than 64 characters"),
        ({"conversation_id": None}, "bad_request",
         "conversation_id is missing"),
        ({"conversation_id": str(cid)}, "bad_request",
         "conversation_id must be a positive integer"),
        ({"conversation_id": 0}, "bad_request",
         "conversation_id must be a positive integer"),
        ({"conversation_id": 1.5}, "bad_request",
         "conversation_id must be a positive integer"),
        ({"attachments": "x"}, "bad_request", "attachments must be an array"),
        ({"attachments": {"url": "/a"}}, "bad_request",
         "attachments must be an array"),
        ({"attachments": [1]}, "bad_request",
         "attachments[0] must be an object"),
        ({"attachments": [{}]}, "bad_request",
         "attachments[0] must have an upload_id"),
        ({"attachments": [{"upload_id": 1}]}, "not_found",
         "attachments[0]: upload not found"),
        ({"attachments": [{"url": 5}]}, "bad_request",
         "attachments[0].url must be a non-empty string"),
        ({"attachments": [{"url": "javascript:alert(1)"}]}, "bad_request",
         "attachments[0].url must be https:// on a host of "
         "chat_attachment_hosts"),
        ({"attachments": [{"url": "data:text/html,x"}]}, "bad_request",
         "attachments[0].url must be https:// on a host of "
         "chat_attachment_hosts"),
        ({"attachments": [{"url": "/a"}]}, "bad_request",
         "attachments[0].url must be https:// on a host of "
         "chat_attachment_hosts"),
        ({"attachments": [{"url": "/" + "a" * 2048}]}, "too_large",
         "attachments[0].url is longer than 2048 characters"),
        ({"attachments": [{"url": U, "name": 1}]}, "bad_request",
         "attachments[0].name must be a string"),
        ({"attachments": [{"url": U, "name": "n" * 256}]}, "too_large",
         "attachments[0].name is longer than 255 characters"),
        ({"attachments": [{"url": U, "mime": True}]}, "bad_request",
         "attachments[0].mime must be a string"),
        ({"attachments": [{"url": U, "size": -1}]}, "bad_request",
         "attachments[0].size must be an integer >= 0"),
        ({"attachments": [{"url": U}, {"url": U, "size": "1"}]},
         "bad_request", "attachments[1].size must be an integer >= 0"),
        ({"attachments": [{"url": U}] * 11}, "too_large",
         "attachments has more than 10 items"),
        ({"reply_to": foreign["id"]}, "bad_request",
         "reply_to is not a message of this conversation"),
        ({"reply_to": foreign["id"] + 1000}, "bad_request",
         "reply_to is not a message of this conversation"),
        ({"reply_to": str(m1["id"])}, "bad_request",
         "reply_to must be a message id"),
        ({"reply_to": 0}, "bad_request", "reply_to must be a message id"),
    ]
    base = {"conversation_id": cid, "body": "ok", "client_msg_id": "v"}
    for fields, code, message in cases:
        req = dict(base, **fields)
        req = {k: v for k, v in req.items() if v is not None}
        assert error_of(alice, "message.send", **req) == err(code, message), \
            fields
    # a missing client_msg_id (absent, not null)
    assert error_of(alice, "message.send", conversation_id=cid,
                    body="x") == err("bad_request", "client_msg_id is missing")

    # none of the errors delivered anything or took a number
    assert settle(alice, bob) == [[ev("created", m1)], [ev("created", m1)]]
    m2 = send(alice, cid, "x", cm64, attachments=[{"url": U}] * 10)
    assert m2["seq"] == 2 and m2["client_msg_id"] == cm64
    assert len(m2["attachments"]) == 10
    assert rows(env.pg, "SELECT seq, body FROM chat.messages "
                "WHERE conversation_id = %s ORDER BY seq", (cid,)) == \
        [(1, ten), (2, "x")]


def test_edit_obeys_chat_max_message_length(env):
    env.start(loc="chat_max_message_length 10;")
    alice = env.connect("alice")
    cid = direct(alice, "bob")["id"]
    m = send(alice, cid, "short")
    assert error_of(alice, "message.edit", message_id=m["id"],
                    body="é" * 11) == \
        err("too_large", "body is longer than 10 characters")
    assert error_of(alice, "message.edit", message_id=m["id"],
                    body="é" * 11, max_length=100) == \
        err("too_large", "body is longer than 10 characters")
    e = alice.ok("message.edit", message_id=m["id"], body="é" * 10)
    assert e == {"message": M(m["id"], cid, 1, "alice", "é" * 10,
                              m["client_msg_id"], updated_seq=2,
                              edited=True)}


def test_edit_limit_cannot_be_raised_by_the_client(chat):
    alice = chat.connect("alice")
    cid = direct(alice, "bob")["id"]
    m = send(alice, cid, "short")
    assert error_of(alice, "message.edit", message_id=m["id"],
                    body="x" * 5001, max_length=1000000) == \
        err("too_large", "body is longer than 5000 characters")


def test_duplicate_client_msg_id_is_one_message(chat):
    alice1, alice2 = chat.connect("alice"), chat.connect("alice")
    bob, carol = chat.connect("bob"), chat.connect("carol")
    cid = group(alice1, "g", ["bob", "carol"])["id"]
    settle(alice1, alice2, bob, carol)

    m = send(alice1, cid, "first", "dup")
    assert m == M(INT, cid, 1, "alice", "first", "dup")
    # a retry, from another connection of the same user, another body
    assert send(alice2, cid, "second", "dup") == m
    assert send(alice1, cid, "first", "dup") == m
    for c in (alice1, alice2, bob, carol):
        assert settle(c) == [ev("created", m)]

    # another sender's same client_msg_id is another message; no gap
    mb = send(bob, cid, "bob's", "dup")
    assert mb == M(INT, cid, 2, "bob", "bob's", "dup")
    for c in (alice1, alice2, bob, carol):
        assert settle(c) == [ev("created", mb)]

    assert rows(chat.pg, "SELECT sender_id, seq, body FROM chat.messages "
                "WHERE client_msg_id = 'dup' ORDER BY seq") == \
        [("alice", 1, "first"), ("bob", 2, "bob's")]


# --------------------------------------------------------------------------
# ordering

def test_fifty_pipelined_sends_keep_their_order(chat):
    alice, bob = chat.connect("alice"), chat.connect("bob")
    cid = direct(alice, "bob")["id"]
    settle(alice, bob)

    reqs = [{"type": "message.send", "conversation_id": cid,
             "body": "n%d" % i, "client_msg_id": "k%d" % i}
            for i in range(50)]
    ids = send_all(alice, reqs)
    frames = collect(alice, ids)
    frames += settle(alice)                 # the last ok's event

    # exactly: ok 1, its event, ok 2, its event, ...
    assert len(frames) == 100
    msgs = []
    for i, rid in enumerate(ids):
        ok, event = frames[2 * i], frames[2 * i + 1]
        want = M(INT, cid, i + 1, "alice", "n%d" % i, "k%d" % i)
        assert ok == {"type": "ok", "id": rid, "data": {"message": want}}
        assert event == ev("created", ok["data"]["message"])
        msgs.append(ok["data"]["message"])
    assert [m["seq"] for m in msgs] == list(range(1, 51))
    assert settle(bob) == [ev("created", m) for m in msgs]
    assert rows(chat.pg, "SELECT array_agg(seq ORDER BY seq), "
                "array_agg(client_msg_id ORDER BY seq) FROM chat.messages") \
        == [(list(range(1, 51)), ["k%d" % i for i in range(50)])]
    # pipelined sends of one connection are stored together (a row's xmin
    # is its transaction), not one transaction each
    assert rows(chat.pg, "SELECT count(DISTINCT xmin::text) "
                "FROM chat.messages")[0][0] < 25


def test_three_concurrent_senders_share_one_sequence(chat):
    users = ("alice", "bob", "carol")
    clients = [chat.connect(u) for u in users]
    extra = chat.connect("alice")           # a second connection of alice
    cid = group(clients[0], "g", ["bob", "carol"])["id"]
    settle(*clients, extra)

    n = 40
    ids = {u: [] for u in users}
    for i in range(n):                      # interleaved on the wire
        for u, c in zip(users, clients):
            ids[u] += send_all(c, [{"type": "message.send",
                                    "conversation_id": cid,
                                    "body": "%s %d" % (u, i),
                                    "client_msg_id": "%s-%d" % (u, i)}])
    got = {}
    for u, c in zip(users, clients):
        frames = collect(c, ids[u])
        oks = [f for f in frames if f.get("type") == "ok"]
        assert [f["id"] for f in oks] == ids[u]
        got[u] = [f["data"]["message"] for f in oks]
        c.events = [f for f in frames if f.get("type") != "ok"]
        # one sender's messages: in its send order
        seqs = [m["seq"] for m in got[u]]
        assert seqs == sorted(seqs)
        assert [m["body"] for m in got[u]] == ["%s %d" % (u, i)
                                               for i in range(n)]

    every = sorted((m for ms in got.values() for m in ms),
                   key=lambda m: m["seq"])
    assert [m["seq"] for m in every] == list(range(1, 3 * n + 1))

    # every member's every connection: each message exactly once
    for c in clients + [extra]:
        events = settle(c)
        assert all(e["type"] == "message.created" for e in events)
        assert sorted((e["message"] for e in events),
                      key=lambda m: m["seq"]) == every
        # and each sender's messages in that sender's order
        for u in users:
            mine = [e["message"]["seq"] for e in events
                    if e["message"]["sender_id"] == u]
            assert mine == sorted(mine)
    assert rows(chat.pg, "SELECT count(*), count(DISTINCT seq), min(seq), "
                "max(seq) FROM chat.messages") == [(3 * n, 3 * n, 1, 3 * n)]


# --------------------------------------------------------------------------
# history

def test_history_pages(chat):
    alice, bob = chat.connect("alice"), chat.connect("bob")
    cid = direct(alice, "bob")["id"]
    ids = send_all(alice, [{"type": "message.send", "conversation_id": cid,
                            "body": "m%d" % i, "client_msg_id": "h%d" % i}
                           for i in range(1, 121)])
    frames = collect(alice, ids)
    msgs = [f["data"]["message"] for f in frames if f["type"] == "ok"]
    assert [m["seq"] for m in msgs] == list(range(1, 121))
    by_seq = {m["seq"]: m for m in msgs}

    def page(lo, hi):
        return [by_seq[s] for s in range(lo, hi + 1)]

    def hist(c=bob, **kw):
        return c.ok("messages.history", conversation_id=cid, **kw)

    assert hist() == {"messages": page(71, 120), "has_more": True}
    assert hist(alice) == hist()
    assert hist(limit=100) == {"messages": page(21, 120), "has_more": True}
    assert hist(after_seq=0, limit=100) == {"messages": page(1, 100),
                                            "has_more": True}
    assert hist(before_seq=51, limit=100) == {"messages": page(1, 50),
                                              "has_more": False}
    assert hist(before_seq=71, limit=30) == {"messages": page(41, 70),
                                             "has_more": True}
    assert hist(before_seq=41, limit=40) == {"messages": page(1, 40),
                                             "has_more": False}
    assert hist(before_seq=11, limit=30) == {"messages": page(1, 10),
                                             "has_more": False}
    assert hist(before_seq=1) == {"messages": [], "has_more": False}
    assert hist(before_seq=0) == {"messages": [], "has_more": False}
    assert hist(before_seq=1000) == {"messages": page(71, 120),
                                     "has_more": True}
    assert hist(after_seq=70, limit=100) == {"messages": page(71, 120),
                                             "has_more": False}
    assert hist(after_seq=100, limit=100) == {"messages": page(101, 120),
                                              "has_more": False}
    assert hist(after_seq=20, limit=50) == {"messages": page(21, 70),
                                            "has_more": True}
    assert hist(after_seq=100, limit=20) == {"messages": page(101, 120),
                                             "has_more": False}
    assert hist(after_seq=99, limit=20) == {"messages": page(100, 119),
                                            "has_more": True}
    assert hist(after_seq=120) == {"messages": [], "has_more": False}
    assert hist(after_seq=0) == {"messages": page(1, 50), "has_more": True}
    assert hist(after_seq=0, limit=1) == {"messages": page(1, 1),
                                          "has_more": True}
    # walking back from the latest page covers everything once
    seen, before = [], None
    while True:
        kw = {"limit": 7} if before is None else {"before_seq": before,
                                                  "limit": 7}
        p = hist(**kw)
        seen = p["messages"] + seen
        if not p["has_more"]:
            break
        before = p["messages"][0]["seq"]
    assert seen == msgs

    for fields, message in [
            ({"limit": 101}, "limit must be an integer from 1 to 100"),
            ({"limit": 0}, "limit must be an integer from 1 to 100"),
            ({"limit": "10"}, "limit must be an integer from 1 to 100"),
            ({"before_seq": -1}, "before_seq must be an integer >= 0"),
            ({"after_seq": "1"}, "after_seq must be an integer >= 0"),
            ({"before_seq": 5, "after_seq": 1},
             "before_seq and after_seq are exclusive")]:
        assert error_of(bob, "messages.history", conversation_id=cid,
                        **fields) == err("bad_request", message), fields
    assert error_of(bob, "messages.history") == \
        err("bad_request", "conversation_id is missing")


# --------------------------------------------------------------------------
# edit and delete

def test_edit_and_delete_rights_and_live_events(chat):
    names = ("alice", "bob", "carol", "dave")
    alice, bob, carol, dave = (chat.connect(u) for u in names)
    everyone = (alice, bob, carol, dave)
    cid = group(alice, "g", ["bob", "carol", "dave"])["id"]
    chat.pg.query("UPDATE chat.members SET role = 'admin' "
                  "WHERE conversation_id = %s AND user_id = 'carol'", (cid,))
    settle(*everyone)

    m1 = send(bob, cid, "original", "b1")
    settle(*everyone)

    # only the sender edits: not the owner, not an admin
    for c in (alice, carol, dave):
        assert error_of(c, "message.edit", message_id=m1["id"],
                        body="hijack") == \
            err("forbidden", "only the sender can edit a message")

    bob.send_json({"type": "message.edit", "id": "e1",
                   "message_id": m1["id"], "body": "edited"})
    ok, event = bob.recv_json(), bob.recv_json()
    e1 = M(m1["id"], cid, 1, "bob", "edited", "b1", updated_seq=2,
           edited=True)
    assert ok == {"type": "ok", "id": "e1", "data": {"message": e1}}
    e1 = ok["data"]["message"]
    assert e1["created_at"] == m1["created_at"]
    assert event == ev("updated", e1)
    for c in (alice, carol, dave):
        assert settle(c) == [ev("updated", e1)]
    assert settle(bob) == []

    # a plain member deletes nobody else's message
    assert error_of(dave, "message.delete", message_id=m1["id"]) == \
        err("forbidden",
            "only the sender or a group owner or admin can delete a message")

    # the owner deletes bob's message: body and attachments gone
    d1 = alice.ok("message.delete", message_id=m1["id"])["message"]
    assert d1 == M(m1["id"], cid, 1, "bob", None, "b1", updated_seq=3,
                   edited=True, deleted=True)
    assert d1["edited_at"] == e1["edited_at"]
    for c in everyone:
        assert settle(c) == [ev("deleted", d1)]

    # an admin deletes one with attachments
    m2 = send(bob, cid, "files", "b2", attachments=[{"url": "https://cdn.example/f"}])
    d2 = carol.ok("message.delete", message_id=m2["id"])["message"]
    assert d2 == M(m2["id"], cid, 4, "bob", None, "b2", updated_seq=5,
                   deleted=True)
    # the sender deletes its own
    m3 = send(dave, cid, "mine", "d3")
    d3 = dave.ok("message.delete", message_id=m3["id"])["message"]
    assert d3 == M(m3["id"], cid, 6, "dave", None, "d3", updated_seq=7,
                   deleted=True)
    for c in everyone:
        assert settle(c) == [ev("created", m2), ev("deleted", d2),
                             ev("created", m3), ev("deleted", d3)]

    # deleted: no edit; deleting again answers it again, no event, no number
    assert error_of(bob, "message.edit", message_id=m2["id"],
                    body="back") == err("conflict", "the message is deleted")
    assert alice.ok("message.delete", message_id=m2["id"]) == \
        {"message": d2}
    assert settle(*everyone) == [[], [], [], []]

    # everywhere a deleted message shows: no body, no attachments
    assert dave.ok("messages.history", conversation_id=cid) == \
        {"messages": [d1, d2, d3], "has_more": False}
    lst = bob.ok("conversation.list")["conversations"]
    assert [c["last_message"] for c in lst] == [d3]
    assert lst[0]["last_seq"] == 7
    late = chat.connect("bob")
    late.send_json({"type": "sync", "id": "s", "conversations": {}})
    # each as its last change: deleted (issue 13)
    assert [late.recv_json() for _ in range(4)] == [
        ev("deleted", d1), ev("deleted", d2), ev("deleted", d3),
        {"type": "ok", "id": "s",
         "data": {"complete": True, "cursors": {str(cid): 7}}}]
    assert rows(chat.pg, "SELECT seq, body, attachments, deleted_at IS NOT "
                "NULL FROM chat.messages ORDER BY seq") == \
        [(1, None, [], True), (4, None, [], True), (6, None, [], True)]
    assert rows(chat.pg, "SELECT last_seq FROM chat.conversations") == [(7,)]

    # in a direct conversation only the sender deletes
    dm = direct(alice, "bob")["id"]
    mb = send(bob, dm, "dm")
    assert error_of(alice, "message.delete", message_id=mb["id"]) == \
        err("forbidden",
            "only the sender or a group owner or admin can delete a message")


# --------------------------------------------------------------------------
# unread counts and receipts

def test_read_receipts_and_unread_counts(chat):
    alice, bob, bob2 = (chat.connect("alice"), chat.connect("bob"),
                        chat.connect("bob"))
    cid = direct(alice, "bob")["id"]
    settle(alice, bob, bob2)

    a = [send(alice, cid, "a%d" % i) for i in range(1, 4)]      # 1..3
    b4 = send(bob, cid, "b4")                                   # 4
    settle(alice, bob, bob2)

    def unread(c):
        return {x["id"]: x["unread_count"]
                for x in c.ok("conversation.list")["conversations"]}

    assert unread(bob) == {cid: 3}
    assert unread(alice) == {cid: 1}

    reply = bob.request("message.read", conversation_id=cid, seq=2)
    assert reply == {"type": "ok", "id": reply["id"],
                     "data": {"last_read_seq": 2, "unread_count": 1}}
    receipt = {"type": "receipt", "conversation_id": cid, "user_id": "bob",
               "kind": "read", "seq": 2}
    assert settle(alice) == [receipt]
    assert settle(bob) == [receipt]
    assert settle(bob2) == [receipt]
    assert unread(bob) == {cid: 1}

    # backwards: nothing moves, nothing is sent
    assert bob.ok("message.read", conversation_id=cid, seq=1) == \
        {"last_read_seq": 2, "unread_count": 1}
    assert bob.ok("message.read", conversation_id=cid, seq=2) == \
        {"last_read_seq": 2, "unread_count": 1}
    assert settle(alice, bob, bob2) == [[], [], []]

    # beyond the end: clamped to last_seq
    assert bob.ok("message.read", conversation_id=cid, seq=1000) == \
        {"last_read_seq": 4, "unread_count": 0}
    receipt = dict(receipt, seq=4)
    assert settle(alice, bob, bob2) == [[receipt]] * 3

    # deleted messages do not count; own messages do not count
    m5 = send(alice, cid, "a5")
    m6 = send(alice, cid, "a6")
    send(bob, cid, "b7")
    assert unread(bob) == {cid: 2}
    alice.ok("message.delete", message_id=m6["id"])
    assert unread(bob) == {cid: 1}
    alice.ok("message.delete", message_id=a[0]["id"])   # already read
    assert unread(bob) == {cid: 1}
    assert unread(alice) == {cid: 2}                    # b4, b7
    settle(alice, bob, bob2)

    # delivered: its own receipt kind and mark
    assert bob2.request("message.delivered", conversation_id=cid,
                        seq=m5["seq"])["data"] == {}
    delivered = {"type": "receipt", "conversation_id": cid,
                 "user_id": "bob", "kind": "delivered", "seq": 5}
    assert settle(alice, bob, bob2) == [[delivered]] * 3
    assert bob.ok("message.delivered", conversation_id=cid, seq=3) == {}
    assert settle(alice, bob, bob2) == [[], [], []]

    conv = bob.ok("conversation.list")["conversations"][0]
    assert conv["members"] == [
        {"user_id": "alice", "role": "member", "last_read_seq": 0,
         "last_delivered_seq": 0},
        {"user_id": "bob", "role": "member", "last_read_seq": 4,
         "last_delivered_seq": 5}]
    assert conv["unread_count"] == 1 and conv["last_seq"] == 9
    assert rows(chat.pg, "SELECT user_id, last_read_seq, last_delivered_seq "
                "FROM chat.members ORDER BY user_id") == \
        [("alice", 0, 0), ("bob", 4, 5)]

    for type_ in ("message.read", "message.delivered"):
        for fields, message in [
                ({"seq": -1}, "seq must be an integer >= 0"),
                ({"seq": "3"}, "seq must be an integer >= 0"),
                ({"seq": 1.5}, "seq must be an integer >= 0"),
                ({}, "seq is missing")]:
            assert error_of(bob, type_, conversation_id=cid, **fields) == \
                err("bad_request", message), (type_, fields)
    assert b4["seq"] == 4


# --------------------------------------------------------------------------
# sync

def test_sync_after_a_disconnect(chat):
    alice, bob = chat.connect("alice"), chat.connect("bob")
    cid = direct(alice, "bob")["id"]
    gid = group(alice, "g", ["bob"])["id"]
    g1, g2 = send(alice, gid, "g1"), send(bob, gid, "g2")
    m1, m2, m3 = (send(alice, cid, "m%d" % i) for i in (1, 2, 3))
    settle(alice, bob)
    bob.close()

    m4, m5, m6 = (send(alice, cid, "m%d" % i) for i in (4, 5, 6))   # 4..6
    e1 = alice.ok("message.edit", message_id=m1["id"],
                  body="m1 edited")["message"]                      # 7
    d2 = alice.ok("message.delete", message_id=m2["id"])["message"]  # 8
    e5 = alice.ok("message.edit", message_id=m5["id"],
                  body="m5 edited")["message"]                      # 9
    assert (e1["updated_seq"], d2["updated_seq"], e5["updated_seq"]) == \
        (7, 8, 9)
    settle(alice)

    bob = chat.connect("bob")
    watcher = chat.connect("bob")           # another connection of bob
    settle(watcher)
    events, data = sync(bob, {str(cid): 3})
    # in updated_seq order: m4, m6, m1 updated, m2 deleted, m5 (new to
    # bob: created, as it is now); the group from 0
    assert events == [ev("created", m4), ev("created", m6),
                      ev("updated", e1), ev("deleted", d2),
                      ev("created", e5),
                      ev("created", g1), ev("created", g2)]
    assert e5 == M(m5["id"], cid, 5, "alice", "m5 edited",
                   m5["client_msg_id"], updated_seq=9, edited=True)
    assert data == {"complete": True, "cursors": {str(cid): 9, str(gid): 2}}
    # only the syncing connection gets the replay
    assert settle(watcher) == []

    # again with the new cursors: nothing
    assert sync(bob, data["cursors"]) == ([], data)
    # a cursor beyond the end stays as given
    assert sync(bob, {str(cid): 50, str(gid): 2}) == \
        ([], {"complete": True, "cursors": {str(cid): 50, str(gid): 2}})
    # no cursors at all: everything from 0, each message once, as it is now
    # (a deleted one as deleted: its last change)
    events, data0 = sync(bob)
    assert events == [ev("created", m3), ev("created", m4),
                      ev("created", m6), ev("created", e1),
                      ev("deleted", d2), ev("created", e5),
                      ev("created", g1), ev("created", g2)]
    assert data0 == data
    # a sync is not a request with events for others
    assert settle(alice, watcher) == [[], []]


def test_sync_limit_resumes_exactly(chat):
    alice, bob = chat.connect("alice"), chat.connect("bob")
    cid = direct(alice, "bob")["id"]
    gid = group(alice, "g", ["bob"])["id"]
    ms = [send(alice, cid, "m%d" % i) for i in range(1, 8)]          # 1..7
    gs = [send(alice, gid, "g%d" % i) for i in range(1, 4)]          # 1..3
    e2 = alice.ok("message.edit", message_id=ms[1]["id"],
                  body="m2 edited")["message"]                       # 8
    d3 = alice.ok("message.delete", message_id=ms[2]["id"])["message"]  # 9
    settle(alice, bob)

    # from cursor 3: 4, 5, 6, 7, (2 updated) 8, (3 deleted) 9
    want_c = [ev("created", ms[3]), ev("created", ms[4]),
              ev("created", ms[5]), ev("created", ms[6]),
              ev("updated", e2), ev("deleted", d3)]
    want_g = [ev("created", g) for g in gs]

    events, data = sync(bob, {str(cid): 3}, limit=4)
    assert events == want_c[:4] + want_g
    assert data == {"complete": False, "cursors": {str(cid): 7, str(gid): 3}}
    events, data = sync(bob, data["cursors"], limit=4)
    assert events == want_c[4:]
    assert data == {"complete": True, "cursors": {str(cid): 9, str(gid): 3}}
    assert sync(bob, data["cursors"], limit=4) == ([], data)

    # limit 1 walks every change exactly once
    got, cursors = [], {str(cid): 3}
    for _ in range(20):
        events, data = sync(bob, cursors, limit=1)
        got += events
        cursors = data["cursors"]
        if data["complete"]:
            break
    assert got == [want_c[0], want_g[0], want_c[1], want_g[1], want_c[2],
                   want_g[2], want_c[3], want_c[4], want_c[5]]
    assert cursors == {str(cid): 9, str(gid): 3}

    for fields, message in [
            ({"limit": 0}, "limit must be an integer from 1 to 500"),
            ({"limit": 501}, "limit must be an integer from 1 to 500"),
            ({"conversations": []}, "conversations must be an object"),
            ({"conversations": {str(cid): -1}},
             "conversations must map conversation ids to integers >= 0"),
            ({"conversations": {"0%d" % cid: 1}},
             "conversations must map conversation ids to integers >= 0")]:
        assert error_of(bob, "sync", **fields) == \
            err("bad_request", message), fields


def test_sync_pages_carry_the_current_state_of_every_message(chat):
    """docs/protocol.md: a paged sync may replay a message the client never
    had as message.updated (its seq is below the page cursor); the event
    carries the whole current message, which the client upserts.  What
    matters: every missed message arrives once, in its current state."""
    alice, bob = chat.connect("alice"), chat.connect("bob")
    cid = direct(alice, "bob")["id"]
    send(alice, cid, "m1")
    m2 = send(alice, cid, "m2")                                     # 2
    m3 = send(alice, cid, "m3")                                     # 3
    e2 = alice.ok("message.edit", message_id=m2["id"],
                  body="m2 edited")["message"]                      # 4
    settle(alice, bob)
    events, data = sync(bob, {str(cid): 1}, limit=1)
    assert events == [ev("created", m3)]
    assert data == {"complete": False, "cursors": {str(cid): 3}}
    events, data = sync(bob, data["cursors"], limit=1)
    assert events == [ev("updated", e2)]
    assert data == {"complete": True, "cursors": {str(cid): 4}}
    events, data = sync(bob, data["cursors"], limit=1)
    assert events == [] and data["complete"] is True


# --------------------------------------------------------------------------
# blocks

def test_blocks_refuse_direct_messages_and_part_groups(chat):
    alice, bob, carol = (chat.connect(u) for u in ("alice", "bob", "carol"))
    dm = direct(alice, "bob")["id"]
    gid = group(alice, "g", ["bob", "carol"])["id"]
    before = send(alice, dm, "before", "pre")
    settle(alice, bob, carol)

    # (its one event is for the module: the pair stops watching presence)
    assert rows(chat.pg, "SELECT chat.api_block('bob', "
                "'{\"user_id\": \"alice\"}')")[0][0]["ok"] == {}

    for c, cm in ((alice, "a-blocked"), (bob, "b-blocked")):
        assert error_of(c, "message.send", conversation_id=dm, body="hi",
                        client_msg_id=cm) == err("forbidden", "blocked")
    assert error_of(alice, "conversation.create", kind="direct",
                    user_id="bob") == err("forbidden", "blocked")
    # a retry of a message stored before the block still gets its answer
    assert send(alice, dm, "before", "pre") == before
    assert settle(alice, bob, carol) == [[], [], []]

    # the group goes on, but neither hears the other there (H1)
    g1 = send(alice, gid, "group ok")
    g2 = send(bob, gid, "me too")
    assert settle(alice) == [ev("created", g1)]
    assert settle(bob) == [ev("created", g2)]
    assert settle(carol) == [ev("created", g1), ev("created", g2)]

    assert rows(chat.pg, "SELECT count(*) FROM chat.messages "
                "WHERE conversation_id = %s", (dm,)) == [(1,)]

    # unblocked: sends again, with the next number (nothing was burnt)
    rows(chat.pg, "SELECT chat.api_unblock('bob', '{\"user_id\": "
         "\"alice\"}')")
    assert send(bob, dm, "back")["seq"] == 2


# --------------------------------------------------------------------------
# IDOR

def test_outsider_cannot_tell_a_conversation_exists(chat):
    alice, bob, carol = (chat.connect(u) for u in ("alice", "bob", "carol"))
    cid = direct(alice, "bob")["id"]
    m = send(alice, cid, "secret")
    settle(alice, bob, carol)
    missing_cid, missing_mid = cid + 1000, m["id"] + 1000

    def both(type_, key, real, missing, **fields):
        e1 = error_of(carol, type_, **{key: real}, **fields)
        e2 = error_of(carol, type_, **{key: missing}, **fields)
        assert e1 == e2, (type_, e1, e2)
        return e1

    nf_conv = err("not_found", "conversation not found")
    nf_msg = err("not_found", "message not found")
    assert both("messages.history", "conversation_id", cid,
                missing_cid) == nf_conv
    assert both("messages.history", "conversation_id", cid, missing_cid,
                after_seq=0) == nf_conv
    assert both("message.send", "conversation_id", cid, missing_cid,
                body="x", client_msg_id="x") == nf_conv
    assert both("message.read", "conversation_id", cid, missing_cid,
                seq=1) == nf_conv
    assert both("message.delivered", "conversation_id", cid, missing_cid,
                seq=1) == nf_conv
    assert both("message.edit", "message_id", m["id"], missing_mid,
                body="x") == nf_msg
    assert both("message.delete", "message_id", m["id"],
                missing_mid) == nf_msg
    # reply_to a message of a conversation carol is not in
    own = group(carol, "mine", [])["id"]
    settle(carol)
    assert error_of(carol, "message.send", conversation_id=own, body="x",
                    client_msg_id="r", reply_to=m["id"]) == \
        error_of(carol, "message.send", conversation_id=own, body="x",
                 client_msg_id="r", reply_to=missing_mid)

    # sync: a conversation one is not in is ignored exactly like one that
    # does not exist (schema.md); no replay, not in the cursors
    assert sync(carol, {str(cid): 0}) == sync(carol, {str(missing_cid): 0}) \
        == ([], {"complete": True, "cursors": {str(own): 0}})

    assert settle(alice, bob, carol) == [[], [], []]
    assert rows(chat.pg, "SELECT id, body, updated_seq FROM chat.messages") \
        == [(m["id"], "secret", 1)]
    assert rows(chat.pg, "SELECT user_id, last_read_seq, last_delivered_seq "
                "FROM chat.members WHERE conversation_id = %s "
                "ORDER BY user_id", (cid,)) == [("alice", 0, 0),
                                                 ("bob", 0, 0)]


# --------------------------------------------------------------------------
# wrong JSON types: bad_request, and the connection stays

BAD_TYPES = [
    ("conversation.create", {"kind": 1}, 'kind must be "direct" or "group"'),
    ("conversation.create", {"kind": "direct", "user_id": {}},
     "user_id must be a user id"),
    ("conversation.create", {"kind": "group", "title": True},
     "title must be a non-empty string"),
    ("conversation.create", {"kind": "group", "title": "t", "members": 3},
     "members must be an array of user ids"),
    ("conversation.create", {"kind": "group", "title": "t", "ref": []},
     "ref must be a non-empty string"),
    ("conversation.create", {"kind": "group", "title": "t",
                             "metadata": 1}, "metadata must be an object"),
    ("conversation.list", {"limit": "10"},
     "limit must be an integer from 1 to 100"),
    ("conversation.list", {"limit": 2.5},
     "limit must be an integer from 1 to 100"),
    ("conversation.list", {"archived": "yes"}, "archived must be a boolean"),
    ("conversation.list", {"archived": 1}, "archived must be a boolean"),
    ("conversation.list", {"before": 5}, "before is not a valid cursor"),
    ("conversation.list", {"before": "yesterday"},
     "before is not a valid cursor"),
    ("messages.history", {"conversation_id": "1"},
     "conversation_id must be a positive integer"),
    ("messages.history", {"conversation_id": 1, "before_seq": "1"},
     "before_seq must be an integer >= 0"),
    ("messages.history", {"conversation_id": 1, "after_seq": True},
     "after_seq must be an integer >= 0"),
    ("messages.history", {"conversation_id": 1, "limit": [5]},
     "limit must be an integer from 1 to 100"),
    ("message.send", {"conversation_id": [1], "body": "b",
                      "client_msg_id": "c"},
     "conversation_id must be a positive integer"),
    ("message.send", {"conversation_id": 1, "body": {"t": "b"},
                      "client_msg_id": "c"}, "body must be a string"),
    ("message.send", {"conversation_id": 1, "body": "b",
                      "client_msg_id": 1}, "client_msg_id must be a "
     "non-empty string"),
    ("message.send", {"conversation_id": 1, "body": "b",
                      "client_msg_id": "c", "attachments": "a"},
     "attachments must be an array"),
    ("message.send", {"conversation_id": 1, "body": "b",
                      "client_msg_id": "c", "reply_to": "1"},
     "reply_to must be a message id"),
    ("message.edit", {"message_id": "1", "body": "b"},
     "message_id must be a positive integer"),
    ("message.edit", {"message_id": 1, "body": False},
     "body must be a string"),
    ("message.delete", {"message_id": True},
     "message_id must be a positive integer"),
    ("message.delete", {}, "message_id is missing"),
    ("message.read", {"conversation_id": None, "seq": 1},
     "conversation_id is missing"),
    ("message.read", {"conversation_id": 1, "seq": "3"},
     "seq must be an integer >= 0"),
    ("message.delivered", {"conversation_id": 1, "seq": 1.5},
     "seq must be an integer >= 0"),
    ("message.delivered", {"conversation_id": {}, "seq": 1},
     "conversation_id must be a positive integer"),
    ("sync", {"conversations": []}, "conversations must be an object"),
    ("sync", {"conversations": "1:2"}, "conversations must be an object"),
    ("sync", {"conversations": {"1": "2"}},
     "conversations must map conversation ids to integers >= 0"),
    ("sync", {"conversations": {"x": 1}},
     "conversations must map conversation ids to integers >= 0"),
    ("sync", {"limit": "5"}, "limit must be an integer from 1 to 500"),
]


def test_wrong_field_types_are_bad_requests(chat):
    alice = chat.connect("alice")
    for type_, fields, message in BAD_TYPES:
        reply = alice.request(type_, **fields)
        assert reply == {"type": "error", "id": reply["id"],
                         "error": err("bad_request", message)}, \
            (type_, fields)
        assert set(alice.ok("ping")) == {"time"}
    assert alice.events == []
    assert rows(chat.pg, "SELECT count(*) FROM chat.conversations") == [(0,)]


# --------------------------------------------------------------------------
# users

def test_users_upserted_from_token_claims(chat):
    def user_rows(deadline_s=5, want=None):
        deadline = time.monotonic() + deadline_s
        while True:
            r = rows(chat.pg, "SELECT id, name, avatar FROM chat.users "
                     "ORDER BY id")
            if r == want or time.monotonic() > deadline:
                return r
            time.sleep(0.05)

    a = chat.ws("alice", name="Alice A", avatar="https://example.com/a.png")
    assert a.welcome["user"] == {"id": "alice", "name": "Alice A",
                                 "avatar": "https://example.com/a.png"}
    chat.connect("bob")
    want = [("alice", "Alice A", "https://example.com/a.png"),
            ("bob", "bob", None)]
    assert user_rows(want=want) == want

    # a later connect with other claims updates the row
    chat.ws("alice", name="Alice B")
    want = [("alice", "Alice B", None), ("bob", "bob", None)]
    assert user_rows(want=want) == want


# --------------------------------------------------------------------------
# conversation.list

def test_conversation_list_paging_and_archived(chat):
    alice = chat.connect("alice")
    convs = [direct(alice, "u%d" % i)["id"] for i in range(1, 6)]
    # activity: u1 gets a message last, so it comes first
    send(alice, convs[0], "bump")
    order = [convs[0]] + convs[:0:-1]       # u1, u5, u4, u3, u2

    def page(**kw):
        return alice.ok("conversation.list", **kw)

    first = page(limit=2)
    assert [c["id"] for c in first["conversations"]] == order[:2]
    assert isinstance(first["next"], str)
    second = page(limit=2, before=first["next"])
    assert [c["id"] for c in second["conversations"]] == order[2:4]
    third = page(limit=2, before=second["next"])
    assert third["next"] is None
    assert [c["id"] for c in third["conversations"]] == order[4:]
    full = page()
    assert full["next"] is None
    assert full["conversations"] == first["conversations"] + \
        second["conversations"] + third["conversations"]
    assert page(limit=5)["next"] is None
    assert full["conversations"][0]["last_message"]["body"] == "bump"

    # archived (set in storage: no request archives yet)
    chat.pg.query("UPDATE chat.members SET archived = true "
                  "WHERE conversation_id = %s AND user_id = 'alice'",
                  (convs[2],))
    live = page()["conversations"]
    assert [c["id"] for c in live] == [i for i in order if i != convs[2]]
    assert all(c["archived"] is False for c in live)
    arch = page(archived=True)
    assert [c["id"] for c in arch["conversations"]] == [convs[2]]
    assert arch["conversations"][0]["archived"] is True
    assert arch["next"] is None
    assert page(archived=False)["conversations"] == live

    # the other side: u3 still sees it unarchived
    u3 = chat.connect("u3")
    assert [c["id"] for c in u3.ok("conversation.list")["conversations"]] \
        == [convs[2]]

    assert error_of(alice, "conversation.list", limit=101) == \
        err("bad_request", "limit must be an integer from 1 to 100")
    assert page(limit=100)["next"] is None
