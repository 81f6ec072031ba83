"""The send path's SQL entry point, chat.api_message_send_rows, called
directly by the runtime role with hostile arrays and with a batch of every
kind of item; and the Message object the worker makes from its columns,
byte for byte what clients got from chat.message_obj (through history)."""

import json
import time

import psycopg
import pytest

from chatlib import direct, send, unique

# links only to this host (issue 16: attachments are uploads)
CHAT_ENV = dict(http="chat_attachment_hosts e.example;")

COLS = ("ord, code, message, id, seq, body, attachments, reply_to, "
        "created_at, edited_at, deleted, updated_seq, system, recipients")


def lit(values):
    """An array literal as the module writes one (every element quoted)."""
    out = []
    for v in values:
        if v is None:
            out.append("NULL")
        else:
            if not isinstance(v, str):
                v = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
            out.append('"%s"' % v.replace("\\", "\\\\").replace('"', '\\"'))
    return "{" + ",".join(out) + "}"


def call(conn, users, cids, bodies, cmids, atts=None, replies=None,
         raw=False, hosts=None):
    """hosts: chat_attachment_hosts, as nginx passes them ($7)."""
    n = len(users)
    args = [users, cids, bodies, cmids,
            atts if atts is not None else [None] * n,
            replies if replies is not None else [None] * n]
    if not raw:
        args = [lit(a) for a in args]
    args.append(hosts)
    cur = conn.execute(
        "SELECT " + COLS + " FROM chat.api_message_send_rows("
        "%s::text[], %s::bigint[], %s::text[], %s::text[], %s::jsonb[], "
        "%s::bigint[], %s::text[])", args)
    return [dict(zip([c.strip() for c in COLS.split(",")], r))
            for r in cur.fetchall()]


@pytest.fixture
def db(postgres):
    postgres.reset()
    with psycopg.connect(postgres.dsn, autocommit=True) as runtime:
        yield postgres, runtime


def api(pg, name, user, req):
    return pg.query("SELECT chat.api_%s(%%s, %%s::jsonb)" % name,
                    (user, json.dumps(req)))[0][0]


def conv(pg, a, b):
    return api(pg, "conversation_create", a,
               {"kind": "direct", "user_id": b})["ok"]["conversation"]["id"]


def count(pg):
    return pg.query("SELECT count(*) FROM chat.messages")[0][0]


# --------------------------------------------------------------------------
# hostile arrays, as the runtime role

def test_arrays_of_different_shapes_are_refused_whole(db):
    pg, rt = db
    cid = conv(pg, "alice", "bob")
    bad_calls = [
        # lengths differ
        (["alice", "alice"], [cid], ["a", "b"], ["1", "2"]),
        (["alice"], [cid], ["a"], ["1"], [None, None]),
        (["alice"], [cid], ["a"], ["1"], None, [None, None]),
    ]
    for args in bad_calls:
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            call(rt, *args)
    # NULL arrays and arrays of two dimensions
    for sql_args in (
            ("NULL", "'{1}'", "'{a}'", "'{1}'", "'{NULL}'", "'{NULL}'"),
            ("'{alice}'", "NULL", "'{a}'", "'{1}'", "'{NULL}'", "'{NULL}'"),
            ("'{{alice},{bob}}'", "'{{1},{1}}'", "'{{a},{b}}'",
             "'{{1},{2}}'", "'{{NULL},{NULL}}'", "'{{NULL},{NULL}}'")):
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            rt.execute("SELECT * FROM chat.api_message_send_rows("
                       "%s::text[], %s::bigint[], %s::text[], %s::text[], "
                       "%s::jsonb[], %s::bigint[])" % sql_args)
    # more than 100,000 items
    n = 100001
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        rt.execute("SELECT * FROM chat.api_message_send_rows("
                   "array_fill('alice'::text, ARRAY[%s]), "
                   "array_fill(%s::bigint, ARRAY[%s]), "
                   "array_fill('x'::text, ARRAY[%s]), "
                   "array_fill('c'::text, ARRAY[%s]), "
                   "array_fill(NULL::jsonb, ARRAY[%s]), "
                   "array_fill(NULL::bigint, ARRAY[%s]))",
                   (n, cid, n, n, n, n, n))
    assert call(rt, [], [], [], []) == []
    assert count(pg) == 0
    assert pg.query("SELECT last_seq FROM chat.conversations") == [(0,)]


def test_bad_items_are_answered_and_store_nothing(db):
    pg, rt = db
    cid = conv(pg, "alice", "bob")
    other = conv(pg, "carol", "dave")
    items = [
        # user, cid, body, cmid, attachments, reply_to -> code
        (None, cid, "b", "1", None, None, "bad_request"),
        ("", cid, "b", "2", None, None, "bad_request"),
        ("a" * 129, cid, "b", "3", None, None, "bad_request"),
        ("ali\x01ce", cid, "b", "4", None, None, "bad_request"),
        ("alice", None, "b", "5", None, None, "bad_request"),
        ("alice", 0, "b", "6", None, None, "bad_request"),
        ("alice", -5, "b", "7", None, None, "bad_request"),
        ("alice", cid, None, "8", None, None, "bad_request"),
        ("alice", cid, "", "9", None, None, "bad_request"),
        ("alice", cid, "x" * 1000001, "10", None, None, "bad_request"),
        ("alice", cid, "b", None, None, None, "bad_request"),
        ("alice", cid, "b", "", None, None, "bad_request"),
        ("alice", cid, "b", "c" * 65, None, None, "bad_request"),
        ("alice", cid, "b", "14", None, 0, "bad_request"),
        ("alice", cid, "b", "15", {"url": "/a"}, None, "bad_request"),
        ("alice", cid, "b", "16", [{"url": "javascript:alert(1)",
                                    "name": None, "mime": None,
                                    "size": None}], None, "bad_request"),
        ("alice", cid, "b", "17", [{"url": "/a"}], None, "bad_request"),
        ("alice", cid, "b", "18", [{"url": "/a", "name": None,
                                    "mime": None, "size": -1}], None,
         "bad_request"),
        ("alice", cid, "b", "19", "[]", None, "bad_request"),
        ("alice", 9223372036854775807, "b", "20", None, None, "not_found"),
        ("alice", other, "b", "21", None, None, "not_found"),
        ("mallory", cid, "b", "22", None, None, "not_found"),
        ("alice", cid, "b", "23", None, 9223372036854775807,
         "bad_request"),
        ("alice", cid, "b", "24", [{"upload_id": 1, "thumbnail_id": None}],
         None, "not_found"),
        # upload items as check_attachments makes them, exactly
        ("alice", cid, "b", "25", [{"upload_id": 1}], None, "bad_request"),
        ("alice", cid, "b", "26", [{"upload_id": "1", "thumbnail_id": None}],
         None, "bad_request"),
        ("alice", cid, "b", "27", [{"upload_id": 9223372036854775808,
                                    "thumbnail_id": None}], None,
         "bad_request"),
        ("alice", cid, "b", "28", [{"upload_id": 1, "thumbnail_id": 0}],
         None, "bad_request"),
        ("alice", cid, "b", "29", [{"upload_id": 1, "thumbnail_id": None,
                                    "name": "x"}], None, "bad_request"),
        ("alice", cid, "b", "30", [{"upload_id": 1, "thumbnail_id": None}]
         * 11, None, "bad_request"),
        ("alice", cid, "b", "31", [{"upload_id": 1.0, "thumbnail_id": None}],
         None, "bad_request"),
    ]
    cols = list(zip(*items))
    # "19": a JSON string, not an array (the element is the text "[]"
    # quoted once more)
    atts = [json.dumps(a) if a not in (None, "[]") else
            (json.dumps("[]") if a == "[]" else None) for a in cols[4]]
    out = call(rt, list(cols[0]), list(cols[1]), list(cols[2]),
               list(cols[3]), atts, list(cols[5]))
    assert [r["ord"] for r in out] == list(range(1, len(items) + 1))
    assert [r["code"] for r in out] == list(cols[6])
    for r in out:
        assert r["id"] is None and r["recipients"] is None, r
    assert out[0]["message"] == "the item is invalid"
    assert out[19]["message"] == "conversation not found"
    assert out[22]["message"] == \
        "reply_to is not a message of this conversation"
    assert out[23]["message"] == "attachments[0]: upload not found"
    assert count(pg) == 0
    assert pg.query("SELECT last_seq FROM chat.conversations "
                    "ORDER BY id") == [(0,), (0,)]
    # the quoting of what the module sends: quotes, backslashes, braces,
    # commas, NULL as a string, unicode
    body = 'a "b" \\ {c}, NULL é 😀'
    out = call(rt, ["alice"], [cid], [body], ["NULL"])
    assert out[0]["code"] is None and out[0]["body"] == body
    assert pg.query("SELECT body, client_msg_id FROM chat.messages") == \
        [(body, "NULL")]


def test_a_batch_of_every_kind(db):
    pg, rt = db
    d = conv(pg, "alice", "bob")
    blocked = conv(pg, "alice", "carol")
    g = api(pg, "conversation_create", "alice",
            {"kind": "group", "title": "g",
             "members": ["bob", "dave", "eve"]})["ok"]["conversation"]["id"]
    m0 = api(pg, "message_send", "alice",
             {"conversation_id": d, "body": "m0",
              "client_msg_id": "r"})["ok"]["message"]
    api(pg, "block", "carol", {"user_id": "alice"})
    api(pg, "block", "eve", {"user_id": "alice"})
    att = [{"url": "https://e.example/a.png", "name": "a.png",
            "mime": "image/png", "size": 3}]
    items = [
        ("alice", d, "a1", "x1", att, None),          # 1 fresh
        ("alice", d, "", "x2", None, None),            # 2 bad
        ("alice", d, "again", "r", None, None),        # 3 retry of m0
        ("alice", d, "other", "x1", None, None),       # 4 repeat of 1
        ("alice", blocked, "hi", "b1", None, None),    # 5 blocked
        ("alice", g, "g0", "g2", None, m0["id"]),      # 6 reply elsewhere
        ("alice", g, "g1", "g1", None, None),          # 7 fresh
        ("bob", d, "b1", "x1", None, m0["id"]),        # 8 fresh (bob's key)
        ("mallory", d, "m", "m1", None, None),         # 9 not a member
        ("alice", d, "a1 again", "x1", None, None),    # 10 repeat of 1
        ("alice", g, "g2", "g2", None, None),          # 11 fresh: 6 failed
        ("alice", g, "g2 again", "g2", None, 1),       # 12 repeat of 11
    ]
    cols = list(zip(*items))
    out = call(rt, *[list(c) for c in cols], hosts=["e.example"])
    codes = [(r["code"], r["message"]) for r in out]
    assert codes == [
        (None, None),
        ("bad_request", "the item is invalid"),
        (None, None),
        (None, None),
        ("forbidden", "blocked"),
        ("bad_request", "reply_to is not a message of this conversation"),
        (None, None),
        (None, None),
        ("not_found", "conversation not found"),
        (None, None),
        (None, None),
        (None, None)]
    r1, r3, r4, r7, r8, r10, r11, r12 = (out[i] for i in
                                          (0, 2, 3, 6, 7, 9, 10, 11))
    # numbers: a conversation's next ones in item order, ids growing
    assert (r1["seq"], r8["seq"]) == (2, 3)
    assert (r7["seq"], r11["seq"]) == (1, 2)
    assert r1["id"] < r7["id"] < r8["id"] < r11["id"]
    # a retry answers the stored message, a repeat its item's, and neither
    # is delivered again
    assert (r3["id"], r3["seq"], r3["body"]) == (m0["id"], 1, "m0")
    for r in (r4, r10):
        assert (r["id"], r["seq"], r["body"], r["attachments"]) == \
            (r1["id"], 2, "a1", att)
    assert r12["id"] == r11["id"] and r12["body"] == "g2"
    assert r12["reply_to"] is None
    for r in (r3, r4, r10, r12):
        assert r["recipients"] is None
    # the members, but not who blocked the sender
    assert r1["recipients"] == ["alice", "bob"]
    assert r8["recipients"] == ["alice", "bob"]
    assert r8["reply_to"] == m0["id"]
    assert r7["recipients"] == ["alice", "bob", "dave"]
    assert r11["recipients"] == ["alice", "bob", "dave"]
    # what was stored is what was answered
    stored = pg.query("SELECT id, conversation_id, seq, sender_id, body, "
                      "client_msg_id FROM chat.messages ORDER BY id")
    assert stored == [
        (m0["id"], d, 1, "alice", "m0", "r"),
        (r1["id"], d, 2, "alice", "a1", "x1"),
        (r7["id"], g, 1, "alice", "g1", "g1"),
        (r8["id"], d, 3, "bob", "b1", "x1"),
        (r11["id"], g, 2, "alice", "g2", "g2")]
    assert pg.query("SELECT id, last_seq FROM chat.conversations "
                    "ORDER BY id") == [(d, 3), (blocked, 0), (g, 2)]
    # the answer's fields are message_obj's
    for r in (r1, r3, r7, r8, r11):
        obj = pg.query("SELECT chat.message_obj(m) FROM chat.messages m "
                       "WHERE id = %s", (r["id"],))[0][0]
        assert obj["created_at"] == r["created_at"]
        assert (obj["seq"], obj["updated_seq"], obj["body"],
                obj["attachments"], obj["reply_to"], obj["edited_at"],
                obj["deleted"]) == (r["seq"], r["updated_seq"], r["body"],
                                    r["attachments"], r["reply_to"],
                                    r["edited_at"], r["deleted"])
        assert "system" not in obj and r["system"] is False


# --------------------------------------------------------------------------
# the Message object the worker makes, byte for byte

def object_at(text, key):
    """The raw JSON text of the object at the first "key": in text."""
    start = text.index('"%s":{' % key) + len(key) + 3
    depth, i, in_str = 0, start, False
    while True:
        ch = text[i]
        if in_str:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start:i + 1]
        i += 1


def objects_in(text, key):
    """The raw objects of the array at "key": in text."""
    out, rest = [], text[text.index('"%s":[' % key) + len(key) + 4:]
    while rest.startswith("{"):
        wrapped = '"x":' + rest
        obj = object_at(wrapped, "x")
        out.append(obj)
        rest = rest[len(obj):].lstrip(",")
    return out


def raw_request(c, obj, timeout=10):
    """The raw text of the reply to obj; other frames are dropped."""
    rid = unique("r")
    c.send_json(dict(obj, id=rid))
    deadline = time.monotonic() + timeout
    while True:
        text = c.recv(max(0.01, deadline - time.monotonic()))
        if json.loads(text).get("id") == rid:
            return text


def raw_event(c, type_="message.created", timeout=10):
    """The raw text of c's next frame of type_."""
    deadline = time.monotonic() + timeout
    while True:
        text = c.recv(max(0.01, deadline - time.monotonic()))
        if json.loads(text).get("type") == type_:
            return text


def history_objects(c, cid):
    text = raw_request(c, {"type": "messages.history",
                           "conversation_id": cid})
    return {json.loads(o)["id"]: o for o in objects_in(text, "messages")}


def test_the_message_object_is_message_objs_byte_for_byte(chat):
    alice, bob = chat.connect("alice"), chat.connect("bob")
    cid = direct(alice, "bob")["id"]
    bob.next_event("conversation.created")
    body = 'héllo — 你好 😀 "q" \\ / </script>\n\ttab \u2028 \u0001'
    att = [{"url": "https://e.example/ÿ.png", "name": "ÿ \"x\".png",
            "size": 12.0},
           {"url": "https://e.example/files/2", "mime": "text/plain"}]
    sent = []
    for req in ({"body": body, "client_msg_id": "m1", "attachments": att},
                {"body": "a reply", "client_msg_id": "m2"}):
        if sent:
            req["reply_to"] = json.loads(sent[0])["id"]
        text = raw_request(alice, dict(req, type="message.send",
                                       conversation_id=cid))
        msg = object_at(text, "message")
        sent.append(msg)
        # bob's event carries the same object, byte for byte
        assert object_at(raw_event(bob), "message") == msg
    hist = history_objects(alice, cid)
    for msg in sent:
        assert hist[json.loads(msg)["id"]] == msg
    m1 = json.loads(sent[0])
    assert m1["attachments"][0]["size"] == 12
    assert m1["body"] == body

    # a retry answers the stored message as it is now: edited, then
    # deleted (no body, no attachments)
    alice.ok("message.edit", message_id=m1["id"], body="edited ✓")
    retry = {"type": "message.send", "conversation_id": cid,
             "body": "ignored", "client_msg_id": "m1"}
    text = raw_request(alice, retry)
    assert object_at(text, "message") == \
        history_objects(alice, cid)[m1["id"]]
    assert json.loads(object_at(text, "message"))["edited_at"]
    alice.ok("message.delete", message_id=m1["id"])
    text = raw_request(alice, retry)
    gone = object_at(text, "message")
    assert gone == history_objects(alice, cid)[m1["id"]]
    assert json.loads(gone)["body"] is None
    assert json.loads(gone)["attachments"] == []


def test_a_pipelined_batch_mixing_bad_good_retries_and_repeats(chat):
    """The worker's own shape checks answer in turn, with the SQL API's
    errors; the rest commit together, and bob hears each message once."""
    alice, bob = chat.connect("alice"), chat.connect("bob")
    cid = direct(alice, "bob")["id"]
    bob.next_event("conversation.created")
    first = send(alice, cid, "first", "k0")
    reqs = [
        {"body": "one", "client_msg_id": "k1"},
        {"client_msg_id": "k2"},
        {"body": "three", "client_msg_id": "k0"},
        {"body": "four", "client_msg_id": "k1"},
        {"body": "", "client_msg_id": "k5"},
        {"body": "six", "client_msg_id": "k6", "reply_to": "x"},
        {"body": "seven", "client_msg_id": "k7",
         "attachments": [{"url": "http://plain"}]},
        {"body": "eight", "client_msg_id": "k8", "conversation_id": 1.5},
        {"body": "nine", "client_msg_id": "k9"},
    ]
    ids = []
    for r in reqs:
        ids.append(unique("p"))
        alice.send_json(dict({"type": "message.send", "id": ids[-1],
                              "conversation_id": cid}, **r))
    replies = {}
    deadline = time.monotonic() + 10
    while len(replies) < len(ids):
        f = alice.recv_json(max(0.01, deadline - time.monotonic()))
        if f.get("id") in ids:
            replies[f["id"]] = f
    got = [replies[i] for i in ids]
    err = [g.get("error") for g in got]
    assert err[1] == {"code": "bad_request", "message": "body is missing"}
    assert err[4] == {"code": "bad_request",
                      "message": "body must not be empty"}
    assert err[5] == {"code": "bad_request",
                      "message": "reply_to must be a message id"}
    assert err[6] == {"code": "bad_request",
                      "message": "attachments[0].url must be https:// on "
                                 "a host of chat_attachment_hosts"}
    assert err[7] == {"code": "bad_request",
                      "message": "conversation_id must be a positive "
                                 "integer"}
    msgs = [g["data"]["message"] if g["type"] == "ok" else None
            for g in got]
    assert msgs[2] == first
    assert msgs[3] == msgs[0]
    assert [m["seq"] for m in (msgs[0], msgs[8])] == [2, 3]
    # bob: first, one, nine; once each, in order
    seen = []
    deadline = time.monotonic() + 10
    while len(seen) < 3:
        f = bob.recv_json(max(0.01, deadline - time.monotonic()))
        if f["type"] == "message.created":
            seen.append(f["message"]["body"])
    assert seen == ["first", "one", "nine"]
    bob.ok("ping")
    assert not [e for e in bob.events if e["type"] == "message.created"]


def test_deleting_a_conversation_deletes_its_messages(db):
    """The foreign key to conversations is gone (0013): a trigger does
    what its ON DELETE CASCADE did, for the host or an operator."""
    pg, rt = db
    keep, gone = conv(pg, "alice", "bob"), conv(pg, "alice", "carol")
    out = call(rt, ["alice", "alice", "alice"], [keep, gone, gone],
               ["a", "b", "c"], ["1", "2", "3"])
    assert [r["code"] for r in out] == [None, None, None]
    assert pg.query("SELECT count(*) FROM pg_constraint "
                    "WHERE conrelid = 'chat.messages'::regclass "
                    "AND contype = 'f'") == [(0,)]
    pg.query("DELETE FROM chat.conversations WHERE id = %s", (gone,))
    assert pg.query("SELECT conversation_id, body FROM chat.messages") == \
        [(keep, "a")]
    assert pg.query("SELECT count(*) FROM chat.members "
                    "WHERE conversation_id = %s", (gone,)) == [(0,)]
