"""Quick figures for the multi-worker layer, against a running `make run`
(several workers, chat_zone, development tokens on):

  - RSS per idle WebSocket: N connections opened, the workers' RSS summed
    (from /proc) before and after, divided by N;
  - delivery latency of a persisted message, sender and receiver on the
    same worker and on different workers (send -> receiver's event).

    /usr/bin/python3 bench/quick_workers.py [--port 8080] [--idle 3000]
        [--messages 300]

The proper load generator (C, epoll) is bench/'s job; these are the
figures the multi-worker work quotes.
"""

import argparse
import asyncio
import json
import os
import statistics
import time
import urllib.request

import websockets


def token(port, user):
    url = "http://127.0.0.1:%d/chat/dev/token?user=%s" % (port, user)
    return json.load(urllib.request.urlopen(url))["token"]


def workers(pidfile):
    """Pids of the workers of the nginx whose master is in pidfile."""
    with open(pidfile) as f:
        master = int(f.read())
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%s/cmdline" % p, "rb") as f:
                cmd = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == master and cmd.startswith(b"nginx: worker process"):
            pids.append(int(p))
    return pids


def rss_kb(pids):
    total = 0
    for pid in pids:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


async def connect(port, tok):
    ws = await websockets.connect(
        "ws://127.0.0.1:%d/chat/ws?access_token=%s" % (port, tok),
        ping_interval=None, compression=None, max_size=None)
    welcome = json.loads(await ws.recv())
    return ws, int(welcome["session"].split("-")[0])


async def idle(port, n, pidfile):
    pids = workers(pidfile)
    before = rss_kb(pids)
    # under chat_max_connections_per_user: 20 connections a user
    toks = [token(port, "idle%d" % i) for i in range((n + 19) // 20)]
    conns = []
    for i in range(n):
        ws, _ = await connect(port, toks[i % len(toks)])
        conns.append(ws)
    await asyncio.sleep(1)
    after = rss_kb(pids)
    for ws in conns:
        await ws.close()
    return (after - before) * 1024 / n, len(pids)


async def latency(port, messages):
    """One conversation; the receiver is on the sender's worker or not."""
    sender, spid = await connect(port, token(port, "lat-a"))
    same = other = None
    extra = []
    for _ in range(40):
        ws, pid = await connect(port, token(port, "lat-b"))
        if pid == spid and same is None:
            same = ws
        elif pid != spid and other is None:
            other = ws
        else:
            extra.append(ws)
        if same and other:
            break
    for ws in extra:
        await ws.close()
    if not (same and other):
        raise SystemExit("could not place receivers on both kinds of "
                         "worker: is worker_processes > 1?")

    await sender.send(json.dumps({"type": "conversation.create", "id": "c",
                                  "kind": "direct", "user_id": "lat-b"}))
    cid = None
    while cid is None:
        f = json.loads(await sender.recv())
        if f.get("id") == "c":
            cid = f["data"]["conversation"]["id"]

    async def drain(ws, until):
        while True:
            f = json.loads(await ws.recv())
            if f.get("type") == "message.created" and \
                    f["message"]["client_msg_id"] == until:
                return time.monotonic()

    run = "%x" % int(time.time() * 1000)
    results = {"same worker": [], "other worker": []}
    for i in range(messages):
        cm = "%s-%d" % (run, i)
        t0 = time.monotonic()
        await sender.send(json.dumps({"type": "message.send", "id": i,
                                      "conversation_id": cid, "body": "x",
                                      "client_msg_id": cm}))
        t_same, t_other = await asyncio.gather(drain(same, cm),
                                               drain(other, cm))
        results["same worker"].append((t_same - t0) * 1000)
        results["other worker"].append((t_other - t0) * 1000)
    for ws in (sender, same, other):
        await ws.close()
    return results


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


async def main(args):
    per_conn, nworkers = await idle(args.port, args.idle, args.pidfile)
    print("%d workers; %d idle WebSockets: %.1f KB RSS per connection "
          "(all workers)" % (nworkers, args.idle, per_conn / 1024))
    res = await latency(args.port, args.messages)
    for k, v in res.items():
        print("persisted message, receiver on the %s: p50 %.2f ms, "
              "p90 %.2f ms, p99 %.2f ms, max %.2f ms (n=%d)"
              % (k, statistics.median(v), pct(v, 90), pct(v, 99), max(v),
                 len(v)))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--idle", type=int, default=3000)
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--pidfile", default=os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        ".run", "nginx.pid"))
    asyncio.run(main(ap.parse_args()))
