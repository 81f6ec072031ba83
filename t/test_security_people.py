"""Issue 13, the security review's findings about people: what one user
may do to, or learn of, another.  Real nginx with the module, real
PostgreSQL, real WebSocket and REST clients.

- H1: a block holds in groups: nobody is put into a group by someone they
  blocked (or who blocked them), and in a group both are in, neither
  hears the other's messages, edits, deletes, typing, receipts or
  presence, live, in sync or in history.
- M1: presence.query and GET presence answer only for the caller's
  audience (contacts, shared conversations, never blocked either way);
  the others are null (unknown), never "offline".
- L7: group size, groups one is put into by others per hour, contacts and
  blocks are bounded; the error code is `limit` (409 over REST).
- I5: users/search finds only people one can reach, unless
  `chat_user_directory open`.
- I8: a group admin cannot delete an owner's message.
- L9: attachment URLs are https:// on a host of chat_attachment_hosts,
  and none without it (issue 16: attachments are uploads).
- sync replays a message deleted after the cursor as message.deleted.

One worker: the events a request causes are queued before the answer to
a later `ping` on another connection (settle), so "nothing arrived" is
checked without sleeping.
"""

import time
import urllib.parse

import pytest

from chatlib import API_LOCATIONS, TIMEOUT, settle


# the environment (conftest.py's chat_env): chat_api, chat_websocket and a
# zone; ws() answers once the client's directory entry is in place
CHAT_ENV = dict(locations=API_LOCATIONS, http="chat_zone chat 8m;",
                timeout=TIMEOUT, ready=True, ws_ping=True)


def types(frames):
    return [f["type"] for f in frames]


def group(env, owner, *members):
    return env.ok(owner, "POST", "conversations",
                  {"kind": "group", "title": "g",
                   "members": list(members)})["conversation"]["id"]


def send(env, user, cid, body, cmid, **extra):
    return env.ok(user, "POST", "conversations/%d/messages" % cid,
                  dict(body=body, client_msg_id=cmid, **extra))["message"]


BLOCKED = {"error": {"code": "forbidden", "message": "blocked"}}


# --------------------------------------------------------------------------
# H1

def test_h1_nobody_is_put_into_a_group_across_a_block(env):
    """H1: the review's reproduction, over REST and the WebSocket."""
    env.start()
    alice = env.ws("alice")
    mallory = env.ws("mallory")
    assert env.ok("alice", "PUT", "blocks/mallory") == {}
    # a direct conversation was refused already; now a group is too
    assert env.rest("mallory", "POST", "conversations",
                    {"kind": "direct", "user_id": "alice"}) == (403, BLOCKED)
    assert env.rest("mallory", "POST", "conversations",
                    {"kind": "group", "title": "x",
                     "members": ["alice"]}) == (403, BLOCKED)
    assert mallory.request("conversation.create", kind="group", title="x",
                           members=["bob", "alice"])["error"] \
        == BLOCKED["error"]
    # the blocker cannot pull the blocked user in either
    assert env.rest("alice", "POST", "conversations",
                    {"kind": "group", "title": "x",
                     "members": ["mallory"]}) == (403, BLOCKED)
    # adding to an existing group
    g = group(env, "mallory", "bob")
    assert env.rest("mallory", "POST", "conversations/%d/members" % g,
                    {"user_id": "alice"}) == (403, BLOCKED)
    g2 = group(env, "alice", "bob")
    assert env.rest("alice", "POST", "conversations/%d/members" % g2,
                    {"user_id": "mallory"}) == (403, BLOCKED)
    # alice heard of nothing mallory tried
    assert [f for f in settle(alice) if f["type"] != "conversation.created"
            or f["conversation"]["id"] != g2] == []
    assert env.sql("SELECT count(*) FROM chat.members "
                   "WHERE user_id = 'alice' AND conversation_id <> %s",
                   (g2,)) == [(0,)]
    # the host's SQL API honours the block too (the creator acts)
    with pytest.raises(Exception, match="blocked"):
        env.sql("SELECT chat.create_conversation('mallory', 'group', "
                "ARRAY['alice'], 'x')")


def test_h1_a_shared_group_keeps_blocked_users_apart(env):
    """H1: bob's group holds alice and mallory; alice blocks mallory: no
    message, edit, delete, typing or receipt of one reaches the other,
    and neither sees the other's messages in history or sync."""
    env.start()
    alice, bob, mallory = env.ws("alice"), env.ws("bob"), env.ws("mallory")
    g = group(env, "bob", "alice", "mallory")
    for c in (alice, bob, mallory):
        settle(c)
    env.ok("alice", "PUT", "blocks/mallory")

    m = mallory.ok("message.send", conversation_id=g,
                   body="I found you anyway", client_msg_id="m1")["message"]
    mallory.ok("typing", conversation_id=g, active=True)
    a = send(env, "alice", g, "hi bob", "a1")
    alice.ok("typing", conversation_id=g, active=True)
    mallory.ok("message.edit", message_id=m["id"], body="edited")
    b = send(env, "bob", g, "hi all", "b1")
    mallory.ok("message.read", conversation_id=g, seq=b["seq"])
    alice.ok("message.read", conversation_id=g, seq=b["seq"])
    mallory.ok("message.delete", message_id=m["id"])

    got = settle(alice)
    assert all(f.get("user_id") != "mallory" for f in got), got
    assert all(f.get("message", {}).get("sender_id") != "mallory"
               for f in got), got
    assert types(got) == ["message.created", "message.created", "receipt"]
    got = settle(mallory)
    assert all(f.get("user_id") != "alice" for f in got), got
    assert all(f.get("message", {}).get("sender_id") != "alice"
               for f in got), got
    # bob, who blocked nobody, hears everything
    got = settle(bob)
    assert types(got) == ["message.created", "typing", "message.created",
                          "typing", "message.updated", "message.created",
                          "receipt", "receipt", "message.deleted"]

    # history and sync: the same view
    hist = env.ok("alice", "GET", "conversations/%d/messages" % g)
    assert [x["id"] for x in hist["messages"]] == [a["id"], b["id"]]
    alice.send_json({"type": "sync", "id": "s",
                     "conversations": {str(g): 0}})
    frames = []
    while True:
        f = alice.recv_json(timeout=TIMEOUT)
        if f.get("id") == "s":
            break
        frames.append(f)
    assert [f["message"]["id"] for f in frames] == [a["id"], b["id"]]
    assert env.ok("mallory", "GET", "conversations/%d/messages" % g)[
        "messages"][0]["sender_id"] == "mallory"
    assert "alice" not in [
        x["sender_id"] for x in env.ok(
            "mallory", "GET", "conversations/%d/messages" % g)["messages"]]
    # unread and the last message leave mallory out
    assert env.ok("alice", "GET", "unread")["conversations"] == {}
    conv = env.ok("alice", "GET", "conversations/%d" % g)["conversation"]
    assert conv["last_message"]["id"] == b["id"]


def test_h1_presence_events_skip_a_blocked_user(env):
    """H1: mallory coming online is told to bob, not to alice who blocked
    her, though all three share a group and both asked."""
    env.start()
    g = group(env, "bob", "alice", "mallory")
    assert g
    env.ok("alice", "PUT", "blocks/mallory")
    alice, bob = env.ws("alice"), env.ws("bob")
    # both ask for mallory's presence (a shared group alone says nothing:
    # presence goes by interest); alice may not know it
    assert alice.ok("presence.subscribe", user_ids=["mallory"]) == \
        {"presence": {"mallory": None}}
    assert bob.ok("presence.subscribe", user_ids=["mallory"]) == \
        {"presence": {"mallory": {"online": False, "last_seen": None}}}
    settle(alice)
    bob.events.clear()
    env.ws("mallory")
    while True:
        ev = bob.next_event("presence", timeout=TIMEOUT)
        if ev["user_id"] == "mallory":
            break
    assert ev["online"] is True
    # the same event, routed in the same pass: alice would have it now
    assert [f for f in settle(alice) if f["type"] == "presence"
            and f["user_id"] == "mallory"] == []


# --------------------------------------------------------------------------
# M1

def test_m1_presence_query_answers_only_the_audience(env):
    """M1: the review's reproduction: zed shares nothing with bob; mallory
    is blocked by alice.  Both read null (unknown), not offline."""
    env.start()
    alice, bob = env.ws("alice"), env.ws("bob")
    zed, mallory = env.ws("zed"), env.ws("mallory")
    group(env, "alice", "bob", "mallory")
    # bob lists carol: she may know his presence (the other way round,
    # anyone could watch anyone by adding them)
    env.ok("bob", "POST", "contacts", {"user_id": "carol"})
    env.ok("zed", "POST", "contacts", {"user_id": "bob"})
    online = {"online": True, "last_seen": None}

    assert zed.ok("presence.query", user_ids=["bob", "alice"]) == \
        {"presence": {"bob": None, "alice": None}}
    assert env.ok("zed", "GET", "presence?user_ids=bob,alice") == \
        {"presence": {"bob": None, "alice": None}}
    # one's own presence is always known
    assert zed.ok("presence.query", user_ids=["zed"]) == \
        {"presence": {"zed": online}}
    # members of a shared conversation, and contacts
    assert alice.ok("presence.query", user_ids=["bob", "mallory"]) == \
        {"presence": {"bob": online, "mallory": online}}
    assert env.ok("carol", "GET", "presence?user_ids=bob") == \
        {"presence": {"bob": online}}
    # blocked either way: unknown, though the group is shared
    env.ok("alice", "PUT", "blocks/mallory")
    assert mallory.ok("presence.query", user_ids=["alice", "bob"]) == \
        {"presence": {"alice": None, "bob": online}}
    assert env.ok("alice", "GET", "presence?user_ids=mallory,bob") == \
        {"presence": {"mallory": None, "bob": online}}
    # offline is told only to the audience too
    bob.close()
    deadline = time.monotonic() + TIMEOUT
    while alice.ok("presence.query", user_ids=["bob"])["presence"]["bob"][
            "online"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert zed.ok("presence.query", user_ids=["bob"]) == \
        {"presence": {"bob": None}}
    assert env.ok("zed", "GET", "presence?user_ids=bob") == \
        {"presence": {"bob": None}}
    got = alice.ok("presence.query", user_ids=["bob"])["presence"]["bob"]
    assert got["online"] is False and got["last_seen"]


def test_m1_presence_query_while_storage_is_down(env):
    """M1: without storage nobody's audience is known: unavailable (503),
    never the zone's answer for everyone."""
    env.start()
    alice = env.ws("alice")
    env.ws("bob")
    group(env, "alice", "bob")
    env.pg.stop()
    try:
        r = alice.request("presence.query", user_ids=["bob"],
                          timeout=TIMEOUT)
        assert r["error"]["code"] == "unavailable", r
        status, body = env.rest("alice", "GET", "presence?user_ids=bob")
        assert (status, body["error"]["code"]) == (503, "unavailable")
    finally:
        env.pg.start()


# --------------------------------------------------------------------------
# L7

LIMIT_OPTIONS = ("-c chat.max_group_members=3 "
                 "-c chat.max_group_joins_per_hour=2 "
                 "-c chat.max_contacts=2 -c chat.max_blocks=2")


@pytest.mark.parametrize("how", ["directive", "setting"])
def test_l7_limits_over_rest_and_websocket(env, how):
    """L7: a stranger cannot put a user into group after group, groups and
    contact and block lists are bounded; `limit`, 409 over REST.  The
    limits come from chat_limits, or from the database's settings."""
    if how == "directive":
        env.start(http="chat_zone chat 8m;\nchat_limits group_members=3 "
                       "joins_per_hour=2 contacts=2 blocks=2;")
    else:
        env.start(options=LIMIT_OPTIONS)
    victim = env.ws("victim")
    group(env, "s1", "victim")
    group(env, "s2", "victim")
    status, body = env.rest("s3", "POST", "conversations",
                            {"kind": "group", "title": "x",
                             "members": ["victim"]})
    assert (status, body["error"]["code"]) == (409, "limit"), body
    s4 = env.ws("s4")
    r = s4.request("conversation.create", kind="group", title="x",
                   members=["victim"])
    assert r["error"]["code"] == "limit", r
    assert types(settle(victim)) == ["conversation.created"] * 2
    # the group size
    g = group(env, "owner", "a", "b")
    status, body = env.rest("owner", "POST", "conversations/%d/members" % g,
                            {"user_id": "c"})
    assert (status, body["error"]) == (409, {
        "code": "limit", "message": "a group has at most 3 members"})
    # contacts and blocks
    for path, method in (("contacts", "POST"), ("blocks/", "PUT")):
        for who in ("p1", "p2"):
            if method == "POST":
                env.ok("owner", "POST", path, {"user_id": who})
            else:
                env.ok("owner", "PUT", path + who)
        status, body = (env.rest("owner", "POST", path, {"user_id": "p3"})
                        if method == "POST"
                        else env.rest("owner", "PUT", path + "p3"))
        assert (status, body["error"]["code"]) == (409, "limit"), body


# --------------------------------------------------------------------------
# I5

def test_i5_user_search_finds_only_reachable_people(env):
    """I5: by default (chat_user_directory contacts) one- or two-letter
    queries no longer list the directory."""
    env.start()
    env.sql("INSERT INTO chat.users (id, name) VALUES ('bob', 'Bob'), "
            "('bobby', 'Bobby'), ('bobo', 'Bobo'), ('boris', 'Boris')")
    group(env, "alice", "bob")
    env.ok("alice", "POST", "contacts", {"user_id": "bobby"})

    def ids(q):
        return [u["id"] for u in env.ok(
            "alice", "GET", "users/search?q=" + urllib.parse.quote(q))[
            "users"]]

    assert ids("b") == ["bob", "bobby"]
    assert ids("bo") == ["bob", "bobby"]
    assert ids("boris") == ["boris"]            # an exact id
    assert ids("bor") == []


def test_i5_an_open_directory(env):
    env.start(loc="chat_user_directory open;")
    env.sql("INSERT INTO chat.users (id, name) VALUES ('bob', 'Bob'), "
            "('bobby', 'Bobby'), ('boris', 'Boris')")
    assert [u["id"] for u in env.ok("alice", "GET", "users/search?q=bo")[
        "users"]] == ["bob", "bobby", "boris"]


# --------------------------------------------------------------------------
# I8, L9

def test_i8_an_admin_cannot_delete_the_owners_message(env):
    env.start()
    admin = env.ws("admin")
    g = group(env, "owner", "admin", "member")
    env.ok("owner", "POST", "conversations/%d/members" % g,
           {"user_id": "admin", "role": "admin"})
    mo = send(env, "owner", g, "rules", "o1")
    mm = send(env, "member", g, "spam", "m1")
    r = admin.request("message.delete", message_id=mo["id"])
    assert r["error"] == {"code": "forbidden", "message":
                          "only an owner can delete an owner's message"}
    assert env.rest("admin", "DELETE", "messages/%d" % mo["id"])[0] == 403
    assert admin.ok("message.delete", message_id=mm["id"])["message"][
        "deleted"] is True
    assert env.ok("owner", "GET", "conversations/%d/messages" % g)[
        "messages"][0]["body"] == "rules"


@pytest.mark.parametrize("url", ["//evil.example/x", "/\\evil.example/x",
                                 "http://evil.example/x",
                                 "javascript:alert(1)", "/files/x.png",
                                 "https://evil.example/x"])
def test_l9_off_site_attachment_urls_are_refused(env, url):
    env.start(http=CHAT_ENV["http"] + " chat_attachment_hosts cdn.example;")
    alice = env.ws("alice")
    g = group(env, "alice")
    status, body = env.rest("alice", "POST", "conversations/%d/messages" % g,
                            {"body": "x", "client_msg_id": "c",
                             "attachments": [{"url": url}]})
    assert (status, body["error"]["code"]) == (400, "bad_request"), body
    r = alice.request("message.send", conversation_id=g, body="x",
                      client_msg_id="w", attachments=[{"url": url}])
    assert r["error"]["code"] == "bad_request"
    # https to the listed host is fine
    good = "https://cdn.example/x.png"
    send(env, "alice", g, "x", good, attachments=[{"url": good}])


# --------------------------------------------------------------------------
# sync and deletes

def test_sync_replays_a_message_deleted_while_away_as_deleted(env):
    """A message created and deleted after the client's cursor reaches it
    as message.deleted (its last change), not message.created."""
    env.start()
    bob = env.ws("bob")
    g = group(env, "alice", "bob")
    m1 = send(env, "alice", g, "kept", "k1")
    settle(bob)
    bob.close()
    m2 = send(env, "alice", g, "oops", "k2")
    d2 = env.ok("alice", "DELETE", "messages/%d" % m2["id"])["message"]
    bob = env.ws("bob")
    bob.send_json({"type": "sync", "id": "s",
                   "conversations": {str(g): m1["seq"]}})
    frames = []
    while True:
        f = bob.recv_json(timeout=TIMEOUT)
        if f.get("id") == "s":
            break
        frames.append(f)
    assert frames == [{"type": "message.deleted", "message": d2}]

    # live: this worker did not see m2's changes (nobody was connected), so
    # m3 comes after a gap, which it reads from PostgreSQL: m2 as its last
    # change too, then m3 created and deleted as they happened
    alice = env.ws("alice")
    m3 = send(env, "alice", g, "again", "k3")
    d3 = env.ok("alice", "DELETE", "messages/%d" % m3["id"])["message"]
    got = []
    while len(got) < 3:
        f = alice.next_event(timeout=TIMEOUT)
        if f["type"].startswith("message."):
            got.append((f["type"], f["message"]["id"],
                        f["message"]["updated_seq"]))
    assert got == [("message.deleted", m2["id"], d2["updated_seq"]),
                   ("message.created", m3["id"], m3["seq"]),
                   ("message.deleted", m3["id"], d3["updated_seq"])]
    assert settle(alice) == []


@pytest.mark.parametrize("value,message", [
    ("group_members=0", 'invalid chat_limits value "group_members=0"'),
    ("group_members=x", 'invalid chat_limits value "group_members=x"'),
    ("members=3", 'invalid chat_limits parameter "members=3"'),
    ("contacts", 'invalid chat_limits parameter "contacts"'),
    ("blocks=1 blocks=2", 'invalid chat_limits parameter "blocks=2"'),
])
def test_l7_chat_limits_is_checked(nginx, postgres, value, message):
    rc, out = nginx.check_config(
        API_LOCATIONS % "", http='chat_postgres "%s";\nchat_limits %s;'
        % (postgres.dsn, value))
    assert rc != 0 and message in out, out
    rc, out = nginx.check_config(API_LOCATIONS % "",
                                 http="chat_limits contacts=5;")
    assert rc != 0 and '"chat_limits" needs chat_postgres' in out, out
