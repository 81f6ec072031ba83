"""Web Push's pure C against independent implementations (issue 17).

The C side is the unit test binary with arguments (t/unit/test_webpush.c,
built by make): `encrypt` makes the body we would POST for a subscription,
`vapid` the Authorization header.  The other side is t/webpush_ece.mjs:
the npm http_ece package (web/node_modules, `npm ci` in web/, which make
test does) decrypts, and Node's crypto verifies the ES256 token.  The keys
are a browser's, made by Node.  No nginx, no PostgreSQL.
"""

import base64
import json
import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEB = os.path.join(REPO, "web")
BIN = os.path.join(REPO, "build", "unit", "test_webpush")
SCRIPT = os.path.join(REPO, "t", "webpush_ece.mjs")
NODE = os.environ.get("CHAT_NODE") or shutil.which("node") or "/usr/bin/node"

MAX_PAYLOAD = 4096 - 86 - 1 - 16

# RFC 8291 appendix A
RFC_UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
RFC_AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
RFC_BODY = ("DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml"
            "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT"
            "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN")


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


@pytest.fixture(scope="module")
def tools():
    if not os.path.isdir(os.path.join(WEB, "node_modules", "http_ece")):
        pytest.fail("web/node_modules/http_ece is missing: run `npm ci` in "
                    "web/ (make test does)", pytrace=False)
    if not os.path.exists(NODE):
        pytest.fail("node is missing (set CHAT_NODE)", pytrace=False)
    # up to date with src/ (the Makefile's rule lists it)
    r = subprocess.run(["make", "-C", REPO, BIN], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def node(request):
    r = subprocess.run([NODE, SCRIPT], input=json.dumps(request),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def encrypt(keys, payload):
    r = subprocess.run([BIN, "encrypt", keys["p256dh"], keys["auth"],
                        b64(payload)], capture_output=True, text=True,
                       timeout=60)
    return r.returncode, r.stdout.strip()


def decrypt(keys, bodies, auth=None):
    return node({"op": "decrypt", "private": keys["private"],
                 "auth": auth or keys["auth"], "bodies": bodies})


def test_http_ece_reads_the_rfc_vector(tools):
    """The reference itself: http_ece opens RFC 8291's example."""
    got = decrypt({"private": RFC_UA_PRIVATE, "auth": RFC_AUTH}, [RFC_BODY])
    assert got == [{"plaintext": b64(
        b"When I grow up, I want to be a watermelon")}]


def test_http_ece_decrypts_what_we_encrypt(tools):
    keys = node({"op": "keys"})
    payloads = [
        b"",
        b"When I grow up, I want to be a watermelon",
        json.dumps({"conversation": "c1", "from": "Ren\u00e9e",
                    "preview": "\u4f60\u597d \U0001f349"}).encode(),
        bytes(range(256)),
        os.urandom(1000),
        os.urandom(MAX_PAYLOAD),
    ]
    bodies = []
    for p in payloads:
        rc, body = encrypt(keys, p)
        assert rc == 0, body
        raw = unb64(body)
        # salt, rs 4096, idlen 65, an uncompressed key, one record
        assert len(raw) == 86 + len(p) + 1 + 16
        assert raw[16:22] == b"\x00\x00\x10\x00\x41\x04"
        bodies.append(body)
    assert len(unb64(bodies[-1])) == 4096

    got = decrypt(keys, bodies)
    assert got == [{"plaintext": b64(p)} for p in payloads]
    print("\nhttp_ece decrypted %d bodies of %s bytes; the first: %s -> %r"
          % (len(bodies), [len(unb64(b)) for b in bodies],
             bodies[1][:40] + "...", unb64(got[1]["plaintext"]).decode()))

    # fresh salt and key pair each time
    again = encrypt(keys, payloads[1])[1]
    assert again != bodies[1]
    assert decrypt(keys, [again]) == [{"plaintext": b64(payloads[1])}]


def test_http_ece_refuses_what_it_should(tools):
    """The check is not vacuous: another subscription's keys, another auth
    secret, a flipped bit each make http_ece fail."""
    keys = node({"op": "keys"})
    other = node({"op": "keys"})
    rc, body = encrypt(keys, b"secret")
    assert rc == 0
    raw = bytearray(unb64(body))
    raw[-1] ^= 1
    got = decrypt(keys, [b64(bytes(raw))])
    assert "error" in got[0]
    assert "error" in decrypt(other, [body])[0]
    assert "error" in decrypt(keys, [body], auth=other["auth"])[0]


def test_payload_limit(tools):
    keys = node({"op": "keys"})
    rc, out = encrypt(keys, os.urandom(MAX_PAYLOAD + 1))
    assert rc == 1
    assert out == "error: payload too large for a push message"


def test_node_verifies_our_vapid_header(tools):
    key = os.path.join(REPO, "t", "data", "jwt", "ec256.key.pem")
    for aud in ["https://push.example.net", "https://localhost:8443"]:
        r = subprocess.run([BIN, "vapid", key, aud, "mailto:ops@example.org",
                            "1700000000"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        header = r.stdout.strip()
        got = node({"op": "vapid", "header": header, "aud": aud,
                    "sub": "mailto:ops@example.org", "exp": 1700000000})
        assert got.get("ok"), got
        # and a token that is not ours fails there
        bad = header.replace("vapid t=", "vapid t=e", 1)
        assert "error" in node({"op": "vapid", "header": bad, "aud": aud,
                                "sub": "mailto:ops@example.org",
                                "exp": 1700000000})
