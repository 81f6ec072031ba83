"""Big groups (docs/protocol.md, "Objects", "Events": big groups): a group
of 10,000 members, built through SQL as the superuser (one INSERT, not
10,000 requests), used by real clients over real nginx and PostgreSQL.

What is checked: Conversation objects list at most the first 100 members
(and the caller) in every reply and event; conversation.members and GET
conversations/{id}/members page through every member exactly once, in
the protocol's order, also while members leave and join; strangers and
removed members are refused; blocked users' read marks are hidden; in a
group over 100 members receipts go only to the reader and the senders of
what was read, typing to nobody; unread counts and sync work there.

Nothing is timed: sizes are (frame bytes, members listed, events
received).  One worker, so that `settle` proves what did not arrive.
"""

import json

import pytest

from chatlib import API_LOCATIONS, TIMEOUT, quote, send, settle, sync

CHAT_ENV = dict(locations=API_LOCATIONS, timeout=TIMEOUT)

BIG = 10000

# The protocol's member order (members_order_idx)
ORDER = ("ORDER BY joined_at, array_position(ARRAY['owner', 'admin', "
         "'member'], role), user_id COLLATE \"C\"")


def uid(i):
    return "m%05d" % i


def big_group(chat, n=BIG, title="big"):
    """A group of n members m00000 (owner) .. m<n-1>, made in SQL: three
    members join in each millisecond (ties are broken by role, then id),
    every 7th is an admin (m00005 comes before m00003).  Returns (id, the user ids in the protocol's
    member order)."""
    cid = chat.sql("INSERT INTO chat.conversations (kind, title, created_by)"
                   " VALUES ('group', %s, 'm00000') RETURNING id",
                   (title,))[0][0]
    chat.sql("""
        INSERT INTO chat.members (conversation_id, user_id, role, joined_at)
        SELECT %s, 'm' || lpad(i::text, 5, '0'),
               CASE WHEN i = 0 THEN 'owner'
                    WHEN i %% 7 = 5 THEN 'admin' ELSE 'member' END,
               timestamptz '2026-01-01 00:00:00+00'
               + ((i / 3) * interval '1 millisecond')
        FROM generate_series(0, %s - 1) i""", (cid, n))
    chat.sql("ANALYZE chat.members")
    order = [r[0] for r in chat.sql(
        "SELECT user_id FROM chat.members WHERE conversation_id = %s "
        + ORDER, (cid,))]
    assert len(order) == n
    assert order[:6] == [uid(0), uid(1), uid(2), uid(5), uid(3), uid(4)] \
        or n < 6
    return cid, order


def capped(conv, order, me=None):
    """conv lists the first 100 members in order, plus me when it comes
    later, and counts them all."""
    ids = [m["user_id"] for m in conv["members"]]
    want = order[:100]
    if me is not None and me not in want:
        want = want + [me]
    assert ids == want
    assert conv["members_count"] == len(order)


def frame_size(obj):
    return len(json.dumps(obj, separators=(",", ":")).encode())


def pages_ws(c, cid, limit=None, hook=None):
    """Every member through conversation.members: (user ids, pages)."""
    out, after, pages = [], None, 0
    while True:
        kw = {"conversation_id": cid}
        if after is not None:
            kw["after"] = after
        if limit is not None:
            kw["limit"] = limit
        data = c.ok("conversation.members", timeout=TIMEOUT, **kw)
        assert set(data) == {"members", "next"}
        assert len(data["members"]) <= (limit or 100)
        out += [m["user_id"] for m in data["members"]]
        pages += 1
        if hook:
            hook(pages)
        if data["next"] is None:
            return out, pages
        assert isinstance(data["next"], str)
        after = data["next"]


def pages_rest(conn, cid, limit=200):
    out, after, pages = [], None, 0
    while True:
        path = "conversations/%d/members?limit=%d" % (cid, limit)
        if after is not None:
            path += "&after=" + quote(after)
        data = conn.ok("GET", path)
        assert set(data) == {"members", "next"}
        assert len(data["members"]) <= limit
        out += [m["user_id"] for m in data["members"]]
        pages += 1
        if data["next"] is None:
            return out, pages
        after = data["next"]


# --------------------------------------------------------------------------
# Conversation objects


def test_conversation_objects_of_a_10000_member_group_are_capped(chat):
    cid, order = big_group(chat)
    owner = chat.ws(uid(0))
    last = order[-1]
    late = chat.ws(last)          # the caller's own entry comes after 100
    member = chat.ws(order[50])

    # get (REST): the first 100 and the caller; small whatever the group
    conv = chat.conn(last).ok("GET", "conversations/%d" % cid)["conversation"]
    capped(conv, order, last)
    assert frame_size(conv) < 20000
    assert conv["members"][-1]["user_id"] == last

    # list (WebSocket and REST)
    lst = late.ok("conversation.list")["conversations"]
    assert [c["id"] for c in lst] == [cid]
    capped(lst[0], order, last)
    capped(chat.conn(uid(0)).ok("GET", "conversations")["conversations"][0],
           order, uid(0))

    # an update: the reply and the event every member gets
    upd = chat.conn(uid(0)).ok("PATCH", "conversations/%d" % cid,
                               obj={"title": "renamed"})["conversation"]
    capped(upd, order, uid(0))
    ev = member.next_event("conversation.updated", timeout=TIMEOUT)
    assert ev["conversation"]["title"] == "renamed"
    capped(ev["conversation"], order)
    assert frame_size(ev) < 20000

    # 10,000 is the default bound: one more is refused, until one leaves
    owner_rest = chat.conn(uid(0))
    owner_rest.error("POST", "conversations/%d/members" % cid, "limit",
                     "a group has at most 10000 members", 409,
                     obj={"user_id": "newcomer"})
    owner_rest.ok("DELETE", "conversations/%d/members/%s"
                  % (cid, order[9998]))
    order.remove(order[9998])

    # a member add: the reply holds 100 members, not 10,000
    added = owner_rest.ok("POST", "conversations/%d/members" % cid, 201,
                          obj={"user_id": "newcomer"})
    order.append("newcomer")
    capped(added["conversation"], order, uid(0))
    joined = member.next_event("member.joined", timeout=TIMEOUT)
    assert joined["user_id"] == "newcomer"

    # archive: the user's own object, capped too
    arch = chat.conn(last).ok("PUT", "conversations/%d/archive"
                              % cid)["conversation"]
    capped(arch, order, last)
    assert owner.ok("ping")


def test_a_created_group_and_its_event_are_capped(chat):
    members = [uid(i) for i in range(1, 300)]
    bob = chat.ws(uid(250))
    alice = chat.ws(uid(0))
    conv = alice.ok("conversation.create", kind="group", title="g",
                    members=members)["conversation"]
    order = [uid(0)] + members
    capped(conv, order, uid(0))
    ev = bob.next_event("conversation.created", timeout=TIMEOUT)
    capped(ev["conversation"], order)
    # bob's own entry is in his GET, as the 101st
    got = chat.conn(uid(250)).ok("GET", "conversations/%d"
                                 % conv["id"])["conversation"]
    capped(got, order, uid(250))
    assert got["members"][100]["user_id"] == uid(250)


# --------------------------------------------------------------------------
# Member pages


def test_member_pages_cover_a_10000_member_group_once(chat):
    cid, order = big_group(chat)

    # REST, 200 at a time: everyone once, in order
    got, pages = pages_rest(chat.conn(order[17]), cid)
    assert got == order
    assert pages == BIG // 200

    # WebSocket, the default 100: the same
    c = chat.ws(order[9999])
    got, pages = pages_ws(c, cid)
    assert got == order
    assert pages == BIG // 100

    # a page's size in bytes is bounded by its limit, not the group
    data = c.ok("conversation.members", conversation_id=cid, limit=200)
    assert len(data["members"]) == 200
    assert frame_size(data) < 200 * 120


def test_member_pages_while_members_leave_and_join(chat):
    cid, order = big_group(chat)
    c = chat.ws(order[0])
    gone_later = order[5000]      # removed before its page: never listed
    gone_earlier = order[10]      # removed after its page: listed once

    def hook(pages):
        if pages == 2:
            chat.conn(order[0]).ok("DELETE", "conversations/%d/members/%s"
                                   % (cid, quote(gone_later)))
            chat.conn(order[0]).ok("DELETE", "conversations/%d/members/%s"
                                   % (cid, quote(gone_earlier)))
            chat.conn(order[0]).ok("POST", "conversations/%d/members" % cid,
                                   201, obj={"user_id": "late-joiner"})

    got, _ = pages_ws(c, cid, limit=200, hook=hook)
    want = [u for u in order if u != gone_later] + ["late-joiner"]
    assert got == want
    assert len(set(got)) == len(got)

    # the one removed is refused now, as objects and pages
    gone = chat.ws(gone_later)
    err = gone.request("conversation.members", conversation_id=cid)
    assert err["type"] == "error"
    assert err["error"]["code"] == "not_found"
    status, body = chat.rest(gone_later, "GET",
                             "conversations/%d/members" % cid)
    assert status == 404 and body["error"]["code"] == "not_found"
    status, _ = chat.rest(gone_later, "GET", "conversations/%d" % cid)
    assert status == 404


def test_member_pages_refuse_strangers_and_bad_arguments(chat):
    cid, order = big_group(chat, n=300)
    stranger = chat.ws("stranger")
    for kw in ({"conversation_id": cid}, {"conversation_id": cid + 1000}):
        err = stranger.request("conversation.members", **kw)
        assert err["error"] == {"code": "not_found",
                                "message": "conversation not found"}
    status, body = chat.rest("stranger", "GET",
                             "conversations/%d/members" % cid)
    assert status == 404
    assert body == {"error": {"code": "not_found",
                              "message": "conversation not found"}}

    c = chat.ws(order[1])
    for kw, message in (
            ({}, "conversation_id is missing"),
            ({"conversation_id": cid, "limit": 0},
             "limit must be an integer from 1 to 200"),
            ({"conversation_id": cid, "limit": 201},
             "limit must be an integer from 1 to 200"),
            ({"conversation_id": cid, "after": 5},
             "after is not a valid cursor"),
            ({"conversation_id": cid, "after": "nonsense"},
             "after is not a valid cursor")):
        err = c.request("conversation.members", **kw)
        assert err["error"] == {"code": "bad_request", "message": message}, \
            (kw, err)
    status, body = chat.rest(order[1], "GET", "conversations/%d/members"
                             "?limit=500" % cid)
    assert status == 400
    assert body["error"]["message"] == "limit must be an integer from 1 to 200"
    # HEAD and the Allow of the route
    conn = chat.conn(order[1])
    r = conn.request("HEAD", "conversations/%d/members" % cid)
    assert r.status == 200 and r.body == b""
    r = conn.request("PUT", "conversations/%d/members" % cid)
    assert r.status == 405
    assert r.header("Allow") == "GET, HEAD, POST"


def test_member_pages_hide_blocked_read_marks(chat):
    cid, order = big_group(chat, n=300)
    reader, blocker = order[1], order[250]
    chat.sql("UPDATE chat.members SET last_read_seq = 7, "
             "last_delivered_seq = 9 WHERE conversation_id = %s", (cid,))
    chat.sql("INSERT INTO chat.blocks (blocker_id, blocked_id) "
             "VALUES (%s, %s)", (blocker, reader))
    c = chat.ws(reader)
    members = c.ok("conversation.members", conversation_id=cid,
                   limit=200, after=c.ok("conversation.members",
                                         conversation_id=cid,
                                         limit=100)["next"])["members"]
    marks = {m["user_id"]: (m["last_read_seq"], m["last_delivered_seq"])
             for m in members}
    assert marks[blocker] == (0, 0)
    assert all(v == (7, 9) for k, v in marks.items() if k != blocker)
    assert set(members[0]) == {"user_id", "role", "last_read_seq",
                               "last_delivered_seq"}


# --------------------------------------------------------------------------
# Messages, unread counts, receipts, typing, sync


def test_members_chat_in_a_10000_member_group(chat):
    cid, order = big_group(chat)
    sender, reader, other = order[3], order[4000], order[9999]
    s = chat.ws(sender)
    r1, r2 = chat.ws(reader), chat.ws(reader)     # two connections
    o = chat.ws(other)

    msgs = [send(s, cid, "hello %d" % i) for i in range(3)]
    for c in (r1, r2, o):
        got = [c.next_event("message.created", timeout=TIMEOUT)["message"]
               for _ in msgs]
        assert [m["id"] for m in got] == [m["id"] for m in msgs]
    settle(s, r1, r2, o)

    # unread counts: in the list and the read reply
    conv = r1.ok("conversation.list")["conversations"][0]
    assert conv["unread_count"] == 3 and conv["last_seq"] == 3
    data = r1.ok("message.read", conversation_id=cid, seq=2)
    assert data == {"last_read_seq": 2, "unread_count": 1}

    # the receipt: the reader's other connection and the sender, nobody
    # else of the 10,000
    receipt = {"type": "receipt", "conversation_id": cid, "user_id": reader,
               "kind": "read", "seq": 2}
    ev_s, ev_r1, ev_r2, ev_o = settle(s, r1, r2, o)
    assert ev_s == [receipt]
    assert ev_r2 == [receipt]
    assert ev_r1 == [receipt]
    assert ev_o == []

    # a delivered receipt: the same
    r2.ok("message.delivered", conversation_id=cid, seq=3)
    ev_s, ev_r1, ev_o = settle(s, r1, o)
    assert [e["kind"] for e in ev_s] == ["delivered"]
    assert [e["kind"] for e in ev_r1] == ["delivered"]
    assert ev_o == []

    # another reader: the sender hears of it; then a receipt that covers
    # nobody's message but the reader's own goes to the reader only
    o.ok("message.read", conversation_id=cid, seq=3)
    ev_s, ev_r1, ev_o = settle(s, r1, o)
    assert [(e["user_id"], e["seq"]) for e in ev_s] == [(other, 3)]
    assert ev_r1 == [] and len(ev_o) == 1
    own = send(o, cid, "mine")
    settle(s, r1, r2, o)
    o.ok("message.read", conversation_id=cid, seq=own["seq"])
    ev_s, ev_r1, ev_o = settle(s, r1, o)
    assert ev_s == [] and ev_r1 == []
    assert [(e["user_id"], e["seq"]) for e in ev_o] == [(other, 4)]

    # typing goes to nobody in a big group
    assert r1.ok("typing", conversation_id=cid, active=True) == {}
    assert settle(s, r2, o) == [[], [], []]

    # sync: a member's missed messages, a bounded reply
    late = chat.ws(order[7777])
    events, data = sync(late, {str(cid): 1})
    assert [e["message"]["seq"] for e in events] == [2, 3, 4]
    assert data == {"complete": True, "cursors": {str(cid): 4}}
    assert all(frame_size(e) < 2000 for e in events)

    # a stranger and a removed member get nothing of it
    chat.conn(order[0]).ok("DELETE", "conversations/%d/members/%s"
                           % (cid, quote(other)))
    for who in ("stranger", other):
        c = chat.ws(who)
        err = c.request("message.read", conversation_id=cid, seq=4)
        assert err["error"]["code"] == "not_found"
        err = c.request("typing", conversation_id=cid, active=True)
        assert err["error"]["code"] == "not_found"
        events, data = sync(c, {str(cid): 0})
        assert events == [] and data["cursors"] == {}


@pytest.mark.parametrize("n", [100, 101])
def test_receipts_and_typing_change_above_100_members(chat, n):
    """The bound of a big group: 100 members hear every receipt and
    typing, 101 do not."""
    cid, order = big_group(chat, n=n, title="edge")
    s, r, o = chat.ws(order[1]), chat.ws(order[2]), chat.ws(order[3])
    m = send(s, cid, "x")
    settle(s, r, o)
    r.ok("message.read", conversation_id=cid, seq=m["seq"])
    r.ok("typing", conversation_id=cid, active=True)
    ev_s, ev_o = settle(s, o)
    types_o = [e["type"] for e in ev_o]
    assert [e["type"] for e in ev_s] == (["receipt", "typing"] if n == 100
                                         else ["receipt"])
    assert types_o == (["receipt", "typing"] if n == 100 else [])
    conv = r.ok("conversation.list")["conversations"][0]
    assert len(conv["members"]) == 100 and conv["members_count"] == n
