"""The host application's SQL API (sql/api/70_host.sql): functions a host
calls inside its own transactions, whose changes reach connected clients
live through chat.outbox and NOTIFY chat_outbox.  Real nginx, real
PostgreSQL, real WebSocket clients.
"""

import json
import re
import time

import psycopg
import pytest

from chatlib import make_token, ws_connect


LOCATIONS = "location = /chat/ws { chat_websocket; }"


def start(nginx, postgres, workers=1):
    postgres.reset()
    postgres.query("TRUNCATE chat.outbox RESTART IDENTITY")
    http = 'chat_postgres "%s" pool=2;' % postgres.dsn
    if workers > 1:
        http += "\nchat_zone chat 8m;"
    n = nginx(LOCATIONS, http=http, workers=workers)
    wait_outbox(n, workers)
    return n


def wait_outbox(n, workers, timeout=15):
    """Until every worker knows where the outbox ends: a change made
    before that is not delivered (a worker starts where the outbox ends)."""
    deadline = time.monotonic() + timeout
    while len(re.findall(r"reading chat\.outbox after id",
                         n.error_log())) < workers:
        assert time.monotonic() < deadline, n.error_log()[-2000:]
        time.sleep(0.05)


def connect(n, user):
    c = ws_connect(n, make_token(n.key, user))
    # a ping round trip: the user is upserted, the pool is up
    c.ok("ping")
    return c


def host(postgres, *statements):
    """One host transaction; returns the last statement's first column."""
    with postgres.connect(autocommit=False) as conn:
        out = None
        for sql, params in statements:
            row = conn.execute(sql, params).fetchone()
            out = row[0] if row else None
        conn.commit()
    return out


def next_of(c, type_, timeout=15):
    return c.next_event(type_, timeout=timeout)


# --------------------------------------------------------------------------
# the SQL functions themselves

def test_functions_write_the_outbox_and_notify(postgres):
    postgres.reset()
    postgres.query("TRUNCATE chat.outbox RESTART IDENTITY")
    notes = []
    with postgres.connect() as listener:
        listener.add_notify_handler(lambda n: notes.append(n.payload))
        listener.execute("LISTEN chat_outbox")
        gid = host(postgres, (
            "SELECT chat.create_conversation('alice', 'group', "
            "ARRAY['bob'], 'Team', 'proj:1', '{\"k\": 1}')", None))
        conv = postgres.query("SELECT kind, title, ref, metadata "
                              "FROM chat.conversations WHERE id = %s",
                              (gid,))
        assert conv == [("group", "Team", "proj:1", {"k": 1})]
        mid = host(postgres, ("SELECT chat.post_message(%s, 'bob', 'hi')",
                              (gid,)))
        host(postgres, ("SELECT chat.add_member(%s, 'carol')", (gid,)))
        sid = host(postgres, ("SELECT chat.post_message(%s, 'svc', "
                              "'Welcome', true, 'w1')", (gid,)))
        # the same system message again: stored once, published once
        assert host(postgres, ("SELECT chat.post_message(%s, 'svc', "
                               "'Welcome', true, 'w1')", (gid,))) == sid
        # notifications are handed over when the connection reads
        listener.execute("SELECT 1")
    rows = postgres.query("SELECT id, events FROM chat.outbox ORDER BY id")
    # the payload is only the row's id
    assert notes == [str(r[0]) for r in rows] == ["1", "2", "3", "4"]
    kinds = [[e["event"]["type"] for e in r[1]] for r in rows]
    assert kinds == [["conversation.created"], ["message.created"],
                     ["member.joined"], ["message.created"]]
    assert rows[1][1][0]["to"] == ["alice", "bob"]
    assert rows[1][1][0]["event"]["message"]["id"] == mid
    assert rows[2][1][0]["to"] == ["alice", "bob", "carol"]
    assert rows[3][1][0]["event"]["message"]["system"] is True
    assert postgres.query("SELECT sender_id, kind FROM chat.messages "
                          "ORDER BY id") == [("bob", "user"),
                                             ("svc", "system")]


def test_errors_raise_and_roll_back_the_host_transaction(postgres):
    postgres.reset()
    postgres.query("TRUNCATE chat.outbox RESTART IDENTITY")
    gid = host(postgres, ("SELECT chat.create_conversation('alice', "
                          "'group', ARRAY['bob'], 'g')", None))
    for sql, params, message in [
        ("SELECT chat.post_message(%s, 'mallory', 'x')", (gid,),
         "conversation not found"),
        ("SELECT chat.post_message(%s, 'bob', '')", (gid,),
         "body must not be empty"),
        ("SELECT chat.create_conversation('alice', 'channel', NULL)", None,
         'kind must be "direct" or "group"'),
        ("SELECT chat.add_member(999, 'bob')", None,
         "conversation 999 not found"),
        ("SELECT chat.add_member(%s, 'bob', 'boss')", (gid,),
         "a user id and a role"),
    ]:
        with postgres.connect(autocommit=False) as conn:
            conn.execute("CREATE TEMP TABLE host_work (x int)")
            with pytest.raises(psycopg.Error) as e:
                conn.execute(sql, params)
            assert message in str(e.value)
            conn.rollback()
    assert postgres.query("SELECT count(*) FROM chat.messages") == [(0,)]
    assert postgres.query("SELECT count(*) FROM chat.outbox") == [(1,)]
    d = host(postgres, ("SELECT chat.create_conversation('alice', "
                        "'direct', ARRAY['bob'])", None))
    with pytest.raises(psycopg.Error) as e:
        host(postgres, ("SELECT chat.add_member(%s, 'carol')", (d,)))
    assert "is not a group" in str(e.value)


# --------------------------------------------------------------------------
# live delivery

def test_host_changes_reach_clients_live(nginx, postgres):
    n = start(nginx, postgres)
    alice, bob = connect(n, "alice"), connect(n, "bob")
    # one host transaction: a group and two messages
    gid = None
    with postgres.connect(autocommit=False) as conn:
        gid = conn.execute("SELECT chat.create_conversation('alice', "
                           "'group', ARRAY['bob'], 'Team')").fetchone()[0]
        conn.execute("SELECT chat.post_message(%s, 'alice', 'one')", (gid,))
        conn.execute("SELECT chat.post_message(%s, 'svc', 'two', true)",
                     (gid,))
        conn.commit()
    for c in (alice, bob):
        assert next_of(c, "conversation.created")["conversation"]["id"] \
            == gid
        first = next_of(c, "message.created")["message"]
        second = next_of(c, "message.created")["message"]
        assert (first["body"], first["seq"]) == ("one", 1)
        assert (second["body"], second["seq"], second["system"]) == \
            ("two", 2, True)
    # a rolled-back change says nothing; the next committed one arrives
    # first
    with postgres.connect(autocommit=False) as conn:
        conn.execute("SELECT chat.post_message(%s, 'bob', 'never')", (gid,))
        conn.rollback()
    host(postgres, ("SELECT chat.add_member(%s, 'carol')", (gid,)))
    ev = next_of(alice, None)
    assert (ev["type"], ev["user_id"]) == ("member.joined", "carol")
    assert postgres.query("SELECT count(*) FROM chat.messages") == [(2,)]
    alice.close()
    bob.close()


def test_every_worker_delivers_to_its_own_clients(nginx, postgres):
    n = start(nginx, postgres, workers=3)
    clients = [connect(n, "u%d" % i) for i in range(9)]
    pids = {c.welcome["session"].split("-")[0] for c in clients}
    assert len(pids) >= 2, pids
    gid = host(postgres, ("SELECT chat.create_conversation('u0', 'group', "
                          "%s, 'all')", (["u%d" % i for i in range(1, 9)],)))
    for i in range(5):
        host(postgres, ("SELECT chat.post_message(%s, 'u0', %s)",
                        (gid, "m%d" % i)))
    for c in clients:
        assert next_of(c, "conversation.created")["conversation"]["id"] \
            == gid
        got = [next_of(c, "message.created")["message"]["body"]
               for _ in range(5)]
        assert got == ["m0", "m1", "m2", "m3", "m4"]
        # exactly once: a ping answered behind anything still queued
        c.ok("ping")
        assert [e for e in c.events if e["type"] == "message.created"] == []
    for c in clients:
        c.close()


@pytest.mark.allow_log(r"lost the PostgreSQL connection",
                       r"terminating connection due to administrator")
def test_a_lost_listener_catches_up(nginx, postgres):
    n = start(nginx, postgres)
    bob = connect(n, "bob")
    gid = host(postgres, ("SELECT chat.create_conversation('alice', "
                          "'group', ARRAY['bob'], 'g')", None))
    next_of(bob, "conversation.created")
    # every connection of nginx is cut; changes are made before it is back
    postgres.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                   "WHERE datname = 'chat' AND pid <> pg_backend_pid() "
                   "AND backend_type = 'client backend'")
    for i in range(3):
        host(postgres, ("SELECT chat.post_message(%s, 'alice', %s)",
                        (gid, "while away %d" % i)))
    got = [next_of(bob, "message.created", timeout=30)["message"]["body"]
           for _ in range(3)]
    assert got == ["while away 0", "while away 1", "while away 2"]
    bob.close()


def test_a_worker_starts_where_the_outbox_ends(nginx, postgres):
    """What was in the outbox before a worker started is not replayed."""
    postgres.reset()
    postgres.query("TRUNCATE chat.outbox RESTART IDENTITY")
    gid = host(postgres, ("SELECT chat.create_conversation('alice', "
                          "'group', ARRAY['bob'], 'g')", None))
    host(postgres, ("SELECT chat.post_message(%s, 'alice', 'old')", (gid,)))
    n = nginx(LOCATIONS, http='chat_postgres "%s" pool=2;' % postgres.dsn)
    bob = connect(n, "bob")
    # wait until the worker has read where the outbox ends: a new change
    # is delivered, and it is the first thing bob hears
    deadline = time.monotonic() + 20
    while True:
        host(postgres, ("SELECT chat.post_message(%s, 'alice', 'new')",
                        (gid,)))
        try:
            ev = next_of(bob, "message.created", timeout=2)
            break
        except (TimeoutError, Exception):
            if time.monotonic() > deadline:
                raise
    assert ev["message"]["body"] == "new"
    bob.close()
    assert json.loads(json.dumps(ev))["message"]["conversation_id"] == gid


# --------------------------------------------------------------------------
# L3: what is in chat.outbox is checked against the tables, never trusted

def test_l3_forged_outbox_rows_do_not_reach_clients_as_forged(
        nginx, postgres):
    """L3: rows written into chat.outbox by hand (the owner, an SQL
    injection running as it) reach clients only as the tables say: no
    unknown types, no messages that were never stored, stored messages as
    stored, membership, receipts and typing only as they are, recipients
    only members; a row that is not a list does not stop the reader."""
    n = start(nginx, postgres)
    alice, bob, mallory = (connect(n, u) for u in ("alice", "bob",
                                                   "mallory"))
    gid = host(postgres, ("SELECT chat.create_conversation('alice', "
                          "'group', ARRAY['bob'], 'Team')", None))
    mid = host(postgres, ("SELECT chat.post_message(%s, 'alice', 'real')",
                          (gid,)))
    for c in (alice, bob):
        next_of(c, "conversation.created")
        assert next_of(c, "message.created")["message"]["body"] == "real"

    stored = {"id": mid, "conversation_id": gid, "seq": 1,
              "sender_id": "alice", "body": "real"}
    everyone = ["alice", "bob", "mallory"]
    forged = [
        # 1: a message never stored, with a javascript: attachment
        {"to": everyone, "event": {"type": "message.created", "message": {
            "id": mid + 100, "conversation_id": gid, "seq": 2,
            "sender_id": "ceo", "body": "Urgent: wire the money",
            "attachments": [{"url": "javascript:alert(1)"}]}}},
        # 2: an event the SQL API never makes
        {"to": everyone, "event": {"type": "welcome", "user": {"id": "x"}}},
        # 3: a stored message with another body (and a third recipient)
        {"to": everyone, "event": {"type": "message.updated",
                                   "message": dict(stored, body="forged",
                                                   updated_seq=1)}},
        # 4: alice left (she did not), 5: ceo joined (he did not)
        {"to": everyone, "event": {"type": "member.left",
                                   "conversation_id": gid,
                                   "user_id": "alice", "role": "owner"}},
        {"to": everyone, "event": {"type": "member.joined",
                                   "conversation_id": gid,
                                   "user_id": "ceo", "role": "owner"}},
        # 6: bob read up to 999 (he did not)
        {"to": everyone, "event": {"type": "receipt",
                                   "conversation_id": gid,
                                   "user_id": "bob", "kind": "read",
                                   "seq": 999}},
        # 7: typing of a stranger, 8: of a member, with markup
        {"to": everyone, "event": {"type": "typing", "conversation_id": gid,
                                   "user_id": "ceo", "active": True}},
        {"to": everyone, "event": {"type": "typing", "conversation_id": gid,
                                   "user_id": "bob", "active": True,
                                   "html": "<img src=x onerror=alert(1)>"}},
        # 9: presence of ceo, who shares nothing with anyone
        {"to": everyone, "event": {"type": "presence", "user_id": "ceo",
                                   "online": True, "last_seen": None}},
        # 10: a receipt with a forged message in it
        {"to": everyone, "event": {"type": "receipt",
                                   "conversation_id": gid,
                                   "user_id": "alice", "kind": "read",
                                   "seq": 0,
                                   "message": {"body": "forged"}}},
        # 11: not an event at all
        {"to": "alice", "event": "message.created"},
    ]
    postgres.query("INSERT INTO chat.outbox (events) VALUES (%s::jsonb)",
                   (json.dumps(forged),))
    # 12: a row that is not a list
    postgres.query("INSERT INTO chat.outbox (events) VALUES ('{}')")
    postgres.query("NOTIFY chat_outbox")
    # a genuine change after them still arrives: the reader went on
    host(postgres, ("SELECT chat.post_message(%s, 'bob', 'after')", (gid,)))

    for c in (alice, bob):
        got = []
        while True:
            ev = next_of(c, None)
            if ev.get("type") == "message.created" \
                    and ev["message"]["body"] == "after":
                break
            got.append(ev)
        types = [e["type"] for e in got]
        # the stored message as it is stored (already delivered, so a
        # repeat the order drops); nothing else of the above
        upd = [e for e in got if e["type"] == "message.updated"]
        assert all(e["message"]["body"] == "real" for e in upd), got
        assert "message.created" not in types and "welcome" not in types
        assert "member.left" not in types and "member.joined" not in types
        assert "presence" not in types
        for e in got:
            if e["type"] == "receipt":
                assert e == {"type": "receipt", "conversation_id": gid,
                             "user_id": "alice", "kind": "read", "seq": 0}
            if e["type"] == "typing":
                assert e == {"type": "typing", "conversation_id": gid,
                             "user_id": "bob", "active": True}
                assert c is alice
    # mallory is in none of it
    mallory.ok("ping")
    assert mallory.events == []
    with pytest.raises(TimeoutError):
        mallory.next_event(None, timeout=1)
    for c in (alice, bob, mallory):
        c.close()
