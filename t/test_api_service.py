"""The service identity over REST: a token with chat_service_claim acts for
users (Chat-Act-As) and posts system messages; nobody else may.  Real
nginx, real PostgreSQL, real WebSocket clients for the live delivery.
"""

import pytest

from chatlib import http, make_token, ws_connect


LOCATIONS = """
    location /api/chat/ { chat_api; }
    location = /chat/ws { chat_websocket; }
"""


@pytest.fixture
def ng(nginx, postgres):
    postgres.reset()
    n = nginx(LOCATIONS,
              http='chat_postgres "%s" pool=2;\n'
                   'chat_service_claim scope chat:service;' % postgres.dsn)
    n.pg = postgres
    return n


def service(n, **claims):
    claims.setdefault("scope", "chat:service")
    return make_token(n.key, "svc:shop", **claims)


def api(n, method, path, token, body=None, act_as=None, headers=None):
    hdrs = dict(headers or {})
    if act_as is not None:
        hdrs["Chat-Act-As"] = act_as
    return http(n, method, "/api/chat/" + path, token=token,
                json_body=body, headers=hdrs)


def test_service_acts_for_a_user(ng):
    """The seeds' "contact the seller about ad 123": the marketplace's
    backend opens the conversation for the buyer; both see it live."""
    with ws_connect(ng, make_token(ng.key, "seller")) as seller:
        r = api(ng, "POST", "conversations", service(ng),
                {"kind": "direct", "user_id": "seller", "ref": "ad:123"},
                act_as="buyer")
        assert r.status == 201, r
        conv = r.json()["conversation"]
        assert conv["ref"] == "ad:123"
        assert sorted(m["user_id"] for m in conv["members"]) == \
            ["buyer", "seller"]
        ev = seller.next_event("conversation.created", timeout=10)
        assert ev["conversation"]["id"] == conv["id"]
        # acting for the buyer, it sends as the buyer
        r = api(ng, "POST", "conversations/%d/messages" % conv["id"],
                service(ng), {"body": "Is it still for sale?",
                              "client_msg_id": "q1"}, act_as="buyer")
        assert r.status == 201, r
        assert r.json()["message"]["sender_id"] == "buyer"
        ev = seller.next_event("message.created", timeout=10)
        assert ev["message"] == r.json()["message"]
    # with the buyer's rights only: not in another's conversation
    other = api(ng, "POST", "conversations", service(ng),
                {"kind": "group", "title": "x"}, act_as="carol").json()
    r = api(ng, "GET", "conversations/%d" % other["conversation"]["id"],
            service(ng), act_as="buyer")
    assert r.status == 404


def test_service_builds_a_group(ng):
    """A mentorship group: created for its mentor, then the mentees and an
    admin added, all through the service."""
    r = api(ng, "POST", "conversations", service(ng),
            {"kind": "group", "title": "Mentorship", "members": ["m1", "m2"]},
            act_as="mentor")
    cid = r.json()["conversation"]["id"]
    r = api(ng, "POST", "conversations/%d/members" % cid, service(ng),
            {"user_id": "coach", "role": "admin"}, act_as="mentor")
    assert r.status == 201, r
    roles = {m["user_id"]: m["role"]
             for m in r.json()["conversation"]["members"]}
    assert roles == {"mentor": "owner", "m1": "member", "m2": "member",
                     "coach": "admin"}


def test_system_messages(ng):
    cid = api(ng, "POST", "conversations", service(ng),
              {"kind": "group", "title": "g", "members": ["bob"]},
              act_as="alice").json()["conversation"]["id"]
    with ws_connect(ng, make_token(ng.key, "bob")) as bob:
        r = api(ng, "POST", "conversations/%d/messages" % cid, service(ng),
                {"system": True, "body": "Order 7 shipped",
                 "client_msg_id": "o7"})
        assert r.status == 201, r
        m = r.json()["message"]
        assert (m["sender_id"], m["system"], m["seq"]) == \
            ("svc:shop", True, 1)
        assert bob.next_event("message.created", timeout=10)["message"] \
            == m
        # again: the same message, nothing delivered twice
        again = api(ng, "POST", "conversations/%d/messages" % cid,
                    service(ng), {"system": True, "body": "Order 7 shipped",
                                  "client_msg_id": "o7"})
        assert (again.status, again.json()["message"]) == (200, m)
        hist = bob.ok("messages.history", conversation_id=cid)
        assert hist["messages"] == [m]
    # also while acting for somebody: still from the service
    r = api(ng, "POST", "conversations/%d/messages" % cid, service(ng),
            {"system": True, "body": "x"}, act_as="bob")
    assert r.json()["message"]["sender_id"] == "svc:shop"
    # a missing conversation
    r = api(ng, "POST", "conversations/999/messages", service(ng),
            {"system": True, "body": "x"})
    assert (r.status, r.json()["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize("claims", [
    {},                                     # no claim
    {"scope": "chat:user"},                 # another value
    {"scope": ["read", "chat:user"]},
    {"scope": 5},
    {"scopes": "chat:service"},             # another claim
])
def test_only_services(ng, claims):
    cid = api(ng, "POST", "conversations", service(ng),
              {"kind": "group", "title": "g"},
              act_as="alice").json()["conversation"]["id"]
    token = make_token(ng.key, "alice", **claims)
    r = api(ng, "GET", "users/me", token, act_as="bob")
    assert (r.status, r.json()) == (403, {"error": {
        "code": "forbidden", "message": "only a service may act for users"}})
    r = api(ng, "POST", "conversations/%d/messages" % cid, token,
            {"system": True, "body": "x"})
    assert (r.status, r.json()) == (403, {"error": {
        "code": "forbidden",
        "message": "only a service may post system messages"}})
    assert ng.pg.query("SELECT count(*) FROM chat.messages") == [(0,)]


def test_a_claim_array_holding_the_value(ng):
    token = service(ng, scope=["read", "chat:service"])
    r = api(ng, "GET", "users/me", token, act_as="bob")
    assert (r.status, r.json()) == (200, {"user": {"id": "bob",
                                                    "name": "bob"}})


@pytest.mark.parametrize("value", ["", "a\tb", "x" * 129])
def test_bad_act_as(ng, value):
    r = api(ng, "GET", "users/me", service(ng), act_as=value)
    assert (r.status, r.json()) == (400, {"error": {
        "code": "bad_request", "message": "Chat-Act-As must be one user id"}})


def test_system_must_be_a_boolean(ng):
    r = api(ng, "POST", "conversations/1/messages", service(ng),
            {"system": "yes", "body": "x"})
    assert (r.status, r.json()) == (400, {"error": {
        "code": "bad_request", "message": "system must be a boolean"}})


def test_without_the_directive_nobody_is_a_service(nginx, postgres):
    postgres.reset()
    n = nginx(LOCATIONS, http='chat_postgres "%s" pool=2;' % postgres.dsn)
    token = make_token(n.key, "svc", scope="chat:service")
    r = api(n, "GET", "users/me", token, act_as="bob")
    assert r.status == 403
    assert api(n, "GET", "users/me", token).json() == \
        {"user": {"id": "svc", "name": "svc"}}


def test_configuration(nginx):
    rc, out = nginx.check_config(
        "location / { chat_api; }",
        http="chat_service_claim scope;")
    assert rc != 0 and "invalid number of arguments" in out
    rc, out = nginx.check_config(
        "location / { chat_api; }",
        http="chat_service_claim scope a; chat_service_claim scope b;")
    assert rc != 0 and "is duplicate" in out
    rc, out = nginx.check_config(
        "location / { chat_api; }", http='chat_service_claim "" a;')
    assert rc != 0 and "needs a claim name and a value" in out
