"""Attachments (issue 16, item 2): a send attaches the sender's own
uploads (an image may carry a thumbnail upload), stored as the server
describes them from chat.uploads; links only to the hosts of
chat_attachment_hosts.  chat.message_uploads says which message attaches
which upload, written with the message and emptied by its delete.

Real nginx, real PostgreSQL; uploads through POST /api/chat/uploads as in
t/test_uploads.py.
"""

import json
import time

import psycopg
import pytest

from chatlib import (API_LOCATIONS, TIMEOUT, Conn, assert_error, direct,
                     send, settle, sync)
from test_uploads import PDF, make_store, png


CHAT_ENV = dict(locations=API_LOCATIONS, timeout=TIMEOUT, zone="16m")

HOSTS = "chat_attachment_hosts cdn.example.com Files.Example.org;"


def start(env, http=""):
    store = make_store()
    return env.start("chat_upload_path %s;" % store, http=http)


def up(c, data, name):
    r = c.request("POST", "uploads?name=" + name, body=data)
    assert r.status == 201, r
    return r.json()["upload"]


def desc(u, thumb=None):
    """The stored attachment of upload u (and thumbnail upload thumb)."""
    return {"upload_id": u["id"], "name": u["name"], "type": u["type"],
            "size": u["size"], "width": u["width"], "height": u["height"],
            "url": "/api/chat/files/%d" % u["id"],
            "thumbnail": None if thumb is None else {
                "upload_id": thumb["id"], "width": thumb["width"],
                "height": thumb["height"],
                "url": "/api/chat/files/%d" % thumb["id"]}}


def send_err(c, cid, attachments, code, message):
    """A send refused with exactly this error, over REST (a Conn) or the
    WebSocket."""
    req = dict(body="x", client_msg_id="e-" + code, attachments=attachments)
    if isinstance(c, Conn):
        c.error("POST", "conversations/%d/messages" % cid, code, message,
                obj=req)
    else:
        r = c.request("message.send", conversation_id=cid, **req)
        assert r["type"] == "error", r
        assert r["error"] == {"code": code, "message": message}, r


def links(pg, mid=None):
    q = "SELECT message_id, upload_id, conversation_id " \
        "FROM chat.message_uploads"
    if mid is not None:
        return pg.query(q + " WHERE message_id = %s ORDER BY upload_id",
                        (mid,))
    return pg.query(q + " ORDER BY message_id, upload_id")


# --------------------------------------------------------------------------
# attaching

def test_attach_everywhere_the_message_shows(env):
    start(env)
    alice = env.conn("alice")
    img, th = up(alice, png(40, 30), "cat.png"), up(alice, png(4, 3), "t.png")
    pdf = up(alice, PDF, "a.pdf")
    bob = env.ws("bob")
    cid = direct(alice, "bob")["id"]
    settle(bob)

    att = [desc(img, th), desc(pdf)]
    m = send(alice, cid, "look", attachments=[
        {"upload_id": img["id"], "thumbnail_id": th["id"]},
        {"upload_id": pdf["id"], "thumbnail_id": None, "name": "ignored",
         "size": 1}])
    assert m["attachments"] == att
    assert att[0]["name"] == "cat.png" and att[0]["type"] == "image/png"
    assert (att[0]["width"], att[0]["height"]) == (40, 30)
    assert att[1]["type"] == "application/pdf"

    # the live event, history and sync carry the same objects
    assert settle(bob) == [{"type": "message.created", "message": m}]
    hist = alice.ok("GET", "conversations/%d/messages" % cid)["messages"]
    assert [h["attachments"] for h in hist] == [att]
    events, _ = sync(bob, {str(cid): 0})
    assert [e["message"]["attachments"] for e in events
            if e["type"] == "message.created"] == [att]

    assert links(env.pg, m["id"]) == sorted(
        [(m["id"], u["id"], cid) for u in (img, th, pdf)],
        key=lambda r: r[1])

    # over the WebSocket: the same upload again, in a second message
    aws = env.ws("alice")
    m2 = send(aws, cid, "again", attachments=[{"upload_id": pdf["id"]}])
    assert m2["attachments"] == [desc(pdf)]
    assert links(env.pg, m2["id"]) == [(m2["id"], pdf["id"], cid)]


def test_foreign_upload_is_not_found_like_an_unknown_one(env):
    start(env)
    alice, bob = env.conn("alice"), env.conn("bob")
    mine = up(alice, png(2, 2), "a.png")
    theirs = up(bob, png(2, 2), "b.png")
    bobs_pdf = up(bob, PDF, "b.pdf")
    cid = direct(alice, "bob")["id"]
    aws = env.ws("alice")
    for c in (alice, aws):
        for uid in (theirs["id"], bobs_pdf["id"], 10 ** 9):
            send_err(c, cid, [{"upload_id": mine["id"]},
                              {"upload_id": uid}],
                     "not_found", "attachments[1]: upload not found")
            send_err(c, cid, [{"upload_id": mine["id"],
                               "thumbnail_id": uid}],
                     "not_found", "attachments[0]: thumbnail not found")
    # bob, who owns it, may; nothing was stored for alice's attempts
    m = send(bob, cid, "mine", attachments=[{"upload_id": theirs["id"]}])
    assert m["seq"] == 1
    assert links(env.pg) == [(m["id"], theirs["id"], cid)]


def test_thumbnails_are_images_beside_images(env):
    start(env)
    alice = env.conn("alice")
    img, pdf = up(alice, png(8, 8), "i.png"), up(alice, PDF, "d.pdf")
    cid = direct(alice, "bob")["id"]
    send_err(alice, cid, [{"upload_id": img["id"],
                           "thumbnail_id": pdf["id"]}],
             "bad_request", "attachments[0]: the thumbnail must be an image")
    send_err(alice, cid, [{"upload_id": img["id"]},
                          {"upload_id": pdf["id"],
                           "thumbnail_id": img["id"]}],
             "bad_request", "attachments[1]: only an image has a thumbnail")


def test_shape_errors_name_the_item(env):
    start(env)
    alice = env.conn("alice")
    img = up(alice, png(2, 2), "i.png")
    cid = direct(alice, "bob")["id"]
    aws = env.ws("alice")
    one = {"upload_id": img["id"]}
    for c in (alice, aws):
        send_err(c, cid, [one] * 11, "too_large",
                 "attachments has more than 10 items")
        send_err(c, cid, [one, 5], "bad_request",
                 "attachments[1] must be an object")
        send_err(c, cid, [one, {"upload_id": "1"}], "bad_request",
                 "attachments[1].upload_id must be a positive integer")
        send_err(c, cid, [{"upload_id": 1, "thumbnail_id": 0}],
                 "bad_request",
                 "attachments[0].thumbnail_id must be a positive integer")
        send_err(c, cid, [{"name": "x"}], "bad_request",
                 "attachments[0] must have an upload_id")
    # ten is the most, and the same upload twice in one message is one row
    m = send(alice, cid, "ten", attachments=[one] * 10)
    assert m["attachments"] == [desc(img)] * 10
    assert links(env.pg, m["id"]) == [(m["id"], img["id"], cid)]


# --------------------------------------------------------------------------
# links

BAD_LINKS = ["http://cdn.example.com/a", "javascript:alert(1)",
             "//cdn.example.com/a", "/a", "https://other.example/a",
             "https://cdn.example.com.evil/a", "https://cdn.example.com@x/a",
             "https://cdn.example.com:444/a", "data:text/html,x"]


def test_links_refused_without_the_directive(env):
    start(env)
    alice = env.conn("alice")
    cid = direct(alice, "bob")["id"]
    aws = env.ws("alice")
    for c in (alice, aws):
        for url in ["https://cdn.example.com/a"] + BAD_LINKS:
            send_err(c, cid, [{"url": url}], "bad_request",
                     "attachments[0].url: links are not accepted, attach "
                     "an upload (upload_id)")


def test_links_to_listed_hosts(env):
    start(env, HOSTS)
    alice = env.conn("alice")
    cid = direct(alice, "bob")["id"]
    aws = env.ws("alice")
    good = [{"url": "https://cdn.example.com/a.png", "name": "a",
             "mime": "image/png", "size": 3},
            {"url": "HTTPS://files.example.ORG?x=1"}]
    for c in (alice, aws):
        m = send(c, cid, "links", attachments=good)
        assert m["attachments"] == [
            good[0], dict(good[1], name=None, mime=None, size=None)]
        for url in BAD_LINKS:
            send_err(c, cid, [{"url": url}], "bad_request",
                     "attachments[0].url must be https:// on a host of "
                     "chat_attachment_hosts")
    assert links(env.pg) == []


@pytest.mark.parametrize("hosts", ["https://cdn.example.com",
                                   "cdn.example.com:443", "cdn.example.com/",
                                   ".example.com", "a,b"])
def test_directive_takes_host_names(nginx, hosts):
    rc, out = nginx.check_config("location /api/chat/ { chat_api; }",
                                 http="chat_attachment_hosts ok.example %s;"
                                 % hosts)
    assert rc != 0, out
    assert '[emerg] invalid host "%s": expected a host name' % hosts in out


# --------------------------------------------------------------------------
# delete, edit, old messages

def test_delete_removes_the_links_edit_keeps_them(env):
    start(env)
    alice = env.conn("alice")
    img = up(alice, png(2, 2), "i.png")
    cid = direct(alice, "bob")["id"]
    m1 = send(alice, cid, "one", attachments=[{"upload_id": img["id"]}])
    m2 = send(alice, cid, "two", attachments=[{"upload_id": img["id"]}])
    assert links(env.pg) == [(m1["id"], img["id"], cid),
                             (m2["id"], img["id"], cid)]

    e = alice.ok("PATCH", "messages/%d" % m2["id"], obj={"body": "2"})
    assert e["message"]["attachments"] == [desc(img)]

    d = alice.ok("DELETE", "messages/%d" % m1["id"])
    assert d["message"]["attachments"] == []
    assert links(env.pg) == [(m2["id"], img["id"], cid)]

    # a retry of a stored message answers it, and links nothing again
    again = send(alice, cid, "two", m2["client_msg_id"], status=200,
                 attachments=[{"upload_id": img["id"]}])
    assert again["attachments"] == [desc(img)]
    assert links(env.pg) == [(m2["id"], img["id"], cid)]

    # its upload removed since (a user's data deleted): a retry is still
    # answered, and nothing links it again
    env.sql("DELETE FROM chat.uploads WHERE id = %s", (img["id"],))
    assert links(env.pg) == []
    again = send(alice, cid, "two", m2["client_msg_id"], status=200,
                 attachments=[{"upload_id": img["id"]}])
    assert again["id"] == m2["id"]
    assert links(env.pg) == []


def test_old_link_attachments_come_back_unchanged(env):
    start(env)
    alice = env.conn("alice")
    cid = direct(alice, "bob")["id"]
    m = send(alice, cid, "old")
    old = [{"url": "/files/a.txt", "name": "a.txt", "mime": "text/plain",
            "size": 5}, {"url": "https://x.example/b", "name": None,
                         "mime": None, "size": None}]
    env.sql("UPDATE chat.messages SET attachments = %s WHERE id = %s",
            (json.dumps(old), m["id"]))
    hist = alice.ok("GET", "conversations/%d/messages" % cid)["messages"]
    assert hist[0]["attachments"] == old
    bob = env.ws("bob")
    events, _ = sync(bob, {str(cid): 0})
    assert [e["message"]["attachments"] for e in events
            if e["type"] == "message.created"] == [old]


# --------------------------------------------------------------------------
# the SQL API: no way around the rule

def test_sql_callers_cannot_attach_links_or_others_uploads(env):
    start(env, HOSTS)
    alice, bob = env.conn("alice"), env.conn("bob")
    theirs = up(bob, png(2, 2), "b.png")
    cid = direct(alice, "bob")["id"]
    req = {"conversation_id": cid, "body": "x", "client_msg_id": "sql1",
           "attachments": [{"url": "https://cdn.example.com/a"}]}

    # the host application's role may call none of it
    with env.pg.connect() as conn:
        conn.execute("SET ROLE chat_host")
        for q, args in (
                ("SELECT chat.api_message_send(%s, %s::jsonb)",
                 ("alice", json.dumps(req))),
                ("SELECT * FROM chat.api_message_send_rows("
                 "%s, %s, %s, %s, %s::jsonb[], %s, %s)",
                 (["alice"], [cid], ["x"], ["c"],
                  [json.dumps(req["attachments"])], [None],
                  ["cdn.example.com"]))):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(q, args)

    # the owner's own call through the JSON API passes no hosts: refused
    r = env.sql("SELECT chat.api_message_send(%s, %s::jsonb)",
                ("alice", json.dumps(req)))[0][0]
    assert r == {"error": {"code": "bad_request", "message":
                           "attachments[0].url: links are not accepted, "
                           "attach an upload (upload_id)"}}
    # nor another's upload
    req["attachments"] = [{"upload_id": theirs["id"]}]
    r = env.sql("SELECT chat.api_message_send(%s, %s::jsonb)",
                ("alice", json.dumps(req)))[0][0]
    assert r == {"error": {"code": "not_found", "message":
                           "attachments[0]: upload not found"}}
    # the batch function nginx calls, without hosts: a plain refusal
    rows = env.sql("SELECT code, message FROM chat.api_message_send_rows("
                   "%s, %s, %s, %s, %s::jsonb[], %s)",
                   (["alice"], [cid], ["x"], ["c"],
                    [json.dumps([{"url": "https://cdn.example.com/a",
                                  "name": None, "mime": None,
                                  "size": None}])], [None]))
    assert rows == [("bad_request", "the item is invalid")]
    assert env.sql("SELECT count(*) FROM chat.messages")[0][0] == 0
    assert links(env.pg) == []


def test_a_pipelined_batch_mixing_plain_sends_and_attachments(env):
    """Sends pipelined on one WebSocket go to PostgreSQL together: each item
    is answered with its own attachments or error, and the rows of
    chat.message_uploads are those of the stored messages."""
    start(env)
    alice, bob = env.conn("alice"), env.conn("bob")
    img, th = up(alice, png(6, 6), "i.png"), up(alice, png(2, 2), "t.png")
    pdf = up(alice, PDF, "d.pdf")
    theirs = up(bob, png(3, 3), "b.png")
    cid = direct(alice, "bob")["id"]
    aws = env.ws("alice")
    atts = [None,
            [{"upload_id": img["id"], "thumbnail_id": th["id"]}],
            [{"upload_id": theirs["id"]}],
            None,
            [{"upload_id": pdf["id"]}, {"upload_id": img["id"]}],
            [{"upload_id": pdf["id"], "thumbnail_id": th["id"]}],
            [{"upload_id": img["id"], "thumbnail_id": img["id"]}]]
    ids = []
    for i, a in enumerate(atts):
        ids.append("p%d" % i)
        req = {"type": "message.send", "id": ids[-1],
               "conversation_id": cid, "body": "m%d" % i,
               "client_msg_id": "k%d" % i}
        if a is not None:
            req["attachments"] = a
        aws.send_json(req)
    replies = {}
    while len(replies) < len(ids):
        f = aws.recv_json()
        if f.get("id") in ids:
            replies[f["id"]] = f
    got = [replies[i] for i in ids]
    assert got[2]["error"] == {"code": "not_found", "message":
                               "attachments[0]: upload not found"}
    assert got[5]["error"] == {"code": "bad_request", "message":
                               "attachments[0]: only an image has a "
                               "thumbnail"}
    ok = {i: got[i]["data"]["message"] for i in (0, 1, 3, 4, 6)}
    assert [ok[i]["seq"] for i in (0, 1, 3, 4, 6)] == [1, 2, 3, 4, 5]
    assert ok[0]["attachments"] == [] and ok[3]["attachments"] == []
    assert ok[1]["attachments"] == [desc(img, th)]
    assert ok[4]["attachments"] == [desc(pdf), desc(img)]
    assert ok[6]["attachments"] == [desc(img, img)]
    assert links(env.pg) == sorted(
        [(ok[1]["id"], img["id"], cid), (ok[1]["id"], th["id"], cid),
         (ok[4]["id"], img["id"], cid), (ok[4]["id"], pdf["id"], cid),
         (ok[6]["id"], img["id"], cid)])


def test_an_upload_deleted_meanwhile_fails_only_its_message(env):
    """The sweep locks an upload, then deletes it.  A send attaching it
    meanwhile waits for that lock and then finds no upload: not_found for
    that message only.  It used to go on, and its link's foreign key
    check then failed the whole batch (download review, R16F-12)."""
    start(env)
    alice = env.conn("alice")
    doomed, kept = up(alice, PDF, "d.pdf"), up(alice, png(2, 2), "k.png")
    cid = direct(alice, "bob")["id"]
    aws = env.ws("alice")
    atts = [None, [{"upload_id": doomed["id"]}], [{"upload_id": kept["id"]}]]
    with env.pg.connect(autocommit=False) as db:
        # as the sweep does: lock, then delete, in one transaction
        db.execute("SELECT id FROM chat.uploads WHERE id = %s FOR UPDATE",
                   (doomed["id"],))
        db.execute("DELETE FROM chat.uploads WHERE id = %s", (doomed["id"],))
        for i, a in enumerate(atts):
            req = {"type": "message.send", "id": "s%d" % i,
                   "conversation_id": cid, "body": "m%d" % i,
                   "client_msg_id": "r%d" % i}
            if a is not None:
                req["attachments"] = a
            aws.send_json(req)
        # the batch waits on the lock (a condition, not a time)
        for _ in range(400):
            if env.pg.query("SELECT count(*) FROM pg_stat_activity "
                            "WHERE wait_event_type = 'Lock'")[0][0]:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the send never waited on the upload's lock")
        db.commit()
    replies = {}
    while len(replies) < 3:
        f = aws.recv_json()
        if f.get("id") in ("s0", "s1", "s2"):
            replies[f["id"]] = f
    assert replies["s1"]["error"] == {
        "code": "not_found", "message": "attachments[0]: upload not found"}
    assert replies["s0"]["data"]["message"]["attachments"] == []
    got = replies["s2"]["data"]["message"]
    assert got["attachments"] == [desc(kept)]
    assert links(env.pg) == [(got["id"], kept["id"], cid)]
