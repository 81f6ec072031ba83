"""Authentication end to end through a real nginx (docs/protocol.md,
"Authentication"): where the token comes from, how it is verified, the
identity from an nginx variable, the REST route users/me, auth.refresh
and the expiry of a connection's token, and the development token
endpoint."""

import json
import os
import re
import time
import urllib.parse

import pytest

import chatlib
from chatlib import RawWS, b64url, make_token, tamper

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                    "jwt")
WS = "location /chat/ws { chat_websocket; }"
API = "location /api/chat/ { chat_api; }"
DEV = "location = /chat/dev/token { chat_dev_token; }"

NO_TOKEN = ("no token: send Authorization: Bearer, the access_token "
            "argument or the token cookie")
DEV_WARN = re.compile(r'\[warn\] .*"chat_dev_token" mints a token for '
                      r'anyone who asks')


def pem(name):
    return os.path.join(DATA, name)


def read(name):
    with open(pem(name), "rb") as f:
        return f.read()


def rfc3339(sec):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(sec))


# --------------------------------------------------------------------------
# helpers

def upgrade(n, token=None, path="/chat/ws", **kw):
    return chatlib.http_upgrade(n.port, path, token=token, **kw)


def welcome(n, token=None, path="/chat/ws", **kw):
    """Upgrades and returns the welcome frame (then closes)."""
    r = upgrade(n, token, path, **kw)
    try:
        assert r.status == 101, (r.status, r.body)
        frame = RawWS(r.sock, r.rest).recv_json()
        assert frame["type"] == "welcome", frame
        return frame
    finally:
        if r.sock is not None:
            r.sock.close()


def user_of(n, token=None, path="/chat/ws", **kw):
    return welcome(n, token, path, **kw)["user"]


def assert_401(r, message):
    """status, headers, body = r: a 401 refusal with the JSON body."""
    status, headers, body = r
    assert status == 401, (status, body)
    assert headers.get("www-authenticate") == "Bearer"
    assert headers.get("content-type") == "application/json"
    assert json.loads(body) == {"error": {"code": "unauthorized",
                                          "message": message}}
    assert "upgrade" not in headers
    assert "sec-websocket-accept" not in headers


def refused(n, token=None, path="/chat/ws", message=None, **kw):
    r = upgrade(n, token, path, **kw)
    if r.sock is not None:
        r.sock.close()
    assert_401(r, message)


def connect(n, token, path="/chat/ws"):
    """A RawWS after the welcome (stored in .welcome)."""
    ws = RawWS.connect(n.port, path, token=token)
    ws.welcome = ws.recv_json()
    assert ws.welcome["type"] == "welcome"
    return ws


def request(ws, type_, rid, **fields):
    """Sends a request and returns the next frame, which must be its
    reply."""
    ws.send_json(dict(fields, type=type_, id=rid))
    reply = ws.recv_json()
    assert reply.get("id") == rid, reply
    return reply


def token_of_length(key, sub, length, **kw):
    """A valid HS256 token exactly length bytes long (padded with a
    claim, and a header field when base64url cannot hit the length)."""
    base = len(make_token(key, sub, **kw))
    for kid in ("", "k", "kk"):
        for pad in range(max(0, (length - base) * 3 // 4 - 30), length):
            t = make_token(key, sub, header={"kid": kid} if kid else None,
                           pad="p" * pad, **kw)
            if len(t) == length:
                return t
            if len(t) > length:
                break
    raise AssertionError("no token of %d bytes" % length)


@pytest.fixture
def ws(nginx):
    return nginx(WS)


# --------------------------------------------------------------------------
# where the token comes from

def test_bearer(ws):
    assert user_of(ws, make_token(ws.key, "alice", name="Alice")) == {
        "id": "alice", "name": "Alice"}


@pytest.mark.parametrize("value", ["bearer %s", "BEARER %s",
                                   "Bearer   %s"])
def test_bearer_case_and_spaces(ws, value):
    tok = make_token(ws.key, "alice")
    u = user_of(ws, headers={"authorization": value % tok})
    assert u["id"] == "alice"


def test_access_token_argument(ws):
    tok = make_token(ws.key, "alice")
    assert user_of(ws, tok, token_in="query")["id"] == "alice"
    assert user_of(ws, path="/chat/ws?a=1&access_token=%s&b=2" % tok)[
        "id"] == "alice"


def test_no_token(ws):
    refused(ws, message=NO_TOKEN)
    refused(ws, path="/chat/ws?access_token=", message=NO_TOKEN)
    refused(ws, headers={"Authorization": "Bearer "}, message=NO_TOKEN)
    refused(ws, headers={"Authorization": "Bearer"}, message=NO_TOKEN)


def test_other_scheme_is_no_token(ws):
    tok = make_token(ws.key, "alice")
    refused(ws, headers={"Authorization": "Basic YWxpY2U6cHc="},
            message=NO_TOKEN)
    refused(ws, headers={"Authorization": tok}, message=NO_TOKEN)
    # a scheme that is not Bearer leaves room for the argument
    assert user_of(ws, path="/chat/ws?access_token=" + tok,
                   headers={"Authorization": "Basic YWxpY2U6cHc="})[
        "id"] == "alice"


def test_cookie_not_configured(ws):
    tok = make_token(ws.key, "alice")
    refused(ws, headers={"Cookie": "chat_token=" + tok}, message=NO_TOKEN)


COOKIE = "chat_token_cookie chat_token;"


@pytest.mark.parametrize("cookie", [
    "chat_token={t}",
    "a=1; chat_token={t}; b=2",
    "a=1;chat_token={t}",
    # two Cookie lines (http_upgrade writes "Cookie: <value>\r\n")
    "a=1\r\nCookie: chat_token={t}",
], ids=["alone", "among-others", "no-space", "second-line"])
def test_cookie(nginx, cookie):
    n = nginx(WS, http=COOKIE)
    tok = make_token(n.key, "carol")
    refused(n, message=NO_TOKEN)
    # a browser's request: it says where it comes from (I7)
    origin = "http://127.0.0.1:%d" % n.port
    assert user_of(n, headers={"Cookie": cookie.format(t=tok),
                               "Origin": origin})["id"] == "carol"


def test_cookie_other_names(nginx):
    n = nginx(WS, http=COOKIE)
    tok = make_token(n.key, "carol")
    # (names are matched as nginx matches $cookie_: without regard to
    # case, so Chat_Token would be taken; that is nginx's, not tested)
    for cookie in ("xchat_token=%s", "chat_tokens=%s", "a=chat_token=%s",
                   "token=%s"):
        refused(n, headers={"Cookie": cookie % tok}, message=NO_TOKEN)


def test_precedence(nginx):
    n = nginx(WS, http=COOKIE)
    good = make_token(n.key, "alice")
    bad = tamper(make_token(n.key, "mallory"))
    # the Bearer token is used even when the argument would do
    refused(n, bad, path="/chat/ws?access_token=" + good,
            message="bad signature")
    assert user_of(n, good, path="/chat/ws?access_token=" + bad)[
        "id"] == "alice"
    # then the argument, then the cookie
    refused(n, path="/chat/ws?access_token=" + bad,
            headers={"Cookie": "chat_token=" + good},
            message="bad signature")
    assert user_of(n, path="/chat/ws?access_token=" + good,
                   headers={"Cookie": "chat_token=" + bad})["id"] == "alice"
    other = make_token(n.key, "bob")
    assert user_of(n, other, path="/chat/ws?access_token=" + good,
                   headers={"Cookie": "chat_token=" + good})["id"] == "bob"


# --------------------------------------------------------------------------
# verification: time claims

def test_expired_beyond_leeway(ws):
    refused(ws, make_token(ws.key, "alice", exp_in=-40),
            message="token expired")
    refused(ws, make_token(ws.key, "alice", exp_in=-3600),
            message="token expired")


def test_expired_within_leeway(ws):
    assert user_of(ws, make_token(ws.key, "alice", exp_in=-20))["id"] == \
        "alice"


def test_leeway_zero(nginx):
    n = nginx(WS, http="chat_jwt_leeway 0;")
    refused(n, make_token(n.key, "alice", exp_in=-5),
            message="token expired")
    assert user_of(n, make_token(n.key, "alice", exp_in=5))["id"] == "alice"


def test_leeway_location(nginx):
    n = nginx(WS + "\nlocation /strict { chat_websocket; chat_jwt_leeway 0; }")
    tok = make_token(n.key, "alice", exp_in=-5)
    assert user_of(n, tok)["id"] == "alice"
    refused(n, tok, path="/strict", message="token expired")


def test_nbf(ws):
    now = int(time.time())
    refused(ws, make_token(ws.key, "alice", nbf=now + 120),
            message="token not yet valid")
    # within the leeway
    assert user_of(ws, make_token(ws.key, "alice", nbf=now + 10))["id"] == \
        "alice"
    assert user_of(ws, make_token(ws.key, "alice", nbf=now - 10))["id"] == \
        "alice"


@pytest.mark.parametrize("claims,message", [
    (dict(exp_in=None, exp="tomorrow"), "invalid exp claim"),
    (dict(nbf="now"), "invalid nbf claim"),
])
def test_time_claims_invalid(ws, claims, message):
    refused(ws, make_token(ws.key, "alice", **claims), message=message)


def test_require_exp_default(ws):
    refused(ws, make_token(ws.key, "alice", exp_in=None),
            message="token has no exp")


def test_require_exp_off(nginx):
    n = nginx(WS, http="chat_jwt_require_exp off;")
    assert user_of(n, make_token(n.key, "alice", exp_in=None))["id"] == \
        "alice"
    # an exp that is there is still checked
    refused(n, make_token(n.key, "alice", exp_in=-3600),
            message="token expired")


# --------------------------------------------------------------------------
# verification: signature and algorithm

def test_wrong_key(ws):
    refused(ws, make_token(os.urandom(32), "alice"), message="bad signature")


def test_tampered_signature(ws):
    refused(ws, tamper(make_token(ws.key, "alice")), message="bad signature")


def test_tampered_payload(ws):
    tok = make_token(ws.key, "alice")
    h, p, s = tok.split(".")
    claims = json.loads(chatlib.b64url_decode(p))
    claims["sub"] = "admin"
    forged = "%s.%s.%s" % (h, b64url(json.dumps(claims)), s)
    refused(ws, forged, message="bad signature")


def test_tampered_header(ws):
    tok = make_token(ws.key, "alice")
    h, p, s = tok.split(".")
    forged = "%s.%s.%s" % (b64url('{"alg":"HS256"}'), p, s)
    refused(ws, forged, message="bad signature")


def test_alg_none_signed(ws):
    # a none token carrying a signature anyway
    tok = make_token(ws.key, "alice", header={"alg": "none"})
    h, p, _ = tok.split(".")
    sig = b64url(chatlib.sign("HS256", ws.key, ("%s.%s" % (h, p)).encode()))
    refused(ws, "%s.%s.%s" % (h, p, sig), message="algorithm not allowed")
    refused(ws, "%s.%s.%s" % (h, p, b64url("x")),
            message="algorithm not allowed")


def test_alg_none_unsigned(ws):
    # no signature at all: refused on the token's form, before its alg
    tok = make_token(ws.key, "alice", alg="none")
    assert tok.endswith(".")
    refused(ws, tok, message="missing signature")


@pytest.mark.parametrize("alg", ["None", "NONE", "hs256", "HS384", "HS512",
                                 "RS256", "ES256", "PS256"])
def test_alg_other(ws, alg):
    # signed with the right key and HS256, only the header's alg differs
    tok = make_token(ws.key, "alice")
    h, p, _ = tok.split(".")
    h = b64url(json.dumps({"alg": alg, "typ": "JWT"}))
    sig = b64url(chatlib.sign("HS256", ws.key, ("%s.%s" % (h, p)).encode()))
    refused(ws, "%s.%s.%s" % (h, p, sig), message="algorithm not allowed")


def test_hs384_against_hs256_key(ws):
    refused(ws, make_token(ws.key, "alice", alg="HS384"),
            message="algorithm not allowed")


def test_alg_missing_or_not_string(ws):
    for head in ({"typ": "JWT"}, {"alg": 256}, {"alg": None}):
        h = b64url(json.dumps(head))
        p = make_token(ws.key, "alice").split(".")[1]
        sig = b64url(chatlib.sign("HS256", ws.key,
                                  ("%s.%s" % (h, p)).encode()))
        msg = "malformed token" if "alg" not in head else \
            "algorithm not allowed"
        refused(ws, "%s.%s.%s" % (h, p, sig), message=msg)


def test_crit_refused_kid_ignored(ws):
    refused(ws, make_token(ws.key, "alice", header={"crit": ["exp"]}),
            message="unsupported critical header")
    # kid, jku, x5u, jwk never choose a key: the configured one verifies
    tok = make_token(ws.key, "alice", header={
        "kid": "../../etc/passwd", "jku": "http://evil.example/k",
        "x5u": "http://evil.example/c", "jwk": {"kty": "oct", "k": "AA"}})
    assert user_of(ws, tok)["id"] == "alice"


@pytest.mark.parametrize("text", [
    "abc", "a.b", "a.b.c.d", "a.b.c.d.e", ".{p}.{s}", "{h}..{s}",
    "{h}.{p}.{s}.", "{h}.{p}.{s}=", "{h}=.{p}.{s}", "{h}.{p}!.{s}",
    '{{"payload":"{p}","signatures":[]}}',
])
def test_malformed(ws, text):
    h, p, s = make_token(ws.key, "alice").split(".")
    refused(ws, headers={"Authorization": "Bearer " +
                         text.format(h=h, p=p, s=s)},
            message="malformed token")


def test_payload_not_object(ws):
    h = b64url('{"alg":"HS256","typ":"JWT"}')
    for payload in ('"alice"', "[1]", "{", '{"sub":"a","sub":"b"}'):
        p = b64url(payload)
        sig = b64url(chatlib.sign("HS256", ws.key,
                                  ("%s.%s" % (h, p)).encode()))
        refused(ws, "%s.%s.%s" % (h, p, sig), message="malformed token")


# --------------------------------------------------------------------------
# verification: RS256 and ES256

KEYS = """
location /rs { chat_websocket; chat_jwt_key rs256 file=%s; }
location /rscrt { chat_websocket; chat_jwt_key rs256 file=%s; }
location /es { chat_websocket; chat_jwt_key es256 file=%s; }
location /escrt { chat_websocket; chat_jwt_key es256 file=%s; }
""" % (pem("rsa2048.pub.pem"), pem("rsa2048.crt.pem"), pem("ec256.pub.pem"),
       pem("ec256.crt.pem"))


@pytest.fixture
def keys(nginx):
    return nginx(KEYS)


@pytest.mark.parametrize("path", ["/rs", "/rscrt"])
def test_rs256(keys, path):
    tok = make_token(read("rsa2048.key.pem"), "alice", alg="RS256",
                     name="Alice")
    assert user_of(keys, tok, path) == {"id": "alice", "name": "Alice"}
    refused(keys, tamper(tok), path, message="bad signature")
    # another RSA key
    refused(keys, make_token(read("rsa1024.key.pem"), "alice", alg="RS256"),
            path, message="bad signature")
    refused(keys, make_token(read("rsa2048.key.pem"), "alice", alg="RS384"),
            path, message="algorithm not allowed")
    refused(keys, make_token(read("rsa2048.key.pem"), "alice", alg="PS256"),
            path, message="algorithm not allowed")


def test_rs256_key_confusion(keys):
    # HS256 with the public key as the HMAC secret: the classic attack
    for name in ("rsa2048.pub.pem", "rsa2048.crt.pem"):
        tok = make_token(read(name), "alice", alg="HS256")
        refused(keys, tok, "/rs", message="algorithm not allowed")
        refused(keys, tok, "/rscrt", message="algorithm not allowed")


def test_hs256_refused_on_rs256_even_with_its_alg(keys):
    # the same HMAC token relabelled RS256: the signature is no RSA one
    tok = make_token(read("rsa2048.pub.pem"), "alice", alg="HS256")
    h, p, s = tok.split(".")
    refused(keys, "%s.%s.%s" % (b64url('{"alg":"RS256","typ":"JWT"}'), p, s),
            "/rs", message="bad signature")


@pytest.mark.parametrize("path", ["/es", "/escrt"])
def test_es256(keys, path):
    key = read("ec256.key.pem")
    tok = make_token(key, "erin", alg="ES256")
    assert len(chatlib.token_parts(tok)[2]) == 64
    assert user_of(keys, tok, path)["id"] == "erin"
    refused(keys, tamper(tok), path, message="bad signature")
    refused(keys, make_token(key, "erin", alg="HS256"), path,
            message="algorithm not allowed")
    refused(keys, make_token(read("ec384.key.pem"), "erin", alg="ES384"),
            path, message="algorithm not allowed")


def test_es256_der_signature_refused(keys):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(read("ec256.key.pem"), None)
    tok = make_token(key, "erin", alg="ES256")
    h, p, _ = tok.split(".")
    der = key.sign(("%s.%s" % (h, p)).encode(), ec.ECDSA(hashes.SHA256()))
    assert len(der) != 64 and der[0] == 0x30
    refused(keys, "%s.%s.%s" % (h, p, b64url(der)), "/es",
            message="bad signature")
    # the raw form of the very same signature is accepted
    assert user_of(keys, tok, "/es")["id"] == "erin"


def test_es256_other_key(keys):
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1())
    refused(keys, make_token(other, "erin", alg="ES256"), "/es",
            message="bad signature")


# --------------------------------------------------------------------------
# verification: sub, iss, aud, size

@pytest.mark.parametrize("sub,message", [
    (None, "token has no sub"),
    ("", "token has no sub"),
    (42, "invalid sub claim"),
    (["alice"], "invalid sub claim"),
    ("al\x01ice", "invalid sub claim"),
    ("al\x7fice", "invalid sub claim"),
    ("a" * 129, "sub claim too long"),
])
def test_sub_refused(ws, sub, message):
    refused(ws, make_token(ws.key, sub), message=message)


def test_sub_longest(ws):
    assert user_of(ws, make_token(ws.key, "a" * 128))["id"] == "a" * 128


def test_sub_unicode(ws):
    assert user_of(ws, make_token(ws.key, "j\u00fcrgen@example"))[
        "id"] == "j\u00fcrgen@example"


ISS_AUD = ("chat_jwt_issuer https://issuer.example;\n"
           "    chat_jwt_audience chat-api;")


@pytest.mark.parametrize("claims,message", [
    (dict(iss="https://issuer.example", aud="chat-api"), None),
    (dict(iss="https://issuer.example", aud=["other", "chat-api"]), None),
    (dict(iss="https://issuer.example", aud=["chat-api"]), None),
    (dict(aud="chat-api"), "wrong issuer"),
    (dict(iss="https://evil.example", aud="chat-api"), "wrong issuer"),
    (dict(iss="https://ISSUER.example", aud="chat-api"), "wrong issuer"),
    (dict(iss=["https://issuer.example"], aud="chat-api"), "wrong issuer"),
    (dict(iss="https://issuer.example"), "wrong audience"),
    (dict(iss="https://issuer.example", aud="chat"), "wrong audience"),
    (dict(iss="https://issuer.example", aud="chat-api2"), "wrong audience"),
    (dict(iss="https://issuer.example", aud=[]), "wrong audience"),
    (dict(iss="https://issuer.example", aud=["a", "b"]), "wrong audience"),
    (dict(iss="https://issuer.example", aud=[["chat-api"]]),
     "wrong audience"),
])
def test_issuer_audience(nginx, claims, message):
    n = nginx(WS, http=ISS_AUD)
    tok = make_token(n.key, "alice", **claims)
    if message is None:
        assert user_of(n, tok)["id"] == "alice"
    else:
        refused(n, tok, message=message)


def test_issuer_audience_not_configured(ws):
    # unchecked when not configured
    tok = make_token(ws.key, "alice", iss="anyone", aud=["x"])
    assert user_of(ws, tok)["id"] == "alice"


def test_token_size_limit(nginx):
    n = nginx(WS, http="large_client_header_buffers 4 32k;")
    ok = token_of_length(n.key, "alice", 8192)
    assert user_of(n, ok)["id"] == "alice"
    refused(n, token_of_length(n.key, "alice", 8193),
            message="token too long")
    refused(n, make_token(n.key, "alice", pad="p" * 20000),
            message="token too long")
    # in the argument too
    refused(n, token_of_length(n.key, "alice", 8193), token_in="query",
            message="token too long")


# --------------------------------------------------------------------------
# the user in the welcome

def test_name_and_avatar(ws):
    tok = make_token(ws.key, "alice", name="Alice B\u00e9",
                     avatar="https://img.example/a.png")
    w = welcome(ws, tok)
    assert w["user"] == {"id": "alice", "name": "Alice B\u00e9",
                         "avatar": "https://img.example/a.png"}
    # name falls back to the id; no avatar when unknown
    assert user_of(ws, make_token(ws.key, "bob")) == {"id": "bob",
                                                      "name": "bob"}
    assert user_of(ws, make_token(ws.key, "bob", name="")) == {
        "id": "bob", "name": "bob"}


@pytest.mark.parametrize("claims,message", [
    (dict(name=7), "invalid name claim"),
    (dict(avatar=["x"]), "invalid avatar claim"),
])
def test_name_avatar_invalid(ws, claims, message):
    refused(ws, make_token(ws.key, "alice", **claims), message=message)


# --------------------------------------------------------------------------
# chat_identity: the user from an nginx variable

IDENT = ("location /chat/ws { chat_websocket; "
         "chat_identity $http_x_user name=$http_x_name; }\n"
         "location /api/chat/ { chat_api; "
         "chat_identity $http_x_user name=$http_x_name; }")


def test_identity_variable(nginx):
    n = nginx(IDENT)
    assert user_of(n, headers={"X-User": "carol", "X-Name": "Carol C"}) == {
        "id": "carol", "name": "Carol C"}
    assert user_of(n, headers={"X-User": "dave"}) == {"id": "dave",
                                                      "name": "dave"}
    r = chatlib.http(n, "GET", "/api/chat/users/me",
                     headers={"X-User": "carol", "X-Name": "Carol C"})
    assert (r.status, r.json()) == (200, {"user": {"id": "carol",
                                                   "name": "Carol C"}})


def test_identity_empty(nginx):
    n = nginx(IDENT)
    refused(n, message="not authenticated")
    refused(n, headers={"X-User": ""}, message="not authenticated")
    refused(n, headers={"X-User": "x" * 129}, message="user id is too long")
    assert user_of(n, headers={"X-User": "x" * 128})["id"] == "x" * 128
    r = chatlib.http(n, "GET", "/api/chat/users/me")
    assert r.status == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {"error": {"code": "unauthorized",
                                  "message": "not authenticated"}}


def answer_or_none(n, **kw):
    try:
        return upgrade(n, **kw)
    except chatlib.ConnectionClosed:
        return None


def test_identity_not_utf8(nginx):
    # http_upgrade sends header values as latin-1: "\xff" is the byte 0xff
    n = nginx(IDENT)
    r = answer_or_none(n, headers={"X-User": "caf\xe9"})
    assert r is not None, "connection closed without an HTTP answer"
    if r.sock is not None:
        r.sock.close()
    status, headers, body = r
    assert status == 401
    assert headers.get("www-authenticate") == "Bearer"
    assert json.loads(body)["error"]["code"] == "unauthorized"


def test_identity_name_not_utf8(nginx):
    # either refused or upgraded with a usable welcome; not dropped
    n = nginx(IDENT)
    r = answer_or_none(n, headers={"X-User": "carol", "X-Name": "\xff\xfe"})
    assert r is not None, "connection closed without an HTTP answer"
    status, headers, body = r
    if status == 101:
        try:
            w = RawWS(r.sock, r.rest).recv_json()
        finally:
            r.sock.close()
        assert w["type"] == "welcome" and w["user"]["id"] == "carol"
    else:
        assert status == 401
        assert json.loads(body)["error"]["code"] == "unauthorized"


def test_identity_not_utf8_api(nginx):
    n = nginx(IDENT)
    r = chatlib.http(n, "GET", "/api/chat/users/me",
                     headers={"X-User": "caf\xe9"})
    assert r.headers["content-type"] == "application/json", r
    assert r.status == 401, r
    assert r.json()["error"]["code"] == "unauthorized"


def test_identity_reads_no_token(nginx):
    n = nginx(IDENT)
    tok = make_token(n.key, "alice")
    refused(n, tok, message="not authenticated")
    refused(n, tok, token_in="query", message="not authenticated")
    # the variable wins over a token for someone else
    assert user_of(n, tok, headers={"X-User": "bob"})["id"] == "bob"
    assert user_of(n, tamper(tok), headers={"X-User": "bob"})["id"] == "bob"


MAP = """map $http_x_api_key $api_user {
        default "";
        secret-key alice;
        other-key bob;
    }"""


def test_identity_map(nginx):
    n = nginx("location /chat/ws { chat_websocket; chat_identity $api_user; }",
              http=MAP)
    assert user_of(n, headers={"X-Api-Key": "secret-key"}) == {
        "id": "alice", "name": "alice"}
    assert user_of(n, headers={"X-Api-Key": "other-key"})["id"] == "bob"
    # (map matches strings without regard to case: SECRET-KEY is nginx's)
    for key in ("wrong", "secret-key2", "secret", ""):
        refused(n, headers={"X-Api-Key": key}, message="not authenticated")
    refused(n, message="not authenticated")


def test_identity_refresh_without_key(nginx):
    # no chat_jwt_key at all ("chat_jwt_key" in the http text keeps the
    # fixture from adding one): there is no token to refresh
    n = nginx(IDENT, http="# no chat_jwt_key")
    ws = RawWS.connect(n.port, headers={"X-User": "carol"})
    try:
        assert ws.recv_json()["user"]["id"] == "carol"
        assert request(ws, "auth.refresh", "r", token="a.b.c") == {
            "type": "error", "id": "r", "error": {
                "code": "bad_request",
                "message": "this connection has no token to refresh"}}
    finally:
        ws.close()


# --------------------------------------------------------------------------
# the REST route users/me

def me(n, path="/api/chat/users/me", method="GET", **kw):
    return chatlib.http(n, method, path, **kw)


def test_api_me_token_sources(nginx):
    n = nginx(API, http=COOKIE)
    tok = make_token(n.key, "alice", name="Alice",
                     avatar="https://img.example/a.png")
    want = {"user": {"id": "alice", "name": "Alice",
                     "avatar": "https://img.example/a.png"}}
    for kw in (dict(token=tok),
               dict(headers={"authorization": "bearer " + tok}),
               dict(path="/api/chat/users/me?access_token=" + tok),
               dict(headers={"Cookie": "x=1; chat_token=%s; y=2" % tok,
                             "Origin": "http://127.0.0.1:%d" % n.port})):
        r = me(n, **kw)
        assert r.status == 200, (kw, r)
        assert r.headers["content-type"] == "application/json"
        assert r.json() == want
    r = me(n, method="HEAD", token=tok)
    assert (r.status, r.body) == (200, b"")
    assert r.headers["content-type"] == "application/json"


def test_api_unauthorized(nginx):
    n = nginx(API)
    for kw in (dict(), dict(token=tamper(make_token(n.key, "alice"))),
               dict(token=make_token(n.key, "alice", exp_in=-3600))):
        r = me(n, **kw)
        assert r.status == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == "unauthorized"
    assert me(n).json()["error"]["message"] == NO_TOKEN
    # authentication comes before the route
    r = me(n, path="/api/chat/nope")
    assert r.status == 401


def test_api_routes(nginx):
    n = nginx(API)
    tok = make_token(n.key, "alice")
    for path in ("/api/chat/nope", "/api/chat/users/me/", "/api/chat/users",
                 "/api/chat/users/mex", "/api/chat/"):
        r = me(n, path=path, token=tok)
        assert r.status == 404, path
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"error": {"code": "not_found",
                                      "message": "no such route"}}
    for method in ("POST", "PUT", "DELETE"):
        r = me(n, method=method, token=tok, json_body={})
        assert r.status == 405, method
        assert r.headers["allow"] == "GET, HEAD"
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"error": {"code": "bad_request",
                                      "message": "method not allowed"}}


# --------------------------------------------------------------------------
# auth.refresh and the expiry of a connection's token

def test_refresh(ws):
    c = connect(ws, make_token(ws.key, "alice", exp_in=600))
    try:
        new = make_token(ws.key, "alice", exp_in=7200)
        exp = chatlib.token_parts(new)[1]["exp"]
        reply = request(c, "auth.refresh", "r1", token=new)
        assert reply == {"type": "ok", "id": "r1",
                         "data": {"expires_at": rfc3339(exp)}}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                            reply["data"]["expires_at"])
        # an integer id is echoed as such
        reply = request(c, "auth.refresh", 5, token=new)
        assert reply["type"] == "ok" and reply["id"] == 5
    finally:
        c.close()


@pytest.mark.parametrize("make,code,message", [
    (lambda k: make_token(k, "bob"), "forbidden",
     "the token is for another user"),
    (lambda k: tamper(make_token(k, "alice")), "unauthorized",
     "bad signature"),
    (lambda k: make_token(k, "alice", exp_in=-3600), "unauthorized",
     "token expired"),
    (lambda k: make_token(os.urandom(32), "alice"), "unauthorized",
     "bad signature"),
    (lambda k: "garbage", "unauthorized", "malformed token"),
    (lambda k: "", "unauthorized", "malformed token"),
    (lambda k: 42, "bad_request", "token must be a string"),
    (lambda k: None, "bad_request", "token must be a string"),
    (lambda k: ["x"], "bad_request", "token must be a string"),
    (lambda k: {"t": 1}, "bad_request", "token must be a string"),
], ids=["other-sub", "tampered", "expired", "wrong-key", "garbage", "empty",
        "int", "null", "list", "object"])
def test_refresh_refused(ws, make, code, message):
    c = connect(ws, make_token(ws.key, "alice"))
    try:
        reply = request(c, "auth.refresh", "r1", token=make(ws.key))
        assert reply == {"type": "error", "id": "r1",
                         "error": {"code": code, "message": message}}
        # the connection stays open
        assert request(c, "ping", "p1")["type"] == "ok"
    finally:
        c.close()


def test_refresh_without_token_field(ws):
    c = connect(ws, make_token(ws.key, "alice"))
    try:
        c.send_json({"type": "auth.refresh", "id": "r1"})
        assert c.recv_json() == {"type": "error", "id": "r1", "error": {
            "code": "bad_request", "message": "token must be a string"}}
    finally:
        c.close()


def test_expiry_closes_4001(nginx):
    n = nginx(WS, http="chat_jwt_leeway 0;")
    tok = make_token(n.key, "alice", exp_in=2)
    exp = chatlib.token_parts(tok)[1]["exp"]
    start = time.monotonic()
    c = connect(n, tok)
    try:
        # failed refreshes keep the current expiry
        assert request(c, "auth.refresh", "a",
                       token=make_token(n.key, "bob", exp_in=3600))[
            "error"]["code"] == "forbidden"
        assert request(c, "auth.refresh", "b",
                       token=tamper(make_token(n.key, "alice")))[
            "error"]["code"] == "unauthorized"
        assert c.expect_close(timeout=5, skip_data=False) == (
            4001, "token expired")
        assert time.time() > exp
        assert time.monotonic() - start < 4.5
    finally:
        c.close()


def test_refresh_extends_expiry(nginx):
    n = nginx(WS, http="chat_jwt_leeway 0;")
    tok = make_token(n.key, "alice", exp_in=2)
    old = chatlib.token_parts(tok)[1]["exp"]
    c = connect(n, tok)
    try:
        new_tok = make_token(n.key, "alice", exp_in=4)
        new = chatlib.token_parts(new_tok)[1]["exp"]
        assert new >= old + 2
        assert request(c, "auth.refresh", "r", token=new_tok)["data"] == {
            "expires_at": rfc3339(new)}
        # past the old expiry (and the second it is checked at): still open
        while time.time() < old + 1.5:
            time.sleep(0.05)
        assert request(c, "ping", "p")["type"] == "ok"
        assert c.expect_close(timeout=5, skip_data=False) == (
            4001, "token expired")
        assert time.time() > new
    finally:
        c.close()


def test_expiry_with_leeway(nginx):
    # a token accepted within the leeway lives until exp + leeway
    n = nginx(WS, http="chat_jwt_leeway 2;")
    tok = make_token(n.key, "alice", exp_in=-1)
    exp = chatlib.token_parts(tok)[1]["exp"]
    c = connect(n, tok)
    try:
        assert c.expect_close(timeout=5, skip_data=False) == (
            4001, "token expired")
        assert time.time() > exp + 2
    finally:
        c.close()


def test_refresh_to_no_exp(nginx):
    n = nginx(WS, http="chat_jwt_leeway 0;\n    chat_jwt_require_exp off;")
    tok = make_token(n.key, "alice", exp_in=2)
    old = chatlib.token_parts(tok)[1]["exp"]
    c = connect(n, tok)
    try:
        assert request(c, "auth.refresh", "r",
                       token=make_token(n.key, "alice", exp_in=None))[
            "data"] == {"expires_at": None}
        while time.time() < old + 1.5:
            time.sleep(0.05)
        assert request(c, "ping", "p")["type"] == "ok"
    finally:
        c.close()


# --------------------------------------------------------------------------
# the development token endpoint

@pytest.fixture
def dev(nginx):
    return nginx(DEV + "\n" + WS)


def dev_token(n, query, method="GET"):
    return chatlib.http(n, method, "/chat/dev/token" + query)


def assert_bad(r, message):
    assert r.status == 400, r
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"error": {"code": "bad_request", "message": message}}


M_USER = "user must be 1 to 64 characters of A-Z a-z 0-9 _ . @ -"
M_NAME = "name must be at most 64 bytes of UTF-8 with no control characters"


def test_dev_token(dev):
    before = int(time.time())
    r = dev_token(dev, "?user=alice")
    after = int(time.time())
    assert r.status == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"token", "expires_at", "user"}
    assert body["user"] == {"id": "alice", "name": "alice"}
    head, claims, sig = chatlib.token_parts(body["token"])
    assert head["alg"] == "HS256"
    assert claims["sub"] == "alice" and "name" not in claims
    assert before <= claims["iat"] <= after
    assert claims["exp"] == claims["iat"] + 86400
    assert body["expires_at"] == rfc3339(claims["exp"])
    # signed with the configured key, and the WebSocket takes it
    h, p, _ = body["token"].split(".")
    assert sig == chatlib.sign("HS256", dev.key, ("%s.%s" % (h, p)).encode())
    assert user_of(dev, body["token"]) == {"id": "alice", "name": "alice"}


@pytest.mark.parametrize("query,name", [
    ("?user=alice&name=Alice%20B", "Alice B"),
    ("?name=Alice+B&user=alice", "Alice B"),
    ("?user=alice&name=J%C3%BCrgen", "J\u00fcrgen"),
    ("?user=alice&name=a%2Bb", "a+b"),
    ("?user=alice&name=", "alice"),
    ("?user=alice&name=" + "n" * 64, "n" * 64),
])
def test_dev_token_name(dev, query, name):
    r = dev_token(dev, query)
    assert r.status == 200, r
    body = r.json()
    assert body["user"] == {"id": "alice", "name": name}
    assert user_of(dev, body["token"]) == {"id": "alice", "name": name}


@pytest.mark.parametrize("query,message", [
    ("", M_USER), ("?user=", M_USER), ("?name=x", M_USER),
    ("?user=" + "a" * 65, M_USER), ("?user=a/b", M_USER),
    ("?user=a%20b", M_USER), ("?user=a+b", M_USER), ("?user=a%2Fb", M_USER),
    ("?user=al%C3%BCce", M_USER), ("?user=a:b", M_USER),
    ("?user=alice&name=%ff", M_NAME),
    ("?user=alice&name=a%C3", M_NAME),
    ("?user=alice&name=%01", M_NAME),
    ("?user=alice&name=a%0Ab", M_NAME),
    ("?user=alice&name=a%7Fb", M_NAME),
    ("?user=alice&name=" + "n" * 65, M_NAME),
])
def test_dev_token_bad(dev, query, message):
    assert_bad(dev_token(dev, query), message)


def test_dev_token_user_chars(dev):
    user = "Az09_.@-" + "x" * 56
    assert len(user) == 64
    r = dev_token(dev, "?user=" + urllib.parse.quote(user, safe="@"))
    assert r.status == 200
    assert r.json()["user"]["id"] == user


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_dev_token_method(dev, method):
    r = dev_token(dev, "?user=alice", method=method)
    assert r.status == 405
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"error": {"code": "bad_request",
                                  "message": "use GET"}}


def test_dev_token_iss_aud(nginx):
    n = nginx(DEV + "\n" + WS, http=ISS_AUD)
    body = dev_token(n, "?user=alice").json()
    claims = chatlib.token_parts(body["token"])[1]
    assert claims["iss"] == "https://issuer.example"
    assert claims["aud"] == "chat-api"
    assert user_of(n, body["token"])["id"] == "alice"


def test_dev_token_warns(dev):
    warns = [line for line in dev.logs().splitlines()
             if DEV_WARN.search(line)]
    assert warns, dev.logs()


def test_dev_token_no_warning_without_it(ws):
    assert "chat_dev_token" not in ws.logs()


def test_dev_token_needs_hmac_key(nginx):
    rc, out = nginx.check_config(
        DEV, http="chat_jwt_key rs256 file=%s;" % pem("rsa2048.pub.pem"))
    assert rc != 0, out
    assert ('[emerg] "chat_dev_token" needs an HS256, HS384 or HS512 '
            '"chat_jwt_key" to sign with') in out, out
    rc, out = nginx.check_config(
        DEV, http="chat_jwt_key es256 file=%s;" % pem("ec256.pub.pem"))
    assert rc != 0, out
    assert '"chat_dev_token" needs an HS256' in out, out
