"""A quick measurement of persisted sends per second: N clients, each
sending one message and waiting for its `ok` (the commit) before the next,
for a few seconds.  The proper load generator (C, epoll) is bench/'s job;
this is the figure the persistence work quotes.

    /usr/bin/python3 bench/quick_sends.py [--port 8080] [--clients 1,50]
        [--seconds 5]

It talks to a running `make run` (development tokens must be on).
"""

import argparse
import asyncio
import json
import time
import urllib.request

import websockets


def token(port, user):
    url = "http://127.0.0.1:%d/chat/dev/token?user=%s" % (port, user)
    return json.load(urllib.request.urlopen(url))["token"]


async def request(ws, pending, rid, obj):
    fut = asyncio.get_running_loop().create_future()
    pending[rid] = fut
    obj["id"] = rid
    await ws.send(json.dumps(obj))
    return await fut


async def reader(ws, pending):
    async for frame in ws:
        msg = json.loads(frame)
        fut = pending.pop(msg.get("id"), None)
        if fut is not None and not fut.done():
            fut.set_result(msg)


async def client(port, user, peer, seconds, start, counts, run_id):
    url = "ws://127.0.0.1:%d/chat/ws?access_token=%s" % (port,
                                                         token(port, user))
    async with websockets.connect(url, max_size=None, ping_interval=None,
                                  compression=None) as ws:
        await ws.recv()                                 # welcome
        pending = {}
        task = asyncio.create_task(reader(ws, pending))
        reply = await request(ws, pending, "c", {
            "type": "conversation.create", "kind": "direct",
            "user_id": peer})
        cid = reply["data"]["conversation"]["id"]
        await start.wait()
        n = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            reply = await request(ws, pending, n, {
                "type": "message.send", "conversation_id": cid,
                "body": "benchmark message %d" % n,
                "client_msg_id": "%s-%s-%d" % (run_id, user, n)})
            if reply["type"] != "ok":
                raise SystemExit("send failed: %r" % reply)
            n += 1
        counts.append(n)
        task.cancel()


async def run(port, clients, seconds):
    start = asyncio.Event()
    counts = []
    run_id = "%x" % int(time.time() * 1000)
    tasks = [asyncio.create_task(client(port, "bench%d" % i,
                                        "peer%d" % i, seconds, start,
                                        counts, run_id))
             for i in range(clients)]
    await asyncio.sleep(1.0)
    t0 = time.monotonic()
    start.set()
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - t0
    return sum(counts) / elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--clients", default="1,50")
    ap.add_argument("--seconds", type=float, default=5)
    args = ap.parse_args()
    for n in [int(x) for x in args.clients.split(",")]:
        rate = asyncio.run(run(args.port, n, args.seconds))
        print("%3d client(s): %7.0f persisted sends/s" % (n, rate))


if __name__ == "__main__":
    main()
