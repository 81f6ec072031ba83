"""Presence by interest (issue 15): a connection watches a bounded set of
users (its direct partners by default; presence.subscribe replaces the
set) and gets presence events for those only; a group shows a count
(presence.count), not N events.  Real nginx with the module, real
PostgreSQL, real WebSocket clients.

One worker unless a test says otherwise: a presence change is queued to
the watchers of this worker before the welcome of the connection that
caused it is sent, and settle() (a ping answered after everything queued)
proves that nothing arrived without sleeping.  A connection's default
watch set is read from storage in the order of its requests: ready()
waits for it with a storage request of the same connection.
"""

import json
import time

import pytest

from chatlib import (API_LOCATIONS, TIMEOUT, direct, group, settle)


CHAT_ENV = dict(locations=API_LOCATIONS, http="chat_zone chat 16m;",
                timeout=TIMEOUT, ready=True)

GRACE = 3.0                 # the presence grace period, in the C code
ONLINE = {"online": True, "last_seen": None}
OFFLINE = {"online": False, "last_seen": None}
BAD = {"code": "bad_request",
       "message": "user_ids must be an array of at most 200 user ids"}


def ready(c):
    """c's requests so far (its default watch set, a recheck) are done:
    a storage request queued behind them is answered."""
    c.ok("conversation.list")
    return c


def ws(env, user):
    return ready(env.ws(user))


def presence(frames, user=None):
    return [f for f in frames if f["type"] == "presence"
            and (user is None or f["user_id"] == user)]


def online(user):
    return {"type": "presence", "user_id": user, "online": True,
            "last_seen": None}


def test_direct_partners_are_watched_by_default(chat):
    a = chat.conn("alice")
    direct(a, "bob")
    group(a, "g", ["carol"])
    alice = ws(chat, "alice")
    # bob, a direct partner: his coming is told to alice
    bob = chat.ws("bob")
    assert presence(settle(alice)) == [online("bob")]
    # carol shares only a group: nothing (a count or a subscription)
    chat.ws("carol")
    assert presence(settle(alice)) == []
    # bob goes: offline once the grace period is over
    bob.close()
    ev = alice.next_event("presence", timeout=GRACE + 3)
    assert ev["user_id"] == "bob" and ev["online"] is False
    assert ev["last_seen"]


def test_subscribe_replaces_the_set(chat):
    a = chat.conn("alice")
    direct(a, "bob")
    g = group(a, "g", ["carol", "dave"])
    alice = ws(chat, "alice")
    # the reply is presence.query's; carol and dave are watched, bob not
    # anymore (what is sent is the whole set)
    assert alice.ok("presence.subscribe", user_ids=["carol", "dave"]) == \
        {"presence": {"carol": OFFLINE, "dave": OFFLINE}}
    chat.ws("carol")
    chat.ws("bob")
    assert presence(settle(alice)) == [online("carol")]
    # replaced again: only dave; duplicates are watched once
    assert alice.ok("presence.subscribe",
                    user_ids=["dave", "dave", "carol"][:2]) == \
        {"presence": {"dave": OFFLINE}}
    chat.ws("dave")
    chat.ws("erin")
    assert presence(settle(alice)) == [online("dave")]
    # an empty list watches nobody
    assert alice.ok("presence.subscribe", user_ids=[]) == {"presence": {}}
    assert g


def test_subscribe_checks_its_input(chat):
    alice = ws(chat, "alice")
    for bad in (None, "bob", {"bob": 1}, [1], [""], ["x" * 129],
                ["u%d" % i for i in range(201)]):
        r = alice.request("presence.subscribe", user_ids=bad)
        assert r["type"] == "error" and r["error"] == BAD, (bad, r)
    r = alice.request("presence.subscribe")
    assert r["error"] == BAD
    # 200 ids are fine (strangers: null)
    ids = ["u%d" % i for i in range(200)]
    assert alice.ok("presence.subscribe", user_ids=ids) == \
        {"presence": {u: None for u in ids}}


def test_a_stranger_watches_nobody(chat):
    a = chat.conn("alice")
    direct(a, "bob")
    zed = ws(chat, "zed")
    assert zed.ok("presence.subscribe", user_ids=["alice", "bob"]) == \
        {"presence": {"alice": None, "bob": None}}
    chat.ws("alice")
    chat.ws("bob")
    assert presence(settle(zed)) == []


def test_a_block_after_subscribing_stops_events_either_way(chat):
    a = chat.conn("alice")
    direct(a, "bob")
    direct(a, "carol")
    alice = ws(chat, "alice")
    bob = ws(chat, "bob")
    assert presence(settle(alice)) == [online("bob")]
    # alice blocks bob: neither hears of the other any more
    assert chat.ok("alice", "PUT", "blocks/bob") == {}
    settle(alice, bob)
    chat.ws("alice")            # a second connection: no change to tell
    bob.close()
    time.sleep(GRACE + 1.5)
    assert presence(settle(alice)) == []
    # carol, watched by alice, blocks her: the blocked side stops too
    assert chat.ok("carol", "PUT", "blocks/alice") == {}
    chat.ws("carol")
    assert presence(settle(alice)) == []
    # the block is an event for the module only: no client saw it
    assert [f for f in alice.events if f["type"].startswith("presence.")] \
        == []


def test_a_removed_member_stops_watching_and_being_watched(chat):
    a = chat.conn("alice")
    g = group(a, "g", ["bob", "carol"])["id"]
    bob = ws(chat, "bob")
    carol = ws(chat, "carol")
    # bob and carol watch each other and alice, through the group
    assert bob.ok("presence.subscribe", user_ids=["carol", "alice"]) == \
        {"presence": {"carol": ONLINE, "alice": OFFLINE}}
    assert carol.ok("presence.subscribe", user_ids=["bob", "alice"]) == \
        {"presence": {"bob": ONLINE, "alice": OFFLINE}}
    chat.ok("alice", "DELETE", "conversations/%d/members/bob" % g)
    # both saw member.left and checked their sets again
    bob.next_event("member.left")
    carol.next_event("member.left")
    ready(bob)
    ready(carol)
    # alice comes: carol still shares the group with her, bob not
    chat.ws("alice")
    assert presence(settle(bob)) == []
    assert presence(settle(carol)) == [online("alice")]
    # bob goes: carol, who shares nothing with him any more, hears nothing
    bob.close()
    time.sleep(GRACE + 1.5)
    assert presence(settle(carol)) == []
    # and may not ask
    assert carol.ok("presence.query", user_ids=["bob"]) == \
        {"presence": {"bob": None}}


def test_a_contact_removed_stops_events(chat):
    # bob lists zed: zed may watch bob, though they share nothing
    chat.ok("bob", "POST", "contacts", {"user_id": "zed"})
    zed = ws(chat, "zed")
    assert zed.ok("presence.subscribe", user_ids=["bob"]) == \
        {"presence": {"bob": OFFLINE}}
    bob = chat.ws("bob")
    assert presence(settle(zed)) == [online("bob")]
    # bob takes zed off his contacts: zed checks his set, and stops
    chat.ok("bob", "DELETE", "contacts/zed")
    ready(zed)
    bob.close()
    time.sleep(GRACE + 1.5)
    assert presence(settle(zed)) == []
    assert zed.ok("presence.query", user_ids=["bob"]) == \
        {"presence": {"bob": None}}


def test_presence_count(chat):
    a = chat.conn("alice")
    g = group(a, "g", ["bob", "carol"])["id"]
    alice = ws(chat, "alice")
    chat.ws("bob")
    assert alice.ok("presence.count", conversation_id=g) == \
        {"conversation_id": g, "members": 3, "online": 2}
    zed = ws(chat, "zed")
    r = zed.request("presence.count", conversation_id=g)
    assert r["error"]["code"] == "not_found"
    r = alice.request("presence.count", conversation_id="x")
    assert r["error"]["code"] == "bad_request"
    # no event came for the group
    assert presence(settle(alice)) == []


def test_presence_count_leaves_out_users_blocked_either_way(chat):
    """A blocked user does not learn through the count whether the one
    who blocked them is online (presence.query answers null for them)."""
    a = chat.conn("alice")
    d = direct(a, "bob")["id"]
    g = group(a, "g", ["bob", "carol"])["id"]
    assert chat.ok("bob", "PUT", "blocks/alice") == {}
    alice = ws(chat, "alice")
    chat.ws("bob")
    chat.ws("carol")
    # bob and alice are both left out for each other
    assert alice.ok("presence.count", conversation_id=g) == \
        {"conversation_id": g, "members": 3, "online": 2}
    assert alice.ok("presence.count", conversation_id=d) == \
        {"conversation_id": d, "members": 2, "online": 1}
    bob = ws(chat, "bob")
    assert bob.ok("presence.count", conversation_id=g) == \
        {"conversation_id": g, "members": 3, "online": 2}


def test_presence_count_is_rate_limited(env):
    env.start(http="chat_zone chat 16m; chat_search_rate 1r/m burst=2;")
    a = env.conn("alice")
    g = group(a, "g", ["bob"])["id"]
    alice = ws(env, "alice")
    got = [alice.request("presence.count", conversation_id=g)
           for _ in range(4)]
    assert [r["type"] for r in got] == ["ok", "ok", "error", "error"]
    assert got[3]["error"]["code"] == "rate_limited"


def test_many_members_connect_with_o1_presence_frames(chat):
    """The issue's case: N members of one group connect one after the
    other.  Before, each heard of every later one (N^2/2 frames); now a
    member watches its direct partners only: no frame at all, and the
    group's count says how many are online."""
    n = 200
    members = ["m%03d" % i for i in range(n)]
    a = chat.conn(members[0])
    g = group(a, "big", members[1:])["id"]
    # one direct pair among them: exactly one frame, to its first member
    direct(a, members[1])
    clients = [ws(chat, members[0])] + [chat.ws(u) for u in members[1:]]
    frames = [presence(f) for f in settle(*clients)]
    total = sum(len(f) for f in frames)
    print("presence frames for %d members connecting: %d" % (n, total))
    assert total == 1 and frames[0] == [online(members[1])]
    assert max(len(f) for f in frames) <= 1
    assert clients[0].ok("presence.count", conversation_id=g) == \
        {"conversation_id": g, "members": n, "online": n}


@pytest.mark.parametrize("chat_env", [dict(
    locations=API_LOCATIONS, zone="16m", http="", workers=2, timeout=TIMEOUT,
    ready=True)], indirect=True)
def test_watchers_on_another_worker(chat_env):
    env = chat_env.start()
    a = env.conn("alice")
    direct(a, "bob")
    group(a, "g", ["carol"])
    alice = ready(env.connect("alice"))
    assert alice.ok("presence.subscribe", user_ids=["bob", "carol"]) == \
        {"presence": {"bob": OFFLINE, "carol": OFFLINE}}
    # bob and carol on the other worker: alice hears both, once
    bob = env.connect("bob", avoid={alice.pid})
    carol = env.connect("carol", avoid={alice.pid})
    got = [alice.next_event("presence", timeout=TIMEOUT)["user_id"]
           for _ in range(2)]
    assert sorted(got) == ["bob", "carol"]
    bob.close()
    ev = alice.next_event("presence", timeout=GRACE + 3)
    assert ev["user_id"] == "bob" and ev["online"] is False
    assert carol
