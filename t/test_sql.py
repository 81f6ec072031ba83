"""The PostgreSQL layer (sql/api/) on its own: the chat.api_*
functions called with JSON exactly as the module calls them, results and
database state checked exactly.  No nginx here."""

import json
import re
import threading

import psycopg
import pytest

import chatlib
from chatlib import C, M, shared
from chatlib import error as err


def ok(data, events=()):
    return {"ok": data, "events": list(events)}


def ev(to, event):
    return {"to": list(to), "event": event}


class DB:
    def __init__(self, pg, conn):
        self.pg = pg
        self.conn = conn

    def api(self, name, user, req):
        """chat.api_<name>(user, req); req: a Python value, or a str that is
        passed as JSON text unchanged, or None for SQL NULL."""
        if req is not None and not isinstance(req, str):
            req = json.dumps(req)
        return self.conn.execute(
            "SELECT chat.api_%s(%%s, %%s::jsonb)" % name,
            (user, req)).fetchone()[0]

    def batch(self, items, conn=None):
        return (conn or self.conn).execute(
            "SELECT chat.api_message_send_batch(%s::jsonb)",
            (json.dumps(items),)).fetchone()[0]

    def q(self, sql, *params):
        cur = self.conn.execute(sql, params or None)
        return cur.fetchall() if cur.description else []

    def one(self, sql, *params):
        return self.q(sql, *params)[0][0]

    # conveniences that must succeed

    def group(self, owner, *members, title="g"):
        r = self.api("conversation_create", owner,
                     {"kind": "group", "title": title,
                      "members": list(members)})
        assert "ok" in r, r
        return r["ok"]["conversation"]["id"]

    def direct(self, a, b):
        r = self.api("conversation_create", a,
                     {"kind": "direct", "user_id": b})
        assert "ok" in r, r
        return r["ok"]["conversation"]["id"]

    def send(self, user, cid, body="hi", cmid=None, **extra):
        req = dict(conversation_id=cid, body=body,
                   client_msg_id=cmid or chatlib.cmid("m"), **extra)
        r = self.api("message_send", user, req)
        assert "ok" in r, r
        return r["ok"]["message"]

    def last_seq(self, cid):
        return self.one("SELECT last_seq FROM chat.conversations "
                        "WHERE id = %s", cid)


@pytest.fixture
def db(postgres):
    postgres.reset()
    with postgres.connect() as conn:
        yield DB(postgres, conn)


# ---------------------------------------------------------------------------
# schema (migrations and privileges: test_migrate.py)

def test_no_foreign_keys_to_users(db):
    assert db.q("SELECT conname FROM pg_constraint "
                "WHERE contype = 'f' "
                "AND confrelid = 'chat.users'::regclass") == []


def test_functions_without_dynamic_sql(db):
    rows = db.q("SELECT p.proname, p.prosrc "
                "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'chat'")
    assert len(rows) > 20
    for name, src in rows:
        assert not re.search(r"\bEXECUTE\b", src, re.I), name


# ---------------------------------------------------------------------------
# user.upsert

def test_user_upsert(db):
    assert db.api("user_upsert", "alice", {}) == ok({})
    assert db.q("SELECT id, name, avatar FROM chat.users") == \
        [("alice", "alice", None)]
    assert db.api("user_upsert", "alice",
                  {"name": "Alice", "avatar": "https://a/x.png",
                   "type": "ignored"}) == ok({})
    assert db.q("SELECT id, name, avatar FROM chat.users") == \
        [("alice", "Alice", "https://a/x.png")]
    before = db.one("SELECT updated_at FROM chat.users")
    assert db.api("user_upsert", "alice",
                  {"name": "Alice", "avatar": "https://a/x.png"}) == ok({})
    assert db.one("SELECT updated_at FROM chat.users") == before
    assert db.api("user_upsert", "alice", {"name": ""}) == ok({})
    assert db.q("SELECT name, avatar FROM chat.users") == [("alice", None)]


@pytest.mark.parametrize("req, error", [
    ({"name": 5}, err("bad_request", "name must be a string")),
    ({"name": "x" * 201}, err("too_large",
                              "name is longer than 200 characters")),
    ({"avatar": []}, err("bad_request", "avatar must be a string")),
    ({"avatar": "x" * 2049},
     err("too_large", "avatar is longer than 2048 characters")),
    ("[]", err("bad_request", "request must be a JSON object")),
    (None, err("bad_request", "request must be a JSON object")),
])
def test_user_upsert_errors(db, req, error):
    assert db.api("user_upsert", "alice", req) == error
    assert db.q("SELECT * FROM chat.users") == []


@pytest.mark.parametrize("user", [None, "", "a\nb", "x" * 129])
def test_invalid_user_id(db, user):
    assert db.api("user_upsert", user, {}) == \
        err("bad_request", "user id is invalid")
    assert db.api("conversation_list", user, {}) == \
        err("bad_request", "user id is invalid")


# ---------------------------------------------------------------------------
# conversation.create

def test_create_group(db):
    r = db.api("conversation_create", "alice",
               {"kind": "group", "title": "Team", "ref": "ad:1",
                "metadata": {"k": [1, 2]},
                "members": ["bob", "carol", "bob", "alice"]})
    conv = C(1, "group", [("alice", "owner"), ("bob", "member"),
                          ("carol", "member")],
             title="Team", ref="ad:1", metadata={"k": [1, 2]})
    assert r == ok({"conversation": conv}, [
        ev(["alice", "bob", "carol"],
           {"type": "conversation.created", "conversation": conv})])
    assert db.q("SELECT user_id, role, last_read_seq, muted, archived "
                "FROM chat.members ORDER BY user_id") == [
        ("alice", "owner", 0, False, False),
        ("bob", "member", 0, False, False),
        ("carol", "member", 0, False, False)]
    assert db.q("SELECT kind, title, ref, direct_key, created_by, last_seq "
                "FROM chat.conversations") == [
        ("group", "Team", "ad:1", None, "alice", 0)]


def test_create_group_alone_and_limits(db):
    r = db.api("conversation_create", "alice",
               {"kind": "group", "title": "x" * 200})
    assert r["ok"]["conversation"]["members"] == [
        {"user_id": "alice", "role": "owner", "last_read_seq": 0,
         "last_delivered_seq": 0}]
    assert r["events"][0]["to"] == ["alice"]
    members = ["u%d" % i for i in range(1000)]
    r = db.api("conversation_create", "alice",
               {"kind": "group", "title": "big", "members": members,
                "metadata": {"x": "y" * 16000}})
    # the object lists the first 100 (docs/protocol.md, "Objects")
    assert len(r["ok"]["conversation"]["members"]) == 100
    assert r["ok"]["conversation"]["members_count"] == 1001
    assert len(r["events"][0]["to"]) == 1001


def test_create_direct(db):
    r = db.api("conversation_create", "bob",
               {"kind": "direct", "user_id": "alice"})
    conv = C(1, "direct", [("alice", "member"), ("bob", "member")])
    assert r == ok({"conversation": conv}, [
        ev(["alice", "bob"],
           {"type": "conversation.created", "conversation": conv})])
    assert db.one("SELECT direct_key FROM chat.conversations") == \
        "5:alicebob"
    db.send("alice", 1, "hi")
    # again, from either side: the same conversation, no events
    for user, other in (("bob", "alice"), ("alice", "bob")):
        r = db.api("conversation_create", user,
                   {"kind": "direct", "user_id": other, "ref": "x"})
        assert r["events"] == []
        assert r["ok"]["conversation"]["id"] == 1
        assert r["ok"]["conversation"]["ref"] is None
    assert db.one("SELECT count(*) FROM chat.conversations") == 1


def test_direct_key_is_unambiguous(db):
    a = db.direct("a:b", "c")
    b = db.direct("a", "b:c")
    c = db.direct("ab", ":c")
    assert len({a, b, c}) == 3


def test_create_direct_blocked(db):
    db.api("block", "bob", {"user_id": "alice"})
    assert db.api("conversation_create", "alice",
                  {"kind": "direct", "user_id": "bob"}) == \
        err("forbidden", "blocked")
    assert db.api("conversation_create", "bob",
                  {"kind": "direct", "user_id": "alice"}) == \
        err("forbidden", "blocked")
    assert db.q("SELECT * FROM chat.conversations") == []
    db.api("unblock", "bob", {"user_id": "alice"})
    assert db.direct("alice", "bob") == 1


def test_create_direct_concurrently(db):
    """Both users open the pair at once: one conversation."""
    results = []

    def create(a, b):
        with db.pg.connect() as c:
            results.append(c.execute(
                "SELECT chat.api_conversation_create(%s, %s::jsonb)",
                (a, json.dumps({"kind": "direct", "user_id": b})))
                .fetchone()[0])

    threads = [threading.Thread(target=create, args=p)
               for p in [("alice", "bob"), ("bob", "alice")] * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # A losing INSERT ... ON CONFLICT may consume a sequence number, so
    # the id is not necessarily 1: what matters is that all agree.
    ids = {r["ok"]["conversation"]["id"] for r in results}
    assert len(ids) == 1
    assert db.one("SELECT count(*) FROM chat.conversations") == 1
    assert db.one("SELECT id FROM chat.conversations") in ids
    assert sum(len(r["events"]) for r in results) == 1
    assert db.one("SELECT count(*) FROM chat.members") == 2


CREATE_ERRORS = [
    ({}, "bad_request", "kind is missing"),
    ({"kind": "channel"}, "bad_request",
     'kind must be "direct" or "group"'),
    ({"kind": 1}, "bad_request", 'kind must be "direct" or "group"'),
    ({"kind": "direct"}, "bad_request", "user_id is missing"),
    ({"kind": "direct", "user_id": None}, "bad_request",
     "user_id is missing"),
    ({"kind": "direct", "user_id": 5}, "bad_request",
     "user_id must be a user id"),
    ({"kind": "direct", "user_id": ""}, "bad_request",
     "user_id must be a user id"),
    ({"kind": "direct", "user_id": "x" * 129}, "bad_request",
     "user_id must be a user id"),
    ({"kind": "direct", "user_id": "alice"}, "bad_request",
     "a direct conversation needs another user"),
    ({"kind": "group"}, "bad_request", "title is missing"),
    ({"kind": "group", "title": ""}, "bad_request",
     "title must be a non-empty string"),
    ({"kind": "group", "title": 7}, "bad_request",
     "title must be a non-empty string"),
    ({"kind": "group", "title": "x" * 201}, "too_large",
     "title is longer than 200 characters"),
    ({"kind": "group", "title": "t", "members": "bob"}, "bad_request",
     "members must be an array of user ids"),
    ({"kind": "group", "title": "t", "members": ["bob", 1]}, "bad_request",
     "members must be an array of user ids"),
    ({"kind": "group", "title": "t", "members": [""]}, "bad_request",
     "members must be an array of user ids"),
    ({"kind": "group", "title": "t", "members": ["a\tb"]}, "bad_request",
     "members must be an array of user ids"),
    ({"kind": "group", "title": "t",
      "members": ["u%d" % i for i in range(1001)]}, "too_large",
     "members has more than 1000 entries"),
    ({"kind": "group", "title": "t", "ref": 5}, "bad_request",
     "ref must be a non-empty string"),
    ({"kind": "group", "title": "t", "ref": ""}, "bad_request",
     "ref must be a non-empty string"),
    ({"kind": "group", "title": "t", "ref": "r" * 201}, "too_large",
     "ref is longer than 200 characters"),
    ({"kind": "group", "title": "t", "metadata": []}, "bad_request",
     "metadata must be an object"),
    ({"kind": "group", "title": "t", "metadata": "{}"}, "bad_request",
     "metadata must be an object"),
    ({"kind": "group", "title": "t", "metadata": {"x": "y" * 16400}},
     "too_large", "metadata is larger than 16384 bytes"),
    ({"kind": "direct", "user_id": "bob", "metadata": 1}, "bad_request",
     "metadata must be an object"),
]


@pytest.mark.parametrize("req, code, message", CREATE_ERRORS)
def test_create_errors(db, req, code, message):
    assert db.api("conversation_create", "alice", req) == err(code, message)
    assert db.q("SELECT * FROM chat.conversations") == []
    assert db.q("SELECT * FROM chat.members") == []


# ---------------------------------------------------------------------------
# conversation.get and conversation.list

def test_conversation_get(db):
    cid = db.group("alice", "bob", title="T")
    m = db.send("bob", cid, "yo")
    r = db.api("conversation_get", "alice", {"conversation_id": cid})
    assert r == ok({"conversation": C(
        cid, "group", [("alice", "owner"), ("bob", "member")], title="T",
        last_message=m, last_seq=1, unread=1)})
    # bob's own message is not unread for him
    r = db.api("conversation_get", "bob", {"conversation_id": cid})
    assert r["ok"]["conversation"]["unread_count"] == 0
    for user, req in [("carol", {"conversation_id": cid}),
                      ("alice", {"conversation_id": 999})]:
        assert db.api("conversation_get", user, req) == \
            err("not_found", "conversation not found")
    assert db.api("conversation_get", "alice", {}) == \
        err("bad_request", "conversation_id is missing")


def test_list_order_and_paging(db):
    ids = [db.group("alice", "bob", title="c%d" % i) for i in range(5)]
    db.group("bob", title="not alice's")
    # activity: the newest first; sending moves a conversation up
    db.send("bob", ids[1], "up")
    r = db.api("conversation_list", "alice", {})
    order = [c["id"] for c in r["ok"]["conversations"]]
    assert order == [ids[1], ids[4], ids[3], ids[2], ids[0]]
    assert r["ok"]["next"] is None
    assert r["events"] == []
    first = r["ok"]["conversations"][0]
    assert first["last_message"]["body"] == "up"
    assert first["unread_count"] == 1

    pages, req = [], {"limit": 2}
    while True:
        r = db.api("conversation_list", "alice", req)
        pages.append([c["id"] for c in r["ok"]["conversations"]])
        if r["ok"]["next"] is None:
            break
        assert re.match(r"^\d+:\d+$", r["ok"]["next"])
        req = {"limit": 2, "before": r["ok"]["next"]}
    assert pages == [order[0:2], order[2:4], order[4:5]]


def test_list_ties_same_activity(db):
    """Conversations created in one transaction share last_activity: the
    id breaks the tie and paging neither skips nor repeats."""
    with db.conn.transaction():
        for i in range(7):
            db.group("alice", title="t%d" % i)
    seen, req = [], {"limit": 3}
    while True:
        r = db.api("conversation_list", "alice", req)["ok"]
        seen += [c["id"] for c in r["conversations"]]
        if r["next"] is None:
            break
        req["before"] = r["next"]
    assert seen == [7, 6, 5, 4, 3, 2, 1]


def test_list_archived(db):
    a = db.group("alice", title="a")
    b = db.group("alice", title="b")
    db.q("UPDATE chat.members SET archived = true, muted = true "
         "WHERE conversation_id = %s", a)
    r = db.api("conversation_list", "alice", {"archived": True})["ok"]
    assert [(c["id"], c["archived"], c["muted"])
            for c in r["conversations"]] == [(a, True, True)]
    r = db.api("conversation_list", "alice", {"archived": False})["ok"]
    assert [c["id"] for c in r["conversations"]] == [b]
    r = db.api("conversation_list", "alice", {"archived": None})["ok"]
    assert [c["id"] for c in r["conversations"]] == [b]
    assert db.api("conversation_list", "nobody", {}) == \
        ok({"conversations": [], "next": None})


@pytest.mark.parametrize("req, message", [
    ({"limit": 0}, "limit must be an integer from 1 to 100"),
    ({"limit": 101}, "limit must be an integer from 1 to 100"),
    ({"limit": "5"}, "limit must be an integer from 1 to 100"),
    ({"limit": 1.5}, "limit must be an integer from 1 to 100"),
    ({"limit": 1e30}, "limit must be an integer from 1 to 100"),
    ({"archived": "yes"}, "archived must be a boolean"),
    ({"archived": 1}, "archived must be a boolean"),
    ({"before": 5}, "before is not a valid cursor"),
    ({"before": "abc"}, "before is not a valid cursor"),
    ({"before": "1:2:3"}, "before is not a valid cursor"),
    ({"before": "-1:2"}, "before is not a valid cursor"),
    ({"before": "1:99999999999999999999"}, "before is not a valid cursor"),
    ({"before": "99999999999999999:1"}, "before is not a valid cursor"),
    ({"before": "1:9223372036854775808"}, "before is not a valid cursor"),
    ({"before": ""}, "before is not a valid cursor"),
])
def test_list_errors(db, req, message):
    db.group("alice")
    assert db.api("conversation_list", "alice", req) == \
        err("bad_request", message)


def test_list_limit_bounds_accepted(db):
    db.group("alice")
    for limit in (1, 100, 1.0):
        r = db.api("conversation_list", "alice", {"limit": limit})
        assert len(r["ok"]["conversations"]) == 1


# ---------------------------------------------------------------------------
# messages.history

def test_history_paging(db):
    cid = db.group("alice", "bob")
    msgs = [db.send("alice" if i % 2 else "bob", cid, "b%d" % i)
            for i in range(1, 8)]

    def page(**req):
        r = db.api("messages_history", "bob",
                   dict(req, conversation_id=cid))
        assert r["events"] == []
        return [m["seq"] for m in r["ok"]["messages"]], r["ok"]["has_more"]

    assert page() == ([1, 2, 3, 4, 5, 6, 7], False)
    assert page(limit=3) == ([5, 6, 7], True)
    assert page(limit=3, before_seq=5) == ([2, 3, 4], True)
    assert page(limit=3, before_seq=2) == ([1], False)
    assert page(limit=3, before_seq=4) == ([1, 2, 3], False)
    assert page(limit=3, before_seq=0) == ([], False)
    assert page(limit=2, after_seq=4) == ([5, 6], True)
    assert page(limit=5, after_seq=5) == ([6, 7], False)
    assert page(limit=3, after_seq=4) == ([5, 6, 7], False)
    assert page(after_seq=7) == ([], False)
    assert page(after_seq=0, before_seq=None) == \
        ([1, 2, 3, 4, 5, 6, 7], False)
    r = db.api("messages_history", "bob", {"conversation_id": cid,
                                           "limit": 1})
    assert r == ok({"messages": [msgs[-1]], "has_more": True})
    assert msgs[-1] == M(7, cid, 7, "alice", "b7", msgs[-1]["client_msg_id"])


def test_history_default_limit(db):
    cid = db.group("alice")
    db.q("INSERT INTO chat.messages (conversation_id, seq, updated_seq, "
         "sender_id, body) SELECT %s, s, s, 'alice', 'x' "
         "FROM generate_series(1, 120) s", cid)
    r = db.api("messages_history", "alice", {"conversation_id": cid})["ok"]
    assert [m["seq"] for m in r["messages"]] == list(range(71, 121))
    assert r["has_more"] is True
    r = db.api("messages_history", "alice",
               {"conversation_id": cid, "limit": 100, "before_seq": 101})
    assert [m["seq"] for m in r["ok"]["messages"]] == list(range(1, 101))
    assert r["ok"]["has_more"] is False


@pytest.mark.parametrize("req, code, message", [
    ({}, "bad_request", "conversation_id is missing"),
    ({"conversation_id": "1"}, "bad_request",
     "conversation_id must be a positive integer"),
    ({"conversation_id": 0}, "bad_request",
     "conversation_id must be a positive integer"),
    ({"conversation_id": 1.5}, "bad_request",
     "conversation_id must be a positive integer"),
    ({"conversation_id": 1, "before_seq": 5, "after_seq": 1},
     "bad_request", "before_seq and after_seq are exclusive"),
    ({"conversation_id": 1, "before_seq": -1}, "bad_request",
     "before_seq must be an integer >= 0"),
    ({"conversation_id": 1, "before_seq": "5"}, "bad_request",
     "before_seq must be an integer >= 0"),
    ({"conversation_id": 1, "after_seq": True}, "bad_request",
     "after_seq must be an integer >= 0"),
    ({"conversation_id": 1, "limit": 101}, "bad_request",
     "limit must be an integer from 1 to 100"),
    ({"conversation_id": 1, "limit": 0}, "bad_request",
     "limit must be an integer from 1 to 100"),
    ({"conversation_id": 2}, "not_found", "conversation not found"),
    ({"conversation_id": 9223372036854775807}, "not_found",
     "conversation not found"),
])
def test_history_errors(db, req, code, message):
    db.group("alice")
    db.group("bob")
    assert db.api("messages_history", "alice", req) == err(code, message)


# ---------------------------------------------------------------------------
# message.send

def test_send(db):
    cid = db.group("alice", "bob", "carol")
    ups = [db.api("upload_create", "alice", dict(
        sha256="%064x" % i, size=10 + i, type=t, name=n, width=w,
        height=h))["ok"]["upload"]["id"]
        for i, (t, n, w, h) in enumerate([("image/png", "x.png", 40, 30),
                                          ("image/png", None, 4, 3),
                                          ("application/pdf", "d.pdf",
                                           None, None)])]
    att = [{"upload_id": ups[0], "thumbnail_id": ups[1]},
           {"upload_id": ups[2], "name": "ignored", "size": 1}]
    r = db.api("message_send", "alice",
               {"type": "message.send", "id": "c1", "conversation_id": cid,
                "body": "héllo", "client_msg_id": "k1",
                "attachments": att})
    m = M(1, cid, 1, "alice", "héllo", "k1", attachments=[
        {"upload_id": ups[0], "name": "x.png", "type": "image/png",
         "size": 10, "width": 40, "height": 30,
         "url": "/api/chat/files/%d" % ups[0],
         "thumbnail": {"upload_id": ups[1], "width": 4, "height": 3,
                       "url": "/api/chat/files/%d" % ups[1]}},
        {"upload_id": ups[2], "name": "d.pdf", "type": "application/pdf",
         "size": 12, "width": None, "height": None,
         "url": "/api/chat/files/%d" % ups[2], "thumbnail": None}])
    assert r == ok({"message": m}, [
        ev(["alice", "bob", "carol"],
           {"type": "message.created", "message": m})])
    assert db.q("SELECT id, conversation_id, seq, updated_seq, sender_id, "
                "body, client_msg_id, reply_to, kind, edited_at, "
                "deleted_at FROM chat.messages") == [
        (1, cid, 1, 1, "alice", "héllo", "k1", None, "user", None, None)]
    assert db.last_seq(cid) == 1
    assert db.q("SELECT message_id, upload_id, conversation_id "
                "FROM chat.message_uploads ORDER BY upload_id") == [
        (1, u, cid) for u in ups]
    created, activity = db.q(
        "SELECT m.created_at, c.last_activity FROM chat.messages m "
        "JOIN chat.conversations c ON c.id = m.conversation_id")[0]
    assert created == activity

    r = db.api("message_send", "bob",
               {"conversation_id": cid, "body": "re", "client_msg_id": "k1",
                "reply_to": 1, "attachments": None})
    assert r["ok"]["message"] == M(2, cid, 2, "bob", "re", "k1",
                                   reply_to=1)


def test_send_body_counts_characters(db):
    cid = db.group("alice")
    for body, good in [("é" * 10, True), ("😀" * 10, True),
                       ("é" * 11, False), ("x", True)]:
        r = db.batch([{"user": "alice", "max_length": 10,
                       "req": {"conversation_id": cid, "body": body,
                               "client_msg_id": body}}])[0]
        if good:
            assert r["ok"]["message"]["body"] == body
        else:
            assert r == err("too_large", "body is longer than 10 characters")


def test_send_max_length(db):
    cid = db.group("alice")
    req = {"conversation_id": cid, "body": "x" * 5001,
           "client_msg_id": "a"}
    assert db.api("message_send", "alice", req) == \
        err("too_large", "body is longer than 5000 characters")
    req["body"] = "x" * 5000
    assert "ok" in db.api("message_send", "alice", req)
    # the item's max_length wins over the request's
    r = db.batch([{"user": "alice", "max_length": 3,
                   "req": dict(req, body="xxxx", client_msg_id="b",
                               max_length=100)}])
    assert r == [err("too_large", "body is longer than 3 characters")]
    r = db.batch([{"user": "alice",
                   "req": dict(req, body="xxxx", client_msg_id="b",
                               max_length=3)}])
    assert r == [err("too_large", "body is longer than 3 characters")]
    for bad in (0, -1, "5", 1.5, 10 ** 7):
        r = db.batch([{"user": "alice", "max_length": bad,
                       "req": dict(req, client_msg_id="c")}])
        assert r == [err("bad_request",
                         "max_length must be an integer from 1 to 1000000")]


SEND_ERRORS = [
    ({"body": "x", "client_msg_id": "a"}, "bad_request",
     "conversation_id is missing"),
    ({"conversation_id": None, "body": "x", "client_msg_id": "a"},
     "bad_request", "conversation_id is missing"),
    ({"conversation_id": "1", "body": "x", "client_msg_id": "a"},
     "bad_request", "conversation_id must be a positive integer"),
    ({"conversation_id": -1, "body": "x", "client_msg_id": "a"},
     "bad_request", "conversation_id must be a positive integer"),
    ({"conversation_id": 1.5, "body": "x", "client_msg_id": "a"},
     "bad_request", "conversation_id must be a positive integer"),
    ({"conversation_id": [1], "body": "x", "client_msg_id": "a"},
     "bad_request", "conversation_id must be a positive integer"),
    ({"conversation_id": 1e20, "body": "x", "client_msg_id": "a"},
     "bad_request", "conversation_id must be a positive integer"),
    ({"conversation_id": 1, "client_msg_id": "a"}, "bad_request",
     "body is missing"),
    ({"conversation_id": 1, "body": 5, "client_msg_id": "a"},
     "bad_request", "body must be a string"),
    ({"conversation_id": 1, "body": ["x"], "client_msg_id": "a"},
     "bad_request", "body must be a string"),
    ({"conversation_id": 1, "body": "", "client_msg_id": "a"},
     "bad_request", "body must not be empty"),
    ({"conversation_id": 1, "body": "x"}, "bad_request",
     "client_msg_id is missing"),
    ({"conversation_id": 1, "body": "x", "client_msg_id": ""},
     "bad_request", "client_msg_id must be a non-empty string"),
    ({"conversation_id": 1, "body": "x", "client_msg_id": 5},
     "bad_request", "client_msg_id must be a non-empty string"),
    ({"conversation_id": 1, "body": "x", "client_msg_id": "k" * 65},
     "too_large", "client_msg_id is longer than 64 characters"),
    ({"conversation_id": 1, "body": "x", "client_msg_id": "a",
      "attachments": {}}, "bad_request", "attachments must be an array"),
    ({"conversation_id": 1, "body": "x", "client_msg_id": "a",
      "attachments": [{"url": "/a"}] * 11}, "too_large",
     "attachments has more than 10 items"),
    ({"conversation_id": 1, "body": "x", "client_msg_id": "a",
      "attachments": ["/a"]}, "bad_request",
     "attachments[0] must be an object"),
    ({"conversation_id": 1, "body": "x", "client_msg_id": "a",
      "attachments": [{"name": "a"}]}, "bad_request",
     "attachments[0] must have an upload_id"),
    ({"conversation_id": 1, "body": "x", "client_msg_id": "a",
      "attachments": [{"upload_id": 0}]}, "bad_request",
     "attachments[0].upload_id must be a positive integer"),
    ({"conversation_id": 1, "body": "x", "client_msg_id": "a",
      "attachments": [{"upload_id": 1, "thumbnail_id": "2"}]},
     "bad_request", "attachments[0].thumbnail_id must be a positive integer"),
    ({"conversation_id": 1, "body": "x", "client_msg_id": "a",
      "attachments": [{"upload_id": 1, "url": "https://x/"}]},
     "bad_request", "attachments[0] has both upload_id and url"),
    ({"conversation_id": 1, "body": "x", "client_msg_id": "a",
      "attachments": [{"upload_id": 5}]}, "not_found",
     "attachments[0]: upload not found"),
    # links: never through the JSON API (only nginx passes hosts)
    ({"conversation_id": 1, "body": "x", "client_msg_id": "a",
      "attachments": [{"url": 5}]}, "bad_request",
     "attachments[0].url: links are not accepted, attach an upload "
     "(upload_id)"),
    ({"conversation_id": 1, "body": "x", "client_msg_id": "a",
      "attachments": [{"url": "https://cdn/x.png"}]}, "bad_request",
     "attachments[0].url: links are not accepted, attach an upload "
     "(upload_id)"),
    ({"conversation_id": 1, "body": "x", "client_msg_id": "a",
      "reply_to": "1"}, "bad_request", "reply_to must be a message id"),
    ({"conversation_id": 1, "body": "x", "client_msg_id": "a",
      "reply_to": 0}, "bad_request", "reply_to must be a message id"),
    ({"conversation_id": 1, "body": "x", "client_msg_id": "a",
      "reply_to": 999}, "bad_request",
     "reply_to is not a message of this conversation"),
    # message 1 is in conversation 2
    ({"conversation_id": 1, "body": "x", "client_msg_id": "a",
      "reply_to": 1}, "bad_request",
     "reply_to is not a message of this conversation"),
    ({"conversation_id": 2, "body": "x", "client_msg_id": "a"},
     "not_found", "conversation not found"),
    ({"conversation_id": 3, "body": "x", "client_msg_id": "a"},
     "not_found", "conversation not found"),
    ("[1]", "bad_request", "request must be a JSON object"),
]


# chat.check_attachments with hosts, as nginx's send passes them
LINK_ERRORS = [
    ([{"url": 5}], "bad_request",
     "attachments[0].url must be a non-empty string"),
    ([{"url": ""}], "bad_request",
     "attachments[0].url must be a non-empty string"),
    ([{"url": "https://x.example/" + "a" * 2040}], "too_large",
     "attachments[0].url is longer than 2048 characters"),
    ([{"url": "https://x.example/"}, {"url": "javascript:alert(1)"}],
     "bad_request", "attachments[1].url must be https:// on a host of "
     "chat_attachment_hosts"),
    ([{"url": "/a"}], "bad_request", "attachments[0].url must be https:// "
     "on a host of chat_attachment_hosts"),
    ([{"url": "//x.example/a"}], "bad_request", "attachments[0].url must "
     "be https:// on a host of chat_attachment_hosts"),
    ([{"url": "http://x.example/a"}], "bad_request", "attachments[0].url "
     "must be https:// on a host of chat_attachment_hosts"),
    ([{"url": "https://y.example/a"}], "bad_request", "attachments[0].url "
     "must be https:// on a host of chat_attachment_hosts"),
    ([{"url": "https://x.example@y.example/a"}], "bad_request",
     "attachments[0].url must be https:// on a host of "
     "chat_attachment_hosts"),
    ([{"url": "https://x.example:1/a"}], "bad_request",
     "attachments[0].url must be https:// on a host of "
     "chat_attachment_hosts"),
    ([{"url": "https://\u212a.example/a"}], "bad_request",
     "attachments[0].url must be https:// on a host of "
     "chat_attachment_hosts"),
    ([{"url": "https://x.example/", "name": 5}], "bad_request",
     "attachments[0].name must be a string"),
    ([{"url": "https://x.example/", "name": "n" * 256}], "too_large",
     "attachments[0].name is longer than 255 characters"),
    ([{"url": "https://x.example/", "mime": {}}], "bad_request",
     "attachments[0].mime must be a string"),
    ([{"url": "https://x.example/", "mime": "m" * 256}], "too_large",
     "attachments[0].mime is longer than 255 characters"),
    ([{"url": "https://x.example/", "size": -1}], "bad_request",
     "attachments[0].size must be an integer >= 0"),
    ([{"url": "https://x.example/", "size": "3"}], "bad_request",
     "attachments[0].size must be an integer >= 0"),
    ([{"url": "https://x.example/", "size": 2.5}], "bad_request",
     "attachments[0].size must be an integer >= 0"),
]


@pytest.mark.parametrize("att, code, message", LINK_ERRORS)
def test_link_errors(db, att, code, message):
    assert db.one("SELECT chat.check_attachments(%s::jsonb, "
                  "ARRAY['x.example', 'k.example'])",
                  json.dumps(att)) == err(code, message)


def test_links_to_listed_hosts(db):
    att = [{"url": "HTTPS://X.example/a?b#c", "size": 3.0},
           {"url": "https://k.example"},
           {"upload_id": 4.0, "thumbnail_id": None}]
    assert db.one("SELECT chat.check_attachments(%s::jsonb, "
                  "ARRAY['x.example', 'k.example'])",
                  json.dumps(att)) == [
        {"url": att[0]["url"], "name": None, "mime": None, "size": 3},
        {"url": att[1]["url"], "name": None, "mime": None, "size": None},
        {"upload_id": 4, "thumbnail_id": None}]


@pytest.mark.parametrize("req, code, message", SEND_ERRORS)
def test_send_errors(db, req, code, message):
    db.group("alice")                       # 1
    other = db.group("bob")                 # 2, alice is not in it
    db.send("bob", other, "secret")         # message 1, seq 1 in 2
    assert db.api("message_send", "alice", req) == err(code, message)
    assert db.one("SELECT count(*) FROM chat.messages") == 1
    assert db.last_seq(1) == 0 and db.last_seq(other) == 1


def test_batch(db):
    a = db.group("alice", "bob")
    b = db.direct("alice", "carol")
    items = [
        {"user": "alice", "req": {"conversation_id": a, "body": "1",
                                  "client_msg_id": "x"}},
        {"user": "bob", "req": {"conversation_id": a, "body": "2",
                                "client_msg_id": "x"}},
        {"user": "alice", "req": {"conversation_id": a, "body": "again",
                                  "client_msg_id": "x"}},
        {"user": "carol", "req": {"conversation_id": b, "body": "3",
                                  "client_msg_id": "x"}},
        {"user": "carol", "req": {"conversation_id": a, "body": "4",
                                  "client_msg_id": "y"}},
        "junk",
        {"user": 5, "req": {}},
        {"user": "alice", "req": "x"},
        {"user": "", "req": {}},
    ]
    r = db.batch(items)
    m1 = M(1, a, 1, "alice", "1", "x")
    m2 = M(2, a, 2, "bob", "2", "x")
    m3 = M(3, b, 1, "carol", "3", "x")
    assert r == [
        ok({"message": m1}, [ev(["alice", "bob"],
                                {"type": "message.created", "message": m1})]),
        ok({"message": m2}, [ev(["alice", "bob"],
                                {"type": "message.created", "message": m2})]),
        ok({"message": m1}),
        ok({"message": m3}, [ev(["alice", "carol"],
                                {"type": "message.created", "message": m3})]),
        err("not_found", "conversation not found"),
        err("bad_request", 'an item must be {"user", "req"}'),
        err("bad_request", 'an item must be {"user", "req"}'),
        err("bad_request", "request must be a JSON object"),
        err("bad_request", "user id is invalid"),
    ]
    assert r[2]["ok"] == r[0]["ok"]
    assert db.q("SELECT conversation_id, seq, sender_id, body "
                "FROM chat.messages ORDER BY id") == [
        (a, 1, "alice", "1"), (a, 2, "bob", "2"), (b, 1, "carol", "3")]
    assert db.batch([]) == []
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.batch({"user": "alice"})


def test_idempotent_across_batches(db):
    cid = db.group("alice", "bob")
    req = {"conversation_id": cid, "body": "hi", "client_msg_id": "k"}
    first = db.api("message_send", "alice", req)
    assert len(first["events"]) == 1
    again = db.batch([{"user": "alice", "req": req}] * 2)
    assert again == [ok(first["ok"])] * 2
    # another body with the same id is still the retry of the first
    r = db.api("message_send", "alice", dict(req, body="changed"))
    assert r == ok(first["ok"])
    # another sender may use the same client_msg_id
    assert db.send("bob", cid, "mine", "k")["seq"] == 2
    assert db.one("SELECT count(*) FROM chat.messages") == 2
    assert db.last_seq(cid) == 2
    # a retry after an edit answers the message as it is now
    db.api("message_edit", "alice", {"message_id": 1, "body": "edited"})
    r = db.api("message_send", "alice", req)
    assert r["events"] == [] and r["ok"]["message"]["body"] == "edited"
    assert db.last_seq(cid) == 3


def test_send_blocked_direct(db):
    cid = db.direct("alice", "bob")
    g = db.group("alice", "bob")
    before = db.send("alice", cid, "before", "before")
    assert db.api("block", "bob", {"user_id": "alice"})["ok"] == {}
    assert db.api("block", "bob", {"user_id": "alice"})["ok"] == {}
    assert db.q("SELECT blocker_id, blocked_id FROM chat.blocks") == \
        [("bob", "alice")]
    for user in ("alice", "bob"):
        r = db.api("message_send", user, {"conversation_id": cid,
                                          "body": "x",
                                          "client_msg_id": "z" + user})
        assert r == err("forbidden", "blocked")
    assert db.last_seq(cid) == 1
    # a retry of what was stored before the block answers that message
    assert db.api("message_send", "alice",
                  {"conversation_id": cid, "body": "before",
                   "client_msg_id": "before"}) == ok({"message": before})
    # groups are not affected
    db.send("alice", g, "in the group")
    assert db.api("unblock", "bob", {"user_id": "alice"}) == ok({})
    assert db.q("SELECT * FROM chat.blocks") == []
    assert db.send("alice", cid, "after")["seq"] == 2


def test_block_errors(db):
    for fn in ("block", "unblock"):
        assert db.api(fn, "alice", {}) == \
            err("bad_request", "user_id is missing")
        assert db.api(fn, "alice", {"user_id": 1}) == \
            err("bad_request", "user_id must be a user id")
    assert db.api("block", "alice", {"user_id": "alice"}) == \
        err("bad_request", "cannot block yourself")


def test_seq_has_no_gaps_under_concurrency(db):
    cid = db.group("alice", *["u%d" % i for i in range(8)])
    errors = []

    def sender(i):
        try:
            with db.pg.connect() as c:
                for j in range(25):
                    r = c.execute(
                        "SELECT chat.api_message_send(%s, %s::jsonb)",
                        ("u%d" % i, json.dumps(
                            {"conversation_id": cid, "body": "x",
                             "client_msg_id": "k%d" % (j % 20)}))) \
                        .fetchone()[0]
                    assert "ok" in r, r
        except Exception as e:      # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # 25 sends each, 5 of them retries: 160 messages
    seqs = [r[0] for r in db.q("SELECT seq FROM chat.messages "
                               "WHERE conversation_id = %s ORDER BY seq",
                               cid)]
    assert seqs == list(range(1, 161))
    assert db.last_seq(cid) == 160
    assert db.one("SELECT count(*) FROM chat.messages "
                  "WHERE seq <> updated_seq") == 0


def test_concurrent_batches_do_not_deadlock(db):
    """Batches naming two conversations in opposite orders: the batch locks
    them in id order first, so none waits for another in a cycle."""
    a = db.group("alice", "bob")
    b = db.group("alice", "bob")
    errors = []

    def worker(i):
        try:
            with db.pg.connect() as c:
                for j in range(15):
                    pair = (a, b) if (i + j) % 2 else (b, a)
                    items = [{"user": "alice",
                              "req": {"conversation_id": x, "body": "x",
                                      "client_msg_id": "%d-%d-%d" % (i, j, x)}}
                             for x in pair]
                    with c.transaction():
                        r = db.batch(items, conn=c)
                        # hold the locks a little while
                        c.execute("SELECT pg_sleep(0.002)")
                    assert all("ok" in x for x in r), r
        except Exception as e:      # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for cid in (a, b):
        assert [r[0] for r in db.q(
            "SELECT seq FROM chat.messages WHERE conversation_id = %s "
            "ORDER BY seq", cid)] == list(range(1, 91))


# ---------------------------------------------------------------------------
# message.edit and message.delete

def test_edit(db):
    cid = db.group("alice", "bob")
    m = db.send("alice", cid, "one", "k1")
    db.send("bob", cid, "two")
    r = db.api("message_edit", "alice", {"message_id": m["id"],
                                         "body": "uno"})
    e = M(1, cid, 1, "alice", "uno", "k1", updated_seq=3, edited=True)
    assert r == ok({"message": e}, [
        ev(["alice", "bob"], {"type": "message.updated", "message": e})])
    assert db.q("SELECT body, seq, updated_seq, edited_at IS NOT NULL "
                "FROM chat.messages WHERE id = 1") == [("uno", 1, 3, True)]
    assert db.last_seq(cid) == 3
    # the list order does not change on an edit
    assert r["ok"]["message"]["created_at"] == m["created_at"]


@pytest.mark.parametrize("user, req, code, message", [
    ("alice", {"body": "x"}, "bad_request", "message_id is missing"),
    ("alice", {"message_id": "1", "body": "x"}, "bad_request",
     "message_id must be a positive integer"),
    ("alice", {"message_id": 1}, "bad_request", "body is missing"),
    ("alice", {"message_id": 1, "body": ""}, "bad_request",
     "body must not be empty"),
    ("alice", {"message_id": 1, "body": False}, "bad_request",
     "body must be a string"),
    ("alice", {"message_id": 1, "body": "x" * 5001}, "too_large",
     "body is longer than 5000 characters"),
    ("alice", {"message_id": 1, "body": "xyz", "max_length": 2},
     "too_large", "body is longer than 2 characters"),
    ("alice", {"message_id": 1, "body": "x", "max_length": "2"},
     "bad_request", "max_length must be an integer from 1 to 1000000"),
    ("bob", {"message_id": 1, "body": "x"}, "forbidden",
     "only the sender can edit a message"),
    ("carol", {"message_id": 1, "body": "x"}, "not_found",
     "message not found"),
    ("alice", {"message_id": 99, "body": "x"}, "not_found",
     "message not found"),
    ("alice", {"message_id": 2, "body": "x"}, "conflict",
     "the message is deleted"),
])
def test_edit_errors(db, user, req, code, message):
    cid = db.group("alice", "bob")
    db.send("alice", cid, "one")
    db.send("alice", cid, "two")
    db.api("message_delete", "alice", {"message_id": 2})
    before = db.q("SELECT * FROM chat.messages ORDER BY id")
    assert db.api("message_edit", user, req) == err(code, message)
    assert db.q("SELECT * FROM chat.messages ORDER BY id") == before
    assert db.last_seq(cid) == 3


def test_delete(db):
    cid = db.group("alice", "bob")
    up = db.api("upload_create", "bob", {"sha256": "a" * 64, "size": 1,
                                         "type": "text/plain"})
    att = [{"upload_id": up["ok"]["upload"]["id"]}]
    db.send("bob", cid, "secret", "k", attachments=att, reply_to=None)
    assert db.one("SELECT count(*) FROM chat.message_uploads") == 1
    r = db.api("message_delete", "bob", {"message_id": 1})
    d = M(1, cid, 1, "bob", None, "k", updated_seq=2, deleted=True)
    assert r == ok({"message": d}, [
        ev(["alice", "bob"], {"type": "message.deleted", "message": d})])
    # gone from storage too, and its files no longer attached
    assert db.q("SELECT body, attachments, updated_seq, "
                "deleted_at IS NOT NULL FROM chat.messages") == \
        [(None, [], 2, True)]
    assert db.one("SELECT count(*) FROM chat.message_uploads") == 0
    # twice: the same answer, no event, no new number
    assert db.api("message_delete", "bob", {"message_id": 1}) == \
        ok({"message": d})
    assert db.last_seq(cid) == 2
    # and never in any answer
    h = db.api("messages_history", "alice", {"conversation_id": cid})
    assert h["ok"]["messages"] == [d]
    conv = db.api("conversation_get", "alice", {"conversation_id": cid})
    assert conv["ok"]["conversation"]["last_message"] == d
    assert conv["ok"]["conversation"]["unread_count"] == 0


def test_delete_by_group_owner_and_admin(db):
    cid = db.group("alice", "bob", "carol", "dave")
    db.q("UPDATE chat.members SET role = 'admin' WHERE user_id = 'carol'")
    for i in range(3):
        db.send("bob", cid, "m%d" % i)
    assert db.api("message_delete", "dave", {"message_id": 1}) == \
        err("forbidden",
            "only the sender or a group owner or admin can delete a message")
    assert db.api("message_delete", "alice",
                  {"message_id": 1})["ok"]["message"]["deleted"] is True
    assert db.api("message_delete", "carol",
                  {"message_id": 2})["ok"]["message"]["deleted"] is True
    # a direct conversation has no moderators
    d = db.direct("alice", "bob")
    m = db.send("bob", d, "x")
    assert db.api("message_delete", "alice", {"message_id": m["id"]}) == \
        err("forbidden",
            "only the sender or a group owner or admin can delete a message")


@pytest.mark.parametrize("user, req, code, message", [
    ("alice", {}, "bad_request", "message_id is missing"),
    ("alice", {"message_id": -5}, "bad_request",
     "message_id must be a positive integer"),
    ("alice", {"message_id": {"id": 1}}, "bad_request",
     "message_id must be a positive integer"),
    ("carol", {"message_id": 1}, "not_found", "message not found"),
    ("alice", {"message_id": 2}, "not_found", "message not found"),
])
def test_delete_errors(db, user, req, code, message):
    cid = db.group("alice", "bob")
    db.send("alice", cid, "x")
    assert db.api("message_delete", user, req) == err(code, message)
    assert db.one("SELECT deleted_at FROM chat.messages") is None


# ---------------------------------------------------------------------------
# message.read, message.delivered, unread counts

def test_read_and_unread(db):
    cid = db.group("alice", "bob", "carol")
    db.send("alice", cid, "1")              # 1
    db.send("bob", cid, "2")                # 2
    db.send("bob", cid, "3")                # 3
    db.send("carol", cid, "4")              # 4
    db.api("message_delete", "bob", {"message_id": 3})     # seq 5

    def unread(user):
        return db.api("conversation_get", user, {"conversation_id": cid}) \
            ["ok"]["conversation"]["unread_count"]

    # others' messages, not deleted: alice 2 and 4, bob 1 and 4
    assert (unread("alice"), unread("bob"), unread("carol")) == (2, 2, 2)
    r = db.api("message_read", "alice", {"conversation_id": cid, "seq": 2})
    assert r == ok({"last_read_seq": 2, "unread_count": 1}, [
        ev(["alice", "bob", "carol"],
           {"type": "receipt", "conversation_id": cid, "user_id": "alice",
            "kind": "read", "seq": 2})])
    # backwards: no change, no event
    r = db.api("message_read", "alice", {"conversation_id": cid, "seq": 1})
    assert r == ok({"last_read_seq": 2, "unread_count": 1})
    # past the end: clamped to last_seq
    r = db.api("message_read", "alice", {"conversation_id": cid,
                                         "seq": 10 ** 12})
    assert r["ok"] == {"last_read_seq": 5, "unread_count": 0}
    assert r["events"][0]["event"]["seq"] == 5
    r = db.api("message_read", "alice", {"conversation_id": cid, "seq": 5})
    assert r == ok({"last_read_seq": 5, "unread_count": 0})
    assert db.q("SELECT user_id, last_read_seq, last_delivered_seq "
                "FROM chat.members ORDER BY user_id") == [
        ("alice", 5, 0), ("bob", 0, 0), ("carol", 0, 0)]
    members = db.api("conversation_get", "bob", {"conversation_id": cid}) \
        ["ok"]["conversation"]["members"]
    assert members[0] == {"user_id": "alice", "role": "owner",
                          "last_read_seq": 5, "last_delivered_seq": 0}


def test_delivered(db):
    cid = db.direct("alice", "bob")
    db.send("alice", cid)
    db.send("alice", cid)
    r = db.api("message_delivered", "bob", {"conversation_id": cid,
                                            "seq": 2})
    assert r == ok({}, [ev(["alice", "bob"],
                           {"type": "receipt", "conversation_id": cid,
                            "user_id": "bob", "kind": "delivered",
                            "seq": 2})])
    assert db.api("message_delivered", "bob",
                  {"conversation_id": cid, "seq": 2}) == ok({})
    assert db.api("message_delivered", "bob",
                  {"conversation_id": cid, "seq": 9}) == ok({})
    assert db.q("SELECT last_read_seq, last_delivered_seq FROM chat.members "
                "WHERE user_id = 'bob'") == [(0, 2)]


@pytest.mark.parametrize("fn", ["message_read", "message_delivered"])
@pytest.mark.parametrize("user, req, code, message", [
    ("alice", {"seq": 1}, "bad_request", "conversation_id is missing"),
    ("alice", {"conversation_id": 1}, "bad_request", "seq is missing"),
    ("alice", {"conversation_id": 1, "seq": -1}, "bad_request",
     "seq must be an integer >= 0"),
    ("alice", {"conversation_id": 1, "seq": "1"}, "bad_request",
     "seq must be an integer >= 0"),
    ("alice", {"conversation_id": 1, "seq": 0.5}, "bad_request",
     "seq must be an integer >= 0"),
    ("carol", {"conversation_id": 1, "seq": 1}, "not_found",
     "conversation not found"),
    ("alice", {"conversation_id": 7, "seq": 1}, "not_found",
     "conversation not found"),
])
def test_mark_errors(db, fn, user, req, code, message):
    db.group("alice", "bob")
    assert db.api(fn, user, req) == err(code, message)
    assert db.q("SELECT last_read_seq, last_delivered_seq "
                "FROM chat.members") == [(0, 0), (0, 0)]


# ---------------------------------------------------------------------------
# typing

def test_typing(db):
    cid = db.group("alice", "bob", "carol")
    r = db.api("typing", "bob", {"conversation_id": cid, "active": True})
    assert r == ok({}, [ev(["alice", "carol"],
                           {"type": "typing", "conversation_id": cid,
                            "user_id": "bob", "active": True})])
    alone = db.group("dave")
    assert db.api("typing", "dave", {"conversation_id": alone,
                                     "active": False}) == ok({})
    assert db.api("typing", "dave", {"conversation_id": cid,
                                     "active": True}) == \
        err("not_found", "conversation not found")
    assert db.api("typing", "bob", {"conversation_id": cid}) == \
        err("bad_request", "active is missing")
    assert db.api("typing", "bob", {"conversation_id": cid,
                                    "active": 1}) == \
        err("bad_request", "active must be a boolean")
    d = db.direct("alice", "bob")
    db.api("block", "alice", {"user_id": "bob"})
    assert db.api("typing", "bob", {"conversation_id": d,
                                    "active": True}) == \
        err("forbidden", "blocked")


# ---------------------------------------------------------------------------
# sync

def test_sync_replay_rules(db):
    a = db.group("alice", "bob")
    b = db.group("alice", "bob")
    other = db.group("carol")
    for i in range(1, 6):
        db.send("bob", a, "a%d" % i, "a%d" % i)          # seq 1..5
    db.send("bob", b, "b1", "b1")                         # b: seq 1
    db.send("carol", other, "hidden")
    # the client has seen a up to 3, and nothing of b
    db.api("message_edit", "bob", {"message_id": 2, "body": "a2!"})  # 6
    db.api("message_delete", "bob", {"message_id": 3})                # 7
    db.send("bob", a, "a8", "a8")                                     # 8
    db.api("message_edit", "bob", {"message_id": 8, "body": "a8!"})  # 9
    db.api("message_delete", "bob", {"message_id": 1})                # 10
    db.api("message_edit", "bob", {"message_id": 4, "body": "a4!"})  # 11

    r = db.api("sync", "alice", {"conversations": {str(a): 3,
                                                   str(other): 0,
                                                   "999": 5}})
    to = ["alice"]
    # by conversation, then updated_seq; seq > cursor replays as created,
    # in the state the message is in now
    assert r == ok({"complete": True,
                    "cursors": {str(a): 11, str(b): 1}}, [
        ev(to, {"type": "message.created", "message":
                M(5, a, 5, "bob", "a5", "a5")}),
        ev(to, {"type": "message.updated", "message":
                M(2, a, 2, "bob", "a2!", "a2", updated_seq=6, edited=True)}),
        ev(to, {"type": "message.deleted", "message":
                M(3, a, 3, "bob", None, "a3", updated_seq=7,
                  deleted=True)}),
        ev(to, {"type": "message.created", "message":
                M(8, a, 8, "bob", "a8!", "a8", updated_seq=9,
                  edited=True)}),
        ev(to, {"type": "message.deleted", "message":
                M(1, a, 1, "bob", None, "a1", updated_seq=10,
                  deleted=True)}),
        ev(to, {"type": "message.created", "message":
                M(4, a, 4, "bob", "a4!", "a4", updated_seq=11,
                  edited=True)}),
        # b was omitted: from 0
        ev(to, {"type": "message.created", "message":
                M(6, b, 1, "bob", "b1", "b1")}),
    ])

    # up to date: nothing, same cursors
    r = db.api("sync", "alice", {"conversations": {str(a): 11, str(b): 1}})
    assert r == ok({"complete": True, "cursors": {str(a): 11, str(b): 1}})
    # a cursor beyond the end is kept as it is
    r = db.api("sync", "alice", {"conversations": {str(a): 50, str(b): 1}})
    assert r == ok({"complete": True, "cursors": {str(a): 50, str(b): 1}})


def test_sync_limit_and_continue(db):
    a = db.group("alice", "bob")
    b = db.group("alice", "bob")
    for i in range(5):
        db.send("bob", a, "x")
    for i in range(2):
        db.send("bob", b, "y")
    r = db.api("sync", "alice", {"limit": 3})
    assert r["ok"] == {"complete": False, "cursors": {str(a): 3, str(b): 2}}
    assert [(e["event"]["message"]["conversation_id"],
             e["event"]["message"]["seq"]) for e in r["events"]] == \
        [(a, 1), (a, 2), (a, 3), (b, 1), (b, 2)]
    r = db.api("sync", "alice", {"limit": 3,
                                 "conversations": r["ok"]["cursors"]})
    assert r["ok"] == {"complete": True, "cursors": {str(a): 5, str(b): 2}}
    assert [e["event"]["message"]["seq"] for e in r["events"]] == [4, 5]
    # exactly limit changes: complete
    r = db.api("sync", "alice", {"limit": 5})
    assert r["ok"]["complete"] is True
    assert db.api("sync", "nobody", {}) == \
        ok({"complete": True, "cursors": {}})


def test_sync_total_budget(db):
    """At most 1000 events per call, whatever the per-conversation limit."""
    ids = [db.group("alice") for _ in range(3)]
    for cid in ids:
        db.q("INSERT INTO chat.messages (conversation_id, seq, updated_seq, "
             "sender_id, body) SELECT %s, s, s, 'bob', 'x' "
             "FROM generate_series(1, 400) s", cid)
        db.q("UPDATE chat.conversations SET last_seq = 400 WHERE id = %s",
             cid)
    r = db.api("sync", "alice", {"limit": 500})
    assert len(r["events"]) == 1000
    assert r["ok"] == {"complete": False, "cursors": {
        str(ids[0]): 400, str(ids[1]): 400, str(ids[2]): 200}}
    r = db.api("sync", "alice", {"limit": 500,
                                 "conversations": r["ok"]["cursors"]})
    assert len(r["events"]) == 200
    assert r["ok"]["complete"] is True


@pytest.mark.parametrize("req, message", [
    ({"conversations": []}, "conversations must be an object"),
    ({"conversations": "1:2"}, "conversations must be an object"),
    ({"conversations": {"abc": 1}},
     "conversations must map conversation ids to integers >= 0"),
    ({"conversations": {"0": 1}},
     "conversations must map conversation ids to integers >= 0"),
    ({"conversations": {"01": 1}},
     "conversations must map conversation ids to integers >= 0"),
    ({"conversations": {"1": -1}},
     "conversations must map conversation ids to integers >= 0"),
    ({"conversations": {"1": "3"}},
     "conversations must map conversation ids to integers >= 0"),
    ({"conversations": {"1": 2.5}},
     "conversations must map conversation ids to integers >= 0"),
    ({"conversations": {"1": None}},
     "conversations must map conversation ids to integers >= 0"),
    ({"conversations": {"99999999999999999999": 1}},
     "conversations must map conversation ids to integers >= 0"),
    ({"limit": 0}, "limit must be an integer from 1 to 500"),
    ({"limit": 501}, "limit must be an integer from 1 to 500"),
    ({"limit": "10"}, "limit must be an integer from 1 to 500"),
])
def test_sync_errors(db, req, message):
    db.group("alice")
    assert db.api("sync", "alice", req) == err("bad_request", message)


# ---------------------------------------------------------------------------
# access: another user's conversation looks exactly like a missing one

def test_idor(db):
    mine = db.group("alice")
    theirs = db.group("bob", "carol")
    m = db.send("bob", theirs, "private")
    missing_conv = theirs + 100
    missing_msg = m["id"] + 100
    calls = [
        ("conversation_get", {"conversation_id": "C"}),
        ("messages_history", {"conversation_id": "C"}),
        ("message_send", {"conversation_id": "C", "body": "x",
                          "client_msg_id": "k"}),
        ("message_read", {"conversation_id": "C", "seq": 1}),
        ("message_delivered", {"conversation_id": "C", "seq": 1}),
        ("typing", {"conversation_id": "C", "active": True}),
        ("message_edit", {"message_id": "M", "body": "x"}),
        ("message_delete", {"message_id": "M"}),
    ]
    for fn, req in calls:
        answers = []
        for cid, mid in ((theirs, m["id"]), (missing_conv, missing_msg)):
            r = {k: cid if v == "C" else mid if v == "M" else v
                 for k, v in req.items()}
            answers.append(db.api(fn, "alice", r))
        assert answers[0] == answers[1], fn
        assert answers[0]["error"]["code"] == "not_found", fn
    # sync and list ignore it
    r = db.api("sync", "alice", {"conversations": {str(theirs): 0}})
    assert r == ok({"complete": True, "cursors": {str(mine): 0}})
    r = db.api("conversation_list", "alice", {})
    assert [c["id"] for c in r["ok"]["conversations"]] == [mine]
    # nothing changed
    assert db.q("SELECT body, updated_seq FROM chat.messages") == \
        [("private", 1)]
    assert db.q("SELECT user_id, last_read_seq, last_delivered_seq "
                "FROM chat.members WHERE conversation_id = %s "
                "ORDER BY user_id", theirs) == [("bob", 0, 0), ("carol", 0, 0)]


# ---------------------------------------------------------------------------
# errors are returned, never raised: one transaction survives all of this

GARBAGE_REQS = [None, "null", "[]", '"x"', "1", "true", "{}",
                {"conversation_id": {}}, {"conversation_id": "1"},
                {"conversation_id": 1e300}, {"conversation_id": -1e300},
                {"conversation_id": 1, "seq": 1e300},
                {"conversation_id": 1, "body": None, "client_msg_id": None},
                {"message_id": 1.5, "body": 1},
                {"conversations": {"1": 1e300}}, {"conversations": [1]},
                {"before": "1:1", "limit": -1}, {"before": {}},
                {"before_seq": 1e300, "conversation_id": 1},
                {"kind": "group", "title": ["x"], "members": [[]]},
                {"kind": "group", "title": "x", "members": [None],
                 "metadata": None},
                {"kind": "direct", "user_id": {}},
                {"name": {}, "avatar": 1},
                {"conversation_id": 1, "body": "x", "client_msg_id": "x",
                 "attachments": [None, 1, "x"], "reply_to": -1}]
API_FUNCTIONS = ["user_upsert", "conversation_create", "conversation_get",
                 "conversation_list", "messages_history", "message_send",
                 "message_edit", "message_delete", "message_read",
                 "message_delivered", "typing", "sync", "block", "unblock"]


def test_errors_never_raise(db):
    db.group("alice", "bob")
    db.send("alice", 1)
    with db.conn.transaction():
        for fn in API_FUNCTIONS:
            for req in GARBAGE_REQS:
                for user in ("alice", "", None):
                    r = db.api(fn, user, req)
                    assert set(r) in ({"error"}, {"ok", "events"}), (fn, req)
                    if "error" in r:
                        assert set(r["error"]) == {"code", "message"}
                        assert r["error"]["code"] in (
                            "bad_request", "not_found", "forbidden",
                            "conflict", "too_large")
        r = db.batch([{"user": "alice", "req": req}
                      for req in GARBAGE_REQS if req is not None])
        assert all("error" in x for x in r)
        db.q("SELECT 1")        # the transaction is still usable


def test_dispatcher(db):
    cid = db.group("alice", "bob")

    def call(t, req):
        return db.one("SELECT chat.api(%s, %s, %s::jsonb)", "alice", t,
                      json.dumps(req))

    r = call("message.send", {"type": "message.send",
                              "conversation_id": cid, "body": "x",
                              "client_msg_id": "1"})
    assert r["ok"]["message"]["seq"] == 1
    assert call("messages.history", {"conversation_id": cid}) == \
        db.api("messages_history", "alice", {"conversation_id": cid})
    for t in ("conversation.create", "conversation.list", "message.edit",
              "message.delete", "message.read", "message.delivered",
              "typing", "sync"):
        assert set(call(t, {})) in ({"error"}, {"ok", "events"})
    for t in ("user.upsert", "block", "ping", "", None):
        assert call(t, {}) == err("bad_request", "unknown type")


# ---------------------------------------------------------------------------
# plans: the statements the functions run, caught with auto_explain

def test_plans_use_the_indexes(db):
    db.q("INSERT INTO chat.conversations (kind, title, created_by, "
         "last_seq) SELECT 'group', 'c' || g, 'alice', 300 "
         "FROM generate_series(1, 20) g")
    db.q("INSERT INTO chat.members (conversation_id, user_id, role) "
         "SELECT c, 'u' || u, 'member' FROM generate_series(1, 20) c, "
         "generate_series(1, 200) u")
    db.q("INSERT INTO chat.members (conversation_id, user_id, role) "
         "SELECT c, 'alice', 'owner' FROM generate_series(1, 20) c")
    db.q("INSERT INTO chat.messages (conversation_id, seq, updated_seq, "
         "sender_id, body, client_msg_id) "
         "SELECT c, s, s, CASE WHEN s % 2 = 0 THEN 'alice' ELSE 'u1' END, "
         "'m', 'k' || s "
         "FROM generate_series(1, 20) c, generate_series(1, 300) s")
    db.q("UPDATE chat.messages SET deleted_at = now(), body = NULL "
         "WHERE seq % 10 = 0")
    db.q("INSERT INTO chat.blocks (blocker_id, blocked_id) "
         "SELECT 'u' || a, 'u' || b FROM generate_series(1, 60) a, "
         "generate_series(1, 60) b WHERE a <> b")
    db.q("INSERT INTO chat.conversations (kind, direct_key, created_by) "
         "VALUES ('direct', chat.direct_key('alice', 'u7'), 'alice')")
    db.q("INSERT INTO chat.members (conversation_id, user_id) "
         "VALUES (21, 'alice'), (21, 'u7')")
    db.q("VACUUM ANALYZE chat.messages")
    db.q("VACUUM ANALYZE chat.members")
    db.q("VACUUM ANALYZE chat.blocks")
    db.q("VACUUM ANALYZE chat.conversations")

    plans = []
    with db.pg.connect() as c:
        c.add_notice_handler(lambda d: plans.append(d.message_primary))
        c.execute("LOAD 'auto_explain'")
        c.execute("SET auto_explain.log_min_duration = 0")
        c.execute("SET auto_explain.log_nested_statements = on")
        c.execute("SET client_min_messages = log")

        def call(fn, req):
            plans.clear()
            r = c.execute("SELECT chat.api_%s('alice', %%s::jsonb)" % fn,
                          (json.dumps(req),)).fetchone()[0]
            assert "ok" in r, r
            text = "\n".join(p for p in plans if p)
            assert "Seq Scan on messages" not in text
            return text

        def plan_of(text, needle):
            found = [p for p in text.split("duration:") if needle in p]
            assert found, needle
            return "\n".join(found)

        t = call("messages_history", {"conversation_id": 5,
                                      "before_seq": 200, "limit": 20})
        assert "Index Scan Backward using messages_conversation_seq_key" \
            in plan_of(t, "ORDER BY m.seq DESC")
        t = call("messages_history", {"conversation_id": 5,
                                      "after_seq": 100, "limit": 20})
        assert "Index Scan using messages_conversation_seq_key" \
            in plan_of(t, "m.seq > v_after")

        t = call("sync", {"conversations": {str(i): 290
                                            for i in range(1, 21)}})
        assert "Index Scan using messages_sync_idx" \
            in plan_of(t, "updated_seq > v_from")
        assert re.search(r"Index (Only )?Scan using members_user_idx",
                         plan_of(t, "WHERE user_id = p_user ORDER BY"))

        t = call("message_read", {"conversation_id": 5, "seq": 150})
        assert "Index Only Scan using messages_unread_idx" \
            in plan_of(t, "sender_id <> p_user")

        t = call("conversation_list", {"limit": 5})
        p = plan_of(t, "FROM chat.members mb")
        assert re.search(r"(Index (Only )?Scan using|Bitmap Index Scan on) "
                         r"members_user_idx", p), p

        t = call("message_send", {"conversation_id": 21, "body": "x",
                                  "client_msg_id": "new"})
        p = plan_of(t, "FROM chat.blocks b")
        # both directions are one index probe each (both conditions are
        # equalities: either index serves): the sender's block peers, read
        # once for the check of a direct conversation and the recipients
        assert len(re.findall(r"Index (Only )?Scan using "
                              r"blocks_(pkey|blocked_idx)", p)) == 2, p
        assert "Seq Scan on blocks" not in p
        t = call("message_send", {"conversation_id": 5, "body": "x",
                                  "client_msg_id": "new"})
        p = plan_of(t, "old.client_msg_id = u.cmid")
        assert "Index Scan using messages_idempotency_key" in p, p


# ---------------------------------------------------------------------------
# 0006: unread totals, the blocked list, archive and mute, contacts

def test_unread_totals(db):
    a = db.direct("alice", "bob")
    g = db.group("bob", "alice", "carol")
    m = db.group("carol", "alice")
    assert db.api("unread", "alice", {}) == \
        ok({"total": 0, "conversations": {}})
    db.send("bob", a)
    db.send("bob", a)
    db.send("alice", a)                     # one's own: not unread
    db.send("carol", g)
    db.send("carol", m)
    db.send("carol", m)
    deleted = db.send("carol", m)
    db.api("message_delete", "carol", {"message_id": deleted["id"]})
    assert db.api("unread", "alice", {}) == ok(
        {"total": 5, "conversations": {str(a): 2, str(g): 1, str(m): 2}})
    # muted and archived conversations count apart, not in the total
    db.api("member_flag", "alice", {"conversation_id": m, "flag": "muted",
                                    "value": True})
    db.api("member_flag", "alice", {"conversation_id": g,
                                    "flag": "archived", "value": True})
    assert db.api("unread", "alice", {}) == ok(
        {"total": 2, "conversations": {str(a): 2, str(g): 1, str(m): 2}})
    db.api("message_read", "alice", {"conversation_id": a, "seq": 3})
    assert db.api("unread", "alice", {})["ok"]["conversations"] == \
        {str(g): 1, str(m): 2}
    # somebody else's view is theirs
    assert db.api("unread", "bob", {}) == \
        ok({"total": 2, "conversations": {str(a): 1, str(g): 1}})
    assert db.api("unread", "", {}) == err("bad_request",
                                           "user id is invalid")
    assert db.api("unread", "alice", "[]") == \
        err("bad_request", "request must be a JSON object")


def test_blocks_list(db):
    assert db.api("blocks", "alice", {}) == ok({"blocks": []})
    db.api("user_upsert", "bob", {"name": "Bob", "avatar": "https://a/b"})
    db.api("block", "alice", {"user_id": "carol"})
    db.q("UPDATE chat.blocks SET created_at = created_at - interval '1 h'")
    db.api("block", "alice", {"user_id": "bob"})
    db.api("block", "bob", {"user_id": "alice"})
    assert db.api("blocks", "alice", {}) == ok({"blocks": [
        {"id": "bob", "name": "Bob", "avatar": "https://a/b"},
        {"id": "carol", "name": "carol"}]})
    db.api("unblock", "alice", {"user_id": "bob"})
    assert db.api("blocks", "alice", {}) == \
        ok({"blocks": [{"id": "carol", "name": "carol"}]})


def test_member_flags(db):
    cid = db.direct("alice", "bob")
    r = db.api("member_flag", "alice", {"conversation_id": cid,
                                        "flag": "archived", "value": True})
    conv = r["ok"]["conversation"]
    assert conv["archived"] is True and conv["muted"] is False
    # only the user's own connections hear it
    assert r["events"] == [ev(["alice"], {"type": "conversation.updated",
                                          "conversation": conv})]
    r = db.api("member_flag", "alice", {"conversation_id": cid,
                                        "flag": "muted", "value": True})
    assert r["ok"]["conversation"]["muted"] is True
    assert r["ok"]["conversation"]["archived"] is True
    assert db.q("SELECT user_id, archived, muted FROM chat.members "
                "ORDER BY user_id") == [("alice", True, True),
                                        ("bob", False, False)]
    # archived conversations leave the default list
    assert db.api("conversation_list", "alice", {})["ok"][
        "conversations"] == []
    db.api("member_flag", "alice", {"conversation_id": cid,
                                    "flag": "archived", "value": False})
    assert len(db.api("conversation_list", "alice", {})["ok"][
        "conversations"]) == 1
    other = db.group("carol")
    for req, e in [
        ({"flag": "muted", "value": True},
         err("bad_request", "conversation_id is missing")),
        ({"conversation_id": "1", "flag": "muted", "value": True},
         err("bad_request", "conversation_id must be a positive integer")),
        ({"conversation_id": cid, "value": True},
         err("bad_request", 'flag must be "archived" or "muted"')),
        ({"conversation_id": cid, "flag": "pinned", "value": True},
         err("bad_request", 'flag must be "archived" or "muted"')),
        ({"conversation_id": cid, "flag": "muted"},
         err("bad_request", "value is missing")),
        ({"conversation_id": cid, "flag": "muted", "value": 1},
         err("bad_request", "value must be a boolean")),
        ({"conversation_id": other, "flag": "muted", "value": True},
         err("not_found", "conversation not found")),
        ({"conversation_id": 999, "flag": "muted", "value": True},
         err("not_found", "conversation not found")),
    ]:
        assert db.api("member_flag", "alice", req) == e, req
    assert db.q("SELECT muted FROM chat.members WHERE user_id = 'carol'") \
        == [(False,)]


def test_contacts(db):
    assert db.api("contacts", "alice", {}) == ok({"contacts": []})
    db.api("user_upsert", "bob", {"name": "Zed Bob"})
    db.api("user_upsert", "carol", {"name": "Anna Carol"})
    db.direct("alice", "bob")
    db.group("dave", "alice", "carol")
    assert db.api("contact_add", "alice", {"user_id": "carol"}) == ok({})
    assert db.api("contact_add", "alice", {"user_id": "erin"}) == ok({})
    assert db.api("contact_add", "alice", {"user_id": "erin"}) == ok({})

    def row(uid, name, explicit, shared):
        return {"user": {"id": uid, "name": name}, "explicit": explicit,
                "shared": shared}

    # by name, case-blind; explicit, shared, or both
    assert db.api("contacts", "alice", {}) == ok({"contacts": [
        row("carol", "Anna Carol", True, True),
        row("dave", "dave", False, True),
        row("erin", "erin", True, False),
        row("bob", "Zed Bob", False, True)]})
    # blocks hide contacts both ways
    db.api("block", "alice", {"user_id": "erin"})
    db.api("block", "dave", {"user_id": "alice"})
    assert [c["user"]["id"] for c in db.api("contacts", "alice", {})[
        "ok"]["contacts"]] == ["carol", "bob"]
    # the former contact's watchers of alice check again (the module's)
    assert db.api("contact_remove", "alice", {"user_id": "carol"}) == ok({}, [
        {"to": ["carol"], "event": {"type": "presence.recheck",
                                    "user_id": "alice"}}])
    assert db.api("contact_remove", "alice", {"user_id": "nobody"}) == \
        ok({})
    assert db.api("contacts", "alice", {})["ok"]["contacts"][0] == \
        row("carol", "Anna Carol", False, True)
    for fn in ("contact_add", "contact_remove"):
        assert db.api(fn, "alice", {}) == \
            err("bad_request", "user_id is missing")
        assert db.api(fn, "alice", {"user_id": 5}) == \
            err("bad_request", "user_id must be a user id")
        assert db.api(fn, "alice", {"user_id": ""}) == \
            err("bad_request", "user_id must be a user id")
    assert db.api("contact_add", "alice", {"user_id": "alice"}) == \
        err("bad_request", "cannot add yourself")
    assert db.q("SELECT owner_id, contact_id FROM chat.contacts") == \
        [("alice", "erin")]


# ---------------------------------------------------------------------------
# 0007: group administration

def roles(db, cid):
    return db.q("SELECT user_id, role FROM chat.members "
                "WHERE conversation_id = %s ORDER BY user_id", cid)


def test_group_rename_and_metadata(db):
    g = db.group("alice", "bob", "carol")
    db.api("member_add", "alice", {"conversation_id": g, "user_id": "bob",
                                   "role": "admin"})
    r = db.api("conversation_update", "bob",
               {"conversation_id": g, "title": "new", "metadata": {"x": 1}})
    conv = r["ok"]["conversation"]
    assert (conv["title"], conv["metadata"]) == ("new", {"x": 1})
    assert r["events"] == [ev(["alice", "bob", "carol"],
                              {"type": "conversation.updated",
                               "conversation": shared(conv)})]
    # one of them alone keeps the other
    r = db.api("conversation_update", "alice",
               {"conversation_id": g, "title": "newer"})
    assert (r["ok"]["conversation"]["title"],
            r["ok"]["conversation"]["metadata"]) == ("newer", {"x": 1})
    d = db.direct("alice", "dave")
    other = db.group("erin")
    for user, req, e in [
        ("carol", {"conversation_id": g, "title": "x"},
         err("forbidden", "only an owner or admin may do this")),
        ("alice", {"conversation_id": g},
         err("bad_request", "nothing to change: title, metadata")),
        ("alice", {"conversation_id": g, "title": ""},
         err("bad_request", "title must be a non-empty string")),
        ("alice", {"conversation_id": g, "title": 5},
         err("bad_request", "title must be a non-empty string")),
        ("alice", {"conversation_id": g, "title": "t" * 201},
         err("too_large", "title is longer than 200 characters")),
        ("alice", {"conversation_id": g, "metadata": []},
         err("bad_request", "metadata must be an object")),
        ("alice", {"conversation_id": g, "metadata": {"k": "v" * 17000}},
         err("too_large", "metadata is larger than 16384 bytes")),
        ("alice", {"conversation_id": d, "title": "x"},
         err("bad_request", "not a group")),
        ("alice", {"conversation_id": other, "title": "x"},
         err("not_found", "conversation not found")),
        ("alice", {"conversation_id": 999, "title": "x"},
         err("not_found", "conversation not found")),
        ("alice", {"title": "x"},
         err("bad_request", "conversation_id is missing")),
    ]:
        assert db.api("conversation_update", user, req) == e, req
    assert db.one("SELECT title FROM chat.conversations WHERE id = %s",
                  g) == "newer"


def test_group_members_added_and_roles(db):
    g = db.group("alice", "bob")
    r = db.api("member_add", "alice", {"conversation_id": g,
                                       "user_id": "carol"})
    assert r["events"] == [ev(["alice", "bob", "carol"],
                              {"type": "member.joined", "conversation_id": g,
                               "user_id": "carol", "role": "member"})]
    assert [m["user_id"] for m in r["ok"]["conversation"]["members"]] == \
        ["alice", "bob", "carol"]
    # again: nothing changes, nobody hears
    r = db.api("member_add", "alice", {"conversation_id": g,
                                       "user_id": "carol", "role": "member"})
    assert r["events"] == []
    # members do not add; admins add members only; owners grant roles
    assert db.api("member_add", "bob", {"conversation_id": g,
                                        "user_id": "dave"}) == \
        err("forbidden", "only an owner or admin may do this")
    r = db.api("member_add", "alice", {"conversation_id": g,
                                       "user_id": "bob", "role": "admin"})
    assert r["events"][0]["event"]["type"] == "conversation.updated"
    assert db.api("member_add", "bob", {"conversation_id": g,
                                        "user_id": "dave"})["events"][0][
        "event"]["type"] == "member.joined"
    assert db.api("member_add", "bob", {"conversation_id": g,
                                        "user_id": "erin",
                                        "role": "admin"}) == \
        err("forbidden", "only an owner may grant this role")
    assert db.api("member_add", "bob", {"conversation_id": g,
                                        "user_id": "carol",
                                        "role": "member"})["events"] == []
    db.api("member_add", "alice", {"conversation_id": g,
                                   "user_id": "carol", "role": "admin"})
    assert db.api("member_add", "bob", {"conversation_id": g,
                                        "user_id": "carol",
                                        "role": "member"}) == \
        err("forbidden", "only an owner may change a role")
    # the last owner cannot step down; with a second owner it can
    assert db.api("member_add", "alice", {"conversation_id": g,
                                          "user_id": "alice",
                                          "role": "admin"}) == \
        err("conflict", "a group needs an owner: make another member owner "
                        "first")
    db.api("member_add", "alice", {"conversation_id": g, "user_id": "bob",
                                   "role": "owner"})
    assert "ok" in db.api("member_add", "alice", {"conversation_id": g,
                                                  "user_id": "alice",
                                                  "role": "member"})
    assert roles(db, g) == [("alice", "member"), ("bob", "owner"),
                            ("carol", "admin"), ("dave", "member")]
    d = db.direct("bob", "erin")
    for req, e in [
        ({"conversation_id": g, "user_id": "x", "role": "boss"},
         err("bad_request", 'role must be "member", "admin" or "owner"')),
        ({"conversation_id": g, "user_id": "x", "role": 1},
         err("bad_request", 'role must be "member", "admin" or "owner"')),
        ({"conversation_id": g, "user_id": ""},
         err("bad_request", "user_id must be a user id")),
        ({"conversation_id": g},
         err("bad_request", "user_id is missing")),
        ({"conversation_id": d, "user_id": "x"},
         err("bad_request", "not a group")),
        ({"conversation_id": 999, "user_id": "x"},
         err("not_found", "conversation not found")),
    ]:
        assert db.api("member_add", "bob", req) == e, req


def test_group_members_removed_and_leaving(db):
    g = db.group("alice", "bob", "carol", "dave")
    db.api("member_add", "alice", {"conversation_id": g, "user_id": "bob",
                                   "role": "admin"})
    db.api("member_add", "alice", {"conversation_id": g, "user_id": "carol",
                                   "role": "admin"})
    assert db.api("member_remove", "dave", {"conversation_id": g,
                                            "user_id": "carol"}) == \
        err("forbidden", "only an owner or admin may do this")
    assert db.api("member_remove", "bob", {"conversation_id": g,
                                           "user_id": "carol"}) == \
        err("forbidden", "only an owner may remove an owner or admin")
    r = db.api("member_remove", "bob", {"conversation_id": g,
                                        "user_id": "dave"})
    # the removed user hears it too
    assert r == ok({}, [ev(["alice", "bob", "carol", "dave"],
                           {"type": "member.left", "conversation_id": g,
                            "user_id": "dave", "role": "member"})])
    assert db.api("member_remove", "bob", {"conversation_id": g,
                                           "user_id": "dave"}) == \
        err("not_found", "member not found")
    # gone: no more access
    assert db.api("member_remove", "dave", {"conversation_id": g,
                                            "user_id": "dave"}) == \
        err("not_found", "conversation not found")
    assert db.api("member_remove", "alice", {"conversation_id": g,
                                             "user_id": "carol"})["ok"] == {}
    # the last owner stays while others do
    assert db.api("member_remove", "alice", {"conversation_id": g,
                                             "user_id": "alice"}) == \
        err("conflict", "a group needs an owner: make another member owner "
                        "first")
    assert "ok" in db.api("member_remove", "bob", {"conversation_id": g,
                                                   "user_id": "bob"})
    assert roles(db, g) == [("alice", "owner")]
    # alone, the owner may leave
    assert "ok" in db.api("member_remove", "alice", {"conversation_id": g,
                                                     "user_id": "alice"})
    assert roles(db, g) == []
    d = db.direct("alice", "erin")
    assert db.api("member_remove", "alice", {"conversation_id": d,
                                             "user_id": "alice"}) == \
        err("bad_request", "not a group")


# ---------------------------------------------------------------------------
# 0008: search

def test_message_search(db):
    a = db.group("alice", "bob", title="a")
    b = db.direct("alice", "carol")
    secret = db.group("dave", "erin")
    m1 = db.send("bob", a, "the quick brown fox")
    m2 = db.send("alice", a, "fox fox fox, all foxes")
    m3 = db.send("carol", b, "a brown dog and a fox")
    db.send("dave", secret, "fox in a place alice cannot see")
    gone = db.send("bob", a, "a deleted fox")
    db.api("message_delete", "bob", {"message_id": gone["id"]})
    edited = db.send("bob", a, "nothing here")
    db.api("message_edit", "bob", {"message_id": edited["id"],
                                   "body": "now a fox"})

    r = db.api("messages_search", "alice", {"q": "fox"})["ok"]
    ids = [x["message"]["id"] for x in r["results"]]
    # best first (three foxes), never deleted, never elsewhere
    assert ids[0] == m2["id"]
    assert sorted(ids) == sorted([m1["id"], m2["id"], m3["id"],
                                  edited["id"]])
    assert r["has_more"] is False
    first = r["results"][0]
    assert first["message"]["body"] == "fox fox fox, all foxes"
    assert "«fox»" in first["snippet"]
    assert first["rank"] > r["results"][-1]["rank"]

    # websearch syntax: phrases, exclusion, or
    q = lambda s, **kw: [x["message"]["id"] for x in db.api(  # noqa: E731
        "messages_search", "alice", dict(q=s, **kw))["ok"]["results"]]
    assert q('"brown fox"') == [m1["id"]]
    assert sorted(q("fox -brown")) == sorted([m2["id"], edited["id"]])
    assert sorted(q("dog or quick")) == sorted([m1["id"], m3["id"]])
    assert q("FOX", conversation_id=b) == [m3["id"]]
    assert q("fox", conversation_id=secret) == []
    assert q("deleted") == []
    assert q("!!!") == []
    # paging
    page = db.api("messages_search", "alice", {"q": "fox", "limit": 2})
    assert len(page["ok"]["results"]) == 2 and page["ok"]["has_more"]
    rest = db.api("messages_search", "alice",
                  {"q": "fox", "limit": 2, "offset": 2})["ok"]
    assert rest["has_more"] is False
    assert [x["message"]["id"] for x in page["ok"]["results"]
            + rest["results"]] == ids

    for req, e in [
        ({}, err("bad_request", "q is missing")),
        ({"q": ""}, err("bad_request", "q must be a non-empty string")),
        ({"q": "  "}, err("bad_request", "q must be a non-empty string")),
        ({"q": 5}, err("bad_request", "q must be a non-empty string")),
        ({"q": "x" * 201}, err("too_large", "q is longer than 200 characters")),
        ({"q": "x", "limit": 0},
         err("bad_request", "limit must be an integer from 1 to 50")),
        ({"q": "x", "limit": 51},
         err("bad_request", "limit must be an integer from 1 to 50")),
        ({"q": "x", "limit": "5"},
         err("bad_request", "limit must be an integer from 1 to 50")),
        ({"q": "x", "offset": -1},
         err("bad_request", "offset must be an integer from 0 to 1000")),
        ({"q": "x", "offset": 1001},
         err("bad_request", "offset must be an integer from 0 to 1000")),
        ({"q": "x", "offset": "1"},
         err("bad_request", "offset must be an integer from 0 to 1000")),
        ({"q": "x", "conversation_id": "1"},
         err("bad_request", "conversation_id must be a positive integer")),
    ]:
        assert db.api("messages_search", "alice", req) == e, req


def test_message_search_uses_its_index(db):
    cid = db.group("alice")
    db.q("INSERT INTO chat.messages (conversation_id, seq, updated_seq, "
         "sender_id, body, client_msg_id) SELECT %s, s, s, 'alice', "
         "'word' || s || ' filler text', 'k' || s "
         "FROM generate_series(1, 5000) s", cid)
    db.q("VACUUM ANALYZE chat.messages")
    plans = []
    with db.pg.connect() as c:
        c.add_notice_handler(lambda d: plans.append(d.message_primary))
        c.execute("LOAD 'auto_explain'")
        c.execute("SET auto_explain.log_min_duration = 0")
        c.execute("SET auto_explain.log_nested_statements = on")
        c.execute("SET client_min_messages = log")
        r = c.execute("SELECT chat.api_messages_search('alice', %s::jsonb)",
                      (json.dumps({"q": "word77"}),)).fetchone()[0]
    assert [x["message"]["body"] for x in r["ok"]["results"]] == \
        ["word77 filler text"]
    text = "\n".join(p for p in plans if p and "ts_rank" in p)
    assert "messages_search_idx" in text, text


def test_user_search(db):
    for uid, name in [("bob", "Bob Builder"), ("bobby", "Robert"),
                      ("carol", "Carol Bobson"), ("dave", "Dave"),
                      ("erin", "100% Erin"), ("frank", "Frank_1")]:
        db.api("user_upsert", uid, {"name": name})
    db.api("user_upsert", "alice", {"name": "Alice Bobbins"})

    def ids(q, user="alice", **kw):
        # the whole directory (chat_user_directory open): the matching rules
        kw.setdefault("directory", "open")
        r = db.api("users_search", user, dict(q=q, **kw))
        return [u["id"] for u in r["ok"]["users"]]

    # prefixes of names and ids first, then names holding it; not oneself
    assert ids("bob") == ["bob", "bobby", "carol"]
    assert ids("BOB") == ids("bob")
    assert ids("rob") == ["bobby"]
    assert ids(" dave ") == ["dave"]
    # LIKE's wildcards are plain characters here
    assert ids("%") == ["erin"]
    assert ids("100%") == ["erin"]
    assert ids("1%") == []
    assert ids("frank_") == ["frank"]
    assert ids("_") == ["frank"]
    # blocks hide users both ways
    db.api("block", "alice", {"user_id": "bobby"})
    db.api("block", "carol", {"user_id": "alice"})
    assert ids("bob") == ["bob"]
    assert ids("bob", user="dave") == ["bob", "bobby", "alice", "carol"]
    assert len(ids("o", user="dave", limit=2)) == 2
    assert db.api("users_search", "alice",
                  {"q": "bob", "directory": "open"})["ok"]["users"][0] \
        == {"id": "bob", "name": "Bob Builder"}
    for req, e in [
        ({}, err("bad_request", "q is missing")),
        ({"q": " "}, err("bad_request", "q must be a non-empty string")),
        ({"q": ["x"]}, err("bad_request", "q must be a non-empty string")),
        ({"q": "x" * 129},
         err("too_large", "q is longer than 128 characters")),
        ({"q": "x", "limit": 100},
         err("bad_request", "limit must be an integer from 1 to 50")),
    ]:
        assert db.api("users_search", "alice", req) == e, req


# ---------------------------------------------------------------------------
# 0009: system messages

def test_system_message(db):
    cid = db.group("alice", "bob")
    db.send("alice", cid, "hello")
    r = db.api("system_message", "svc:shop",
               {"conversation_id": cid, "body": "Order 7 shipped"})
    m = M(2, cid, 2, "svc:shop", "Order 7 shipped", None)
    m["system"] = True
    assert r == ok({"message": m}, [ev(["alice", "bob"],
                                       {"type": "message.created",
                                        "message": m})])
    assert db.q("SELECT kind FROM chat.messages ORDER BY id") == \
        [("user",), ("system",)]
    # members see it in history and sync like any message
    hist = db.api("messages_history", "alice", {"conversation_id": cid})
    assert hist["ok"]["messages"][-1] == m
    assert "system" not in hist["ok"]["messages"][0]
    # a client_msg_id makes it idempotent
    r1 = db.api("system_message", "svc:shop",
                {"conversation_id": cid, "body": "once",
                 "client_msg_id": "o-1"})
    r2 = db.api("system_message", "svc:shop",
                {"conversation_id": cid, "body": "once",
                 "client_msg_id": "o-1"})
    assert r2 == ok(r1["ok"]) and r2["events"] == []
    assert db.last_seq(cid) == 3
    for req, e in [
        ({"body": "x"}, err("bad_request", "conversation_id is missing")),
        ({"conversation_id": 999, "body": "x"},
         err("not_found", "conversation not found")),
        ({"conversation_id": cid}, err("bad_request", "body is missing")),
        ({"conversation_id": cid, "body": ""},
         err("bad_request", "body must not be empty")),
        ({"conversation_id": cid, "body": "xxxx", "max_length": 3},
         err("too_large", "body is longer than 3 characters")),
        ({"conversation_id": cid, "body": "x", "client_msg_id": 5},
         err("bad_request", "client_msg_id must be a non-empty string")),
        ({"conversation_id": cid, "body": "x", "client_msg_id": "k" * 65},
         err("too_large", "client_msg_id is longer than 64 characters")),
    ]:
        assert db.api("system_message", "svc:shop", req) == e, req
    assert db.last_seq(cid) == 3


# ---------------------------------------------------------------------------
# issue 13 (security review): blocks in groups, presence audience, limits,
# the user directory, owners' messages, attachment URLs, deletes in sync

def _events(r, type_=None):
    return [e for e in r["events"]
            if type_ is None or e["event"]["type"] == type_]


def test_h1_no_group_with_someone_blocked_either_way(db):
    """H1: mallory, blocked by alice, cannot put alice into a group (nor
    can alice put mallory into one); others still can add either."""
    assert db.api("block", "alice", {"user_id": "mallory"})["ok"] == {}
    blocked = err("forbidden", "blocked")
    for actor, other in (("mallory", "alice"), ("alice", "mallory")):
        assert db.api("conversation_create", actor,
                      {"kind": "group", "title": "x",
                       "members": ["bob", other]}) == blocked
    assert db.one("SELECT count(*) FROM chat.conversations") == 0
    gid = db.group("mallory", "bob")
    assert db.api("member_add", "mallory",
                  {"conversation_id": gid, "user_id": "alice"}) == blocked
    own = db.group("alice", "bob")
    assert db.api("member_add", "alice",
                  {"conversation_id": own, "user_id": "mallory"}) == blocked
    # bob's group may hold both (their messages then stay apart)
    shared = db.group("bob", "alice", "mallory")
    assert db.q("SELECT user_id FROM chat.members WHERE conversation_id = %s"
                " ORDER BY 1", shared) == [("alice",), ("bob",),
                                           ("mallory",)]
    # the host's create_conversation acts as the creator: the same refusal
    with pytest.raises(Exception, match="blocked"):
        db.q("SELECT chat.create_conversation('mallory', 'group', "
             "ARRAY['alice'], 'x')")
    # unblocked: allowed again
    db.api("unblock", "alice", {"user_id": "mallory"})
    assert "ok" in db.api("member_add", "mallory",
                          {"conversation_id": gid, "user_id": "alice"})


def test_h1_blocked_users_do_not_hear_each_other_in_a_group(db):
    """H1: in a group both are in, nothing of mallory reaches alice (and
    nothing of alice reaches mallory): messages, edits, deletes, typing,
    receipts, sync, history, changes, unread and last_message."""
    gid = db.group("bob", "alice", "mallory")
    before = db.send("mallory", gid, "before the block")          # seq 1
    db.api("block", "alice", {"user_id": "mallory"})
    r = db.api("message_send", "mallory",
               {"conversation_id": gid, "body": "I found you anyway",
                "client_msg_id": "x1"})
    m = r["ok"]["message"]
    assert _events(r) == [ev(["bob", "mallory"],
                             {"type": "message.created", "message": m})]
    r = db.api("message_send", "alice",
               {"conversation_id": gid, "body": "hello bob",
                "client_msg_id": "a1"})
    assert _events(r)[0]["to"] == ["alice", "bob"]
    r = db.api("message_send", "bob",
               {"conversation_id": gid, "body": "hi all",
                "client_msg_id": "b1"})
    assert _events(r)[0]["to"] == ["alice", "bob", "mallory"]
    # a batch with several senders: each message its own audience
    out = db.batch([
        {"user": "mallory", "req": {"conversation_id": gid, "body": "b",
                                    "client_msg_id": "x2"}},
        {"user": "bob", "req": {"conversation_id": gid, "body": "c",
                                "client_msg_id": "b2"}}])
    assert [o["events"][0]["to"] for o in out] == \
        [["bob", "mallory"], ["alice", "bob", "mallory"]]
    r = db.api("message_edit", "mallory",
               {"message_id": m["id"], "body": "edited"})
    assert _events(r)[0]["to"] == ["bob", "mallory"]
    r = db.api("message_delete", "bob", {"message_id": out[0]["ok"]
                                         ["message"]["id"]})
    assert _events(r)[0]["to"] == ["bob", "mallory"]
    r = db.api("typing", "mallory", {"conversation_id": gid, "active": True})
    assert _events(r)[0]["to"] == ["bob"]
    r = db.api("typing", "alice", {"conversation_id": gid, "active": True})
    assert _events(r)[0]["to"] == ["bob"]
    r = db.api("message_read", "mallory", {"conversation_id": gid, "seq": 9})
    assert _events(r)[0]["to"] == ["bob", "mallory"]
    r = db.api("message_delivered", "alice",
               {"conversation_id": gid, "seq": 9})
    assert _events(r)[0]["to"] == ["alice", "bob"]

    # alice's views leave mallory out, before the block too
    senders = {"mallory"}
    hist = db.api("messages_history", "alice", {"conversation_id": gid})
    assert [x["sender_id"] for x in hist["ok"]["messages"]] == \
        ["alice", "bob", "bob"]
    assert before["id"] not in [x["id"] for x in hist["ok"]["messages"]]
    s = db.api("sync", "alice", {"conversations": {str(gid): 0}})
    assert not senders & {e["event"]["message"]["sender_id"]
                          for e in s["events"]}
    assert len(s["events"]) == 3
    ch = db.api("changes", "", {"conversation_id": gid, "after": 0,
                                "before": 100})
    for e in ch["events"]:
        sender = e["event"]["message"]["sender_id"]
        assert ("alice" in e["to"]) == (sender != "mallory"), e
        assert ("mallory" in e["to"]) == (sender != "alice"), e
    conv = db.api("conversation_get", "alice", {"conversation_id": gid})
    assert conv["ok"]["conversation"]["last_message"]["sender_id"] == "bob"
    unread = db.api("unread", "alice", {})["ok"]
    assert unread["conversations"] == {str(gid): 2}        # bob's two
    # mallory does not see alice's either
    hist = db.api("messages_history", "mallory", {"conversation_id": gid})
    assert "alice" not in [x["sender_id"] for x in hist["ok"]["messages"]]
    # bob sees everything
    hist = db.api("messages_history", "bob", {"conversation_id": gid})
    assert len(hist["ok"]["messages"]) == 6


def test_presence_partners_are_direct_and_never_blocked(db):
    """Issue 15: a connection's default watch set is its user's direct
    partners, most recently active first, at most 200, none blocked
    either way; a group's members are not read."""
    db.group("alice", "carol", "dave")
    bob = db.direct("alice", "bob")
    db.direct("alice", "mallory")
    db.direct("zed", "alice")
    db.api("block", "mallory", {"user_id": "alice"})
    db.send("alice", bob)              # the most recent activity
    # (with the user's name stored, in the same call)
    assert db.api("session_hello", "alice", {"name": "Alice"}) == ok(
        {"user_ids": ["bob", "zed"]})
    assert db.q("SELECT name FROM chat.users WHERE id = 'alice'") == \
        [("Alice",)]
    assert db.api("session_hello", "mallory", {}) == ok(
        {"user_ids": []})
    assert db.api("session_hello", "carol", {}) == ok({"user_ids": []})
    for i in range(205):
        db.direct("many", "p%03d" % i)
    got = db.api("session_hello", "many", {})["ok"]["user_ids"]
    assert len(got) == 200 and "p204" in got


def test_presence_events_have_no_audience_and_a_block_unwatches(db):
    """Issue 15: a presence change is not routed by PostgreSQL (to: null,
    the watchers of every worker); a block tells the module that the pair
    stops watching each other."""
    db.group("bob", "alice", "mallory")
    r = db.one("SELECT chat.presence_event('alice', "
               "'{\"online\": true, \"last_seen\": null}')")
    assert r == {"ok": {}, "events": [{"to": None, "event": {
        "type": "presence", "user_id": "alice", "online": True,
        "last_seen": None}}]}
    assert db.api("block", "alice", {"user_id": "mallory"}) == ok({}, [{
        "to": ["alice", "mallory"],
        "event": {"type": "presence.unwatch", "user_id": "alice",
                  "peer": "mallory"}}])


def test_presence_members_for_a_member_only(db):
    gid = db.group("alice", "bob", "carol")
    r = db.api("presence_members", "bob", {"conversation_id": gid})["ok"]
    assert r["members"] == 3
    assert sorted(r["user_ids"]) == ["alice", "bob", "carol"]
    # those blocked either way are not bob's to count
    db.api("block", "carol", {"user_id": "bob"})
    r = db.api("presence_members", "bob", {"conversation_id": gid})["ok"]
    assert r["members"] == 3 and sorted(r["user_ids"]) == ["alice", "bob"]
    assert db.api("presence_members", "zed", {"conversation_id": gid}) == \
        err("not_found", "conversation not found")
    assert db.api("presence_members", "bob",
                  {"conversation_id": "x"})["error"]["code"] == "bad_request"


def test_m1_presence_audience(db):
    """M1: the users whose presence a user may know: oneself, those one
    shares a conversation with, those who have one among their contacts;
    never blocked either way."""
    db.group("alice", "bob", "mallory")
    db.api("contact_add", "carol", {"user_id": "alice"})
    db.api("block", "mallory", {"user_id": "alice"})
    ids = ["alice", "bob", "carol", "mallory", "zed", "bob"]
    assert db.api("presence_audience", "alice", {"user_ids": ids}) == ok(
        {"audience": {"alice": True, "bob": True, "carol": True,
                      "mallory": False, "zed": False}})
    # adding someone as a contact is no way to watch them: carol added
    # alice, so alice may know carol's presence, not the other way round
    assert db.api("presence_audience", "carol", {"user_ids": ["alice"]}) \
        == ok({"audience": {"alice": False}})
    assert db.api("presence_audience", "zed", {"user_ids": []}) == \
        ok({"audience": {}})
    bad = err("bad_request", "user_ids must be an array of at most 200 "
                             "user ids")
    for req in ({}, {"user_ids": "bob"}, {"user_ids": [1]},
                {"user_ids": [""]}, {"user_ids": ["x"] * 201}):
        assert db.api("presence_audience", "alice", req) == bad, req


def test_l7_limits(db):
    """L7: group size, groups one is put into by others per hour, contacts
    and blocks are bounded (settings chat.max_*), error code limit."""
    db.q("SET chat.max_group_members = '3'")
    db.q("SET chat.max_group_joins_per_hour = '2'")
    db.q("SET chat.max_contacts = '2'")
    db.q("SET chat.max_blocks = '2'")
    assert db.api("conversation_create", "alice",
                  {"kind": "group", "title": "x",
                   "members": ["a", "b", "c"]}) == \
        err("limit", "a group has at most 3 members")
    gid = db.group("alice", "a", "b")
    assert db.api("member_add", "alice",
                  {"conversation_id": gid, "user_id": "c"}) == \
        err("limit", "a group has at most 3 members")
    with pytest.raises(Exception, match="at most 3 members"):
        db.q("SELECT chat.add_member(%s, 'c')", gid)
    # "v" is put into groups by others: two an hour
    db.group("x1", "v")
    db.group("x2", "v")
    limited = err("limit", "v was added to 2 groups in the last hour: "
                           "try again later")
    assert db.api("conversation_create", "x3",
                  {"kind": "group", "title": "x", "members": ["v"]}) \
        == limited
    g4 = db.group("x4")
    assert db.api("member_add", "x4",
                  {"conversation_id": g4, "user_id": "v"}) == limited
    db.group("v")                   # one's own groups do not count
    db.q("UPDATE chat.members SET joined_at = now() - interval '61 minutes'"
         " WHERE user_id = 'v'")
    assert "ok" in db.api("member_add", "x4",
                          {"conversation_id": g4, "user_id": "v"})
    for kind, n in (("contact_add", "contacts"), ("block", "blocked")):
        # (a block also returns its presence.unwatch event)
        assert db.api(kind, "alice", {"user_id": "p1"})["ok"] == {}
        assert db.api(kind, "alice", {"user_id": "p2"})["ok"] == {}
        assert db.api(kind, "alice", {"user_id": "p2"})["ok"] == {}  # again
        r = db.api(kind, "alice", {"user_id": "p3"})
        assert r["error"]["code"] == "limit", r
    # a nonsense setting is the default
    db.q("SET chat.max_group_members = 'lots'")
    assert "ok" in db.api("member_add", "alice",
                          {"conversation_id": gid, "user_id": "c"})


def test_i5_user_search_only_reaches_people_one_can_reach(db):
    """I5: without chat_user_directory open, users/search finds contacts,
    people one shares a conversation with, and an exact id only."""
    for uid in ("bob", "bobby", "bobo", "boris", "carol"):
        db.api("user_upsert", uid, {"name": uid.title()})
    db.group("alice", "bob")
    db.api("contact_add", "alice", {"user_id": "bobby"})

    def ids(q, **kw):
        r = db.api("users_search", "alice", dict(q=q, **kw))
        return [u["id"] for u in r["ok"]["users"]]

    assert ids("bo") == ["bob", "bobby"]
    assert ids("bobo") == ["bobo"]              # the exact id
    assert ids("Bobo") == []                    # ids are exact
    assert ids("b") == ["bob", "bobby"]
    assert ids("bo", directory="open") == ["bob", "bobby", "bobo", "boris"]
    assert ids("bo", directory="contacts") == ["bob", "bobby"]


def test_i8_admins_cannot_delete_owners_messages(db):
    """I8: an admin deletes members' messages, not an owner's; owners
    delete anyone's."""
    gid = db.group("owner", "admin", "member")
    db.api("member_add", "owner", {"conversation_id": gid,
                                   "user_id": "admin", "role": "admin"})
    mo = db.send("owner", gid, "from the owner")
    mm = db.send("member", gid, "from a member")
    ma = db.send("admin", gid, "from the admin")
    assert db.api("message_delete", "admin", {"message_id": mo["id"]}) == \
        err("forbidden", "only an owner can delete an owner's message")
    assert "ok" in db.api("message_delete", "admin",
                          {"message_id": mm["id"]})
    assert "ok" in db.api("message_delete", "owner",
                          {"message_id": ma["id"]})
    assert "ok" in db.api("message_delete", "owner",
                          {"message_id": mo["id"]})


@pytest.mark.parametrize("url, good", [
    ("//evil.example/x", False),
    ("/\\evil.example/x", False),
    ("http://example.com/a.png", False),
    ("HTTP://example.com/a.png", False),
    ("javascript:alert(1)", False),
    (" https://example.com/a.png", False),
    ("https://example.com/a.png", True),
    ("HTTPS://example.com/a.png", True),
    ("/files/a.png", False),
    ("/", False),
    ("https://example.com.evil/a.png", False),
])
def test_l9_attachment_urls(db, url, good):
    """L9: https:// to a host of chat_attachment_hosts (here example.com),
    as nginx passes them; no protocol-relative URLs, no paths (issue 16:
    files are uploads).  Through the JSON API, no link at all."""
    v = db.one("SELECT chat.check_attachments(%s::jsonb, "
               "ARRAY['example.com'])", json.dumps([{"url": url}]))
    if good:
        assert v[0]["url"] == url
    else:
        assert v == err("bad_request", "attachments[0].url must be https:// "
                                       "on a host of chat_attachment_hosts")
    gid = db.group("alice")
    r = db.api("message_send", "alice",
               {"conversation_id": gid, "body": "x", "client_msg_id": "a",
                "attachments": [{"url": url}]})
    assert r == err("bad_request", "attachments[0].url: links are not "
                    "accepted, attach an upload (upload_id)")


def test_sync_replays_a_deleted_message_as_deleted(db):
    """A message created and deleted after the cursor replays as its last
    change, message.deleted, in sync and in changes (the live path)."""
    gid = db.group("alice", "bob")
    m1 = db.send("alice", gid, "kept")                      # seq 1
    m2 = db.send("alice", gid, "oops")                      # seq 2
    db.api("message_delete", "alice", {"message_id": m2["id"]})   # 3
    m3 = db.send("alice", gid, "later")                     # seq 4
    db.api("message_delete", "alice", {"message_id": m1["id"]})   # 5
    s = db.api("sync", "bob", {"conversations": {str(gid): 0}})
    assert [(e["event"]["type"], e["event"]["message"]["id"])
            for e in s["events"]] == [("message.deleted", m2["id"]),
                                      ("message.created", m3["id"]),
                                      ("message.deleted", m1["id"])]
    s = db.api("sync", "bob", {"conversations": {str(gid): 1}})
    assert [e["event"]["type"] for e in s["events"]] == \
        ["message.deleted", "message.created", "message.deleted"]
    ch = db.api("changes", "", {"conversation_id": gid, "after": 1,
                                "before": 5})
    assert [(e["event"]["type"], e["event"]["message"]["updated_seq"])
            for e in ch["events"]] == [("message.deleted", 3),
                                       ("message.created", 4)]


def test_h1_read_marks_and_shared_events_across_a_block(db):
    """H1 (review of the fixes): a blocked peer's read marks read 0 in the
    blocker's Conversation objects, and a conversation.updated every
    member gets carries no last_message that could come from the other."""
    gid = db.group("bob", "alice", "mallory")
    db.send("mallory", gid, "from mallory")
    db.api("message_read", "mallory", {"conversation_id": gid, "seq": 1})
    db.api("block", "alice", {"user_id": "mallory"})
    conv = db.api("conversation_get", "alice",
                  {"conversation_id": gid})["ok"]["conversation"]
    marks = {m["user_id"]: m["last_read_seq"] for m in conv["members"]}
    assert marks == {"bob": 0, "alice": 0, "mallory": 0}
    assert conv["last_message"] is None
    # bob, who blocked nobody, sees mallory's mark
    conv = db.api("conversation_get", "bob",
                  {"conversation_id": gid})["ok"]["conversation"]
    assert {m["user_id"]: m["last_read_seq"]
            for m in conv["members"]}["mallory"] == 1
    r = db.api("conversation_update", "bob",
               {"conversation_id": gid, "title": "renamed"})
    shared_conv = r["events"][0]["event"]["conversation"]
    assert shared_conv["last_message"] is None
    assert not {"unread_count", "muted", "archived"} & set(shared_conv)
