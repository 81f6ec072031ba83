"""chat_zone at its limits: a full zone refuses new WebSockets with 503
and a readable [crit] line, never corrupts what it holds, and has room
again once users leave; a size change is refused on reload."""

import json
import os
import resource
import signal
import time

import pytest

from chatlib import RawWS, http, http_upgrade, make_token

WS = ("location = /chat/ws { chat_websocket; }\n"
      "location = /chat/status { chat_status; }")


def upgrade(ng, user):
    r = http_upgrade(ng.port, "/chat/ws", token=make_token(ng.key, user))
    if r.status != 101:
        return r.status, json.loads(r.body)
    ws = RawWS(r.sock, r.rest, r.headers)
    assert ws.recv_json()["type"] == "welcome"
    return 101, ws


@pytest.mark.allow_log(r"chat_zone \"chat\" is full")
def test_a_full_zone_refuses_with_503_and_recovers(nginx):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ng = nginx(WS, http="chat_zone chat 256k; chat_heartbeat 0;",
               main="worker_rlimit_nofile 8192;")
    conns, refused = [], None
    for i in range(3000):
        status, ws = upgrade(ng, "user%05d" % i)
        if status != 101:
            refused = (i, status, ws)
            break
        conns.append(ws)
    assert refused is not None, "3000 users fit in 256k?"
    i, status, body = refused
    assert status == 503
    assert body == {"error": {"code": "unavailable",
                              "message": "the server is full, retry later"}}
    assert i > 100
    ng.wait_log(r"\[crit\].*chat_zone \"chat\" is full: new connections are "
                r"refused")

    # what the zone holds is intact: everyone connected is online
    ws = conns[0]
    ws.send_json({"type": "presence.query", "id": 1,
                  "user_ids": ["user%05d" % k for k in range(0, i, i // 50)]})
    presence = ws.recv_json()["data"]["presence"]
    assert all(p["online"] for p in presence.values())

    # users who leave make room, once they are offline (after the grace)
    for c in conns[1:200]:
        c.close()
    for attempt in range(50):
        status, ws2 = upgrade(ng, "newcomer")
        if status == 101:
            break
        time.sleep(0.2)
    assert status == 101, "no room after 199 users left"
    ws2.close()
    for c in conns[200:]:
        c.close()
    conns[0].close()


@pytest.mark.allow_log(r"cannot change its size on reload")
def test_zone_size_cannot_change_on_reload(nginx):
    ng = nginx(WS, http="chat_zone chat 1m;")
    # the refusal is the running master's, on reload: the old
    # configuration stays in force
    ng.write_conf(WS, http="chat_zone chat 2m;")
    os.kill(ng.pid, signal.SIGHUP)
    ng.wait_log(r"\[emerg\].*chat_zone \"chat\" cannot change its size on "
                r"reload \(1048576 to 2097152\): restart nginx", timeout=10)
    status, ws = upgrade(ng, "alice")
    assert status == 101
    ws.close()
