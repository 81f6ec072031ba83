#!/usr/bin/python3
"""make bench: ngx_http_chat_module side by side with nchan and Socket.IO,
in one run on this machine, with bench/chatload (C, epoll) as the client
of all three.  Prints a table and writes docs/benchmarks.md with an SVG
chart (docs/benchmarks.svg).

    /usr/bin/python3 bench/run.py [--quick] [--only a,b,c,d,e,f] [--merge]

Scenarios (docs/benchmarks.md says what each measures):
  a  idle connections: memory (PSS) per connection over all server processes
  b  one room of 1,000 members: one sender at full speed and at 100/s
  c  1,000 pairs, 10 messages/s per connection (ours: persisted, acked)
  d  persisted, acknowledged sends/s at saturation, next to pgbench's
     multi-row INSERT ceiling
  e  reconnect storm: 10,000 clients drop, reconnect and sync
  f  cluster (chat_cluster), nodes of two workers: room latency and
     persisted sends with the receivers on the sender's node, then on the
     other one, then the room over three nodes; each node's reads per
     message and the time the nodes take to read a phase's changes

Everything runs under bench/.work/ (PostgreSQL with fsync and
synchronous_commit on, three servers); the servers are stopped at the end.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
WORK = os.path.join(BENCH, ".work")
MODULE = os.path.join(REPO, "build", "ngx_http_chat_module.so")
CHATLOAD = os.path.join(BENCH, "chatload")
PGBIN = "/usr/lib/postgresql/15/bin"
NCHAN_SO = "/usr/lib/nginx/modules/ngx_nchan_module.so"

# BENCH_PORT_BASE: several checkouts may bench on one machine at once
_BASE = int(os.environ.get("BENCH_PORT_BASE", "18181"))
PORTS = {"chat": _BASE, "nchan": _BASE + 1, "sio": _BASE + 2}
PEERS = ("chat", "nchan", "sio")
NAMES = {"chat": "ngx_http_chat_module", "nchan": "nchan",
         "sio": "Socket.IO 4"}

# Two cores: in the latency and fan-out scenarios the servers run on
# core 0 and the load generator on core 1.  PostgreSQL is not pinned: it
# needs what is left of both.
SERVER_CPU = "0"
CLIENT_CPU = "1"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, **kw):
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


def render(template, out, subst):
    with open(template) as f:
        text = f.read()
    for k, v in subst.items():
        text = text.replace("@%s@" % k, str(v))
    with open(out, "w") as f:
        f.write(text)


def children(pid):
    kids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(p))
    return kids


def cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def wait_port(port, timeout=20):
    import socket
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("nothing listens on %d" % port)


# ---------------------------------------------------------------------------
# servers

class Nginx:
    """An nginx (ours or nchan) in a prefix of its own under bench/.work."""

    def __init__(self, kind, workers, pin, node=None):
        self.kind = kind
        self.prefix = os.path.join(WORK, kind + ("-" + node if node else ""))
        self.port = PORTS[kind] + (10 + ord(node[0]) - ord("a")
                                   if node else 0)
        for d in ("tmp", "logs"):
            os.makedirs(os.path.join(self.prefix, d), exist_ok=True)
        conf = os.path.join(self.prefix, "nginx.conf")
        subst = {"PREFIX": self.prefix, "PORT": self.port,
                 "WORKERS": workers, "MODULE": MODULE,
                 "PGSOCKET": os.path.join(WORK, "pg", "socket"),
                 "CLUSTER": ("chat_cluster on; chat_node_id %s;" % node
                             if node else "")}
        template = "nginx-chat.conf.in" if kind == "chat" else "nchan.conf.in"
        render(os.path.join(BENCH, template), conf, subst)
        if kind == "chat":
            shutil.copy(os.path.join(WORK, "jwt.key"),
                        os.path.join(self.prefix, "jwt.key"))
        cmd = ["/usr/sbin/nginx", "-p", self.prefix, "-c", conf,
               "-e", os.path.join(self.prefix, "error.log")]
        if pin:
            cmd = ["taskset", "-c", SERVER_CPU] + cmd
        run(cmd)
        with open(os.path.join(self.prefix, "nginx.pid")) as f:
            self.master = int(f.read())
        wait_port(self.port)
        end = time.time() + 10
        while len(children(self.master)) < workers and time.time() < end:
            time.sleep(0.1)
        if kind == "chat":
            self.wait_pool(workers * 4)

    def wait_pool(self, want):
        """Until the workers' PostgreSQL pools are up (pool=4 each)."""
        import urllib.request
        url = "http://127.0.0.1:%d/chat/status" % self.port
        end = time.time() + 20
        while time.time() < end:
            try:
                text = urllib.request.urlopen(url, timeout=2).read().decode()
                for line in text.splitlines():
                    if line.startswith("chat_postgres_connections "):
                        if int(line.split()[1]) >= want:
                            return
            except OSError:
                pass
            time.sleep(0.2)
        log("warning: the PostgreSQL pools are not all up")

    def pids(self):
        """For chatload: the master and, at each sample, its workers."""
        return ["%d+" % self.master]

    def stop(self):
        try:
            os.kill(self.master, signal.SIGTERM)
        except ProcessLookupError:
            return
        end = time.time() + 15
        while time.time() < end:
            try:
                os.kill(self.master, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(self.master, signal.SIGKILL)


class SocketIO:
    """bench/sio_server.js: one Node process, as its users run it."""

    kind = "sio"

    def __init__(self, workers, pin):
        self.port = PORTS["sio"]
        cmd = "ulimit -n 20000 && exec %s node %s %d" % (
            ("taskset -c %s" % SERVER_CPU) if pin else "",
            os.path.join(BENCH, "sio_server.js"), self.port)
        self.proc = subprocess.Popen(["bash", "-c", cmd], cwd=BENCH,
                                     stdout=subprocess.DEVNULL)
        wait_port(self.port)

    def pids(self):
        return [self.proc.pid]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start(kind, workers=1, pin=False):
    if kind == "sio":
        return SocketIO(workers, pin)
    return Nginx(kind, workers, pin)


# ---------------------------------------------------------------------------
# PostgreSQL

def pg_up():
    env = dict(os.environ, CHAT_PG_FSYNC="on")
    run([os.path.join(REPO, "scripts", "pg.sh"), "up",
         os.path.join(WORK, "pg")], env=env, stdout=subprocess.DEVNULL)


def pg_stop():
    run([os.path.join(REPO, "scripts", "pg.sh"), "stop",
         os.path.join(WORK, "pg")], check=False,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def psql(sql):
    r = run([os.path.join(PGBIN, "psql"), "-X", "-q", "-A", "-t",
             "-v", "ON_ERROR_STOP=1",
             "-h", os.path.join(WORK, "pg", "socket"), "-U", "postgres",
             "chat", "-c", sql], capture_output=True, text=True)
    return r.stdout.strip()


def pg_pids():
    out = psql("SELECT pg_backend_pid()")   # warms nothing; finds the dir
    del out
    with open(os.path.join(WORK, "pg", "data", "postmaster.pid")) as f:
        master = int(f.readline())
    return [master] + children(master)


def make_room(prefix, n):
    """Users prefix0..prefix(n-1) and one group with all of them."""
    psql("SELECT chat.api_user_upsert('%s' || i, '{}') "
         "FROM generate_series(0, %d) i" % (prefix, n - 1))
    out = psql("SELECT chat.api_conversation_create('%s0', "
               "jsonb_build_object('kind', 'group', 'title', 'bench room', "
               "'members', (SELECT jsonb_agg('%s' || i) "
               "FROM generate_series(1, %d) i)))" % (prefix, prefix, n - 1))
    return json.loads(out)["ok"]["conversation"]["id"]


def pgbench_ceiling(seconds, clients=8):
    """Rows/s of pgbench's own 64-row INSERTs into a table shaped like
    chat.messages (same indexes that a send maintains), durable commits."""
    psql("DROP TABLE IF EXISTS public.bench_rows; "
         "CREATE TABLE public.bench_rows (LIKE chat.messages "
         "INCLUDING ALL)")
    script = os.path.join(WORK, "pgbench_insert.sql")
    with open(script, "w") as f:
        f.write("INSERT INTO public.bench_rows (conversation_id, seq, "
                "updated_seq, sender_id, body, client_msg_id) "
                "SELECT :client_id * 1000000 + (random() * 1e6)::int, g, g, "
                "'u' || g, repeat('x', 100), md5(random()::text) "
                "FROM generate_series(1, 64) g "
                "ON CONFLICT DO NOTHING;\n")
    r = run([os.path.join(PGBIN, "pgbench"), "-n", "-h",
             os.path.join(WORK, "pg", "socket"), "-U", "postgres",
             "-f", script, "-c", str(clients), "-j", "2", "-T", str(seconds),
             "chat"], capture_output=True, text=True)
    tps = [l for l in r.stdout.splitlines() if l.startswith("tps")]
    value = float(tps[0].split()[2]) * 64 if tps else 0.0
    psql("DROP TABLE public.bench_rows")
    return value


# ---------------------------------------------------------------------------
# the load generator

def chatload(proto, scenario, conns, pids, pin=False, **opts):
    """One run of bench/chatload; for ours, PostgreSQL's CPU time during
    the run is added as pg_cpu_s (the generator counts the server's)."""
    port = opts.pop("port", PORTS[proto])
    cmd = [CHATLOAD, "--proto", proto, "--port", str(port),
           "--scenario", scenario, "--conns", str(conns),
           "--server-pids", ",".join(str(p) for p in pids)]
    if proto == "chat":
        cmd += ["--jwt-key", os.path.join(WORK, "jwt.key")]
    for k, v in opts.items():
        cmd += ["--" + k.replace("_", "-"), str(v)]
    if pin:
        cmd = ["taskset", "-c", CLIENT_CPU] + cmd
    log("  $ " + " ".join(cmd[cmd.index(CHATLOAD):]))
    pg = pg_pids() if proto == "chat" else []
    before = cpu_seconds(pg)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        log(r.stderr[-2000:])
        raise RuntimeError("chatload failed (%d)" % r.returncode)
    # what went wrong for a connection (the counts are in the result)
    for line in [l for l in r.stderr.splitlines()
                 if " lost: " in l or "error reply" in l][:5]:
        log("  " + line[:300])
    out = json.loads(r.stdout)
    if pg:
        out["pg_cpu_s"] = cpu_seconds(pg_pids()) - before
    return out


# ---------------------------------------------------------------------------
# scenarios: each returns {peer: result}

def scenario_idle(quick):
    n = 2000 if quick else 19000
    out = {}
    for kind in PEERS:
        srv = start(kind, workers=2)
        try:
            out[kind] = chatload(kind, "idle", n, srv.pids(), procs=2,
                                 duration=5, user_prefix="i")
        finally:
            srv.stop()
    # ours alone: 100,000 (several workers and generator processes: 20,000
    # descriptors per process; many source addresses: connect(2)'s search
    # for a free port slows down as one address's ports fill up)
    n, workers = (4000, 2) if quick else (100000, 6)
    srv = start("chat", workers=workers)
    try:
        out["chat_max"] = chatload("chat", "idle", n, srv.pids(),
                                   procs=workers, src_count=16, duration=5,
                                   user_prefix="m")
        out["chat_max"]["workers"] = workers
    finally:
        srv.stop()
    return out


def scenario_room(quick):
    members = 200 if quick else 1000
    duration = 3 if quick else 10
    cid = make_room("r", members)
    out = {}
    for kind in PEERS:
        srv = start(kind, workers=1, pin=True)
        try:
            # --settle: what the connects cause (presence, counted as
            # presence_frames) is over before the measured phase
            extra = {"conv": cid, "user_prefix": "r"} if kind == "chat" else {}
            out[kind + "_max"] = chatload(kind, "room", members, srv.pids(),
                                          pin=True, rate=0, window=8,
                                          duration=duration, settle=5,
                                          **extra)
            # and that they went offline, 3 s after they closed
            time.sleep(5)
            out[kind + "_100"] = chatload(kind, "room", members, srv.pids(),
                                          pin=True, rate=100, settle=5,
                                          duration=duration, **extra)
        finally:
            srv.stop()
    return out


def scenario_pairs(quick):
    n = 200 if quick else 2000
    out = {}
    for kind in PEERS:
        srv = start(kind, workers=1, pin=True)
        try:
            out[kind] = chatload(kind, "pairs", n, srv.pids(), pin=True,
                                 rate=10, duration=3 if quick else 10,
                                 user_prefix="p")
        finally:
            srv.stop()
    return out


def scenario_sends(quick):
    srv = start("chat", workers=2)
    try:
        r = chatload("chat", "sends", 100 if quick else 400, srv.pids(),
                     window=4, duration=3 if quick else 10, user_prefix="d")
    finally:
        srv.stop()
    ceiling = pgbench_ceiling(3 if quick else 10)
    return {"chat": r, "pgbench_rows_per_s": ceiling}


def scenario_storm(quick):
    srv = start("chat", workers=2)
    try:
        r = chatload("chat", "storm", 1000 if quick else 10000, srv.pids(),
                     procs=1 if quick else 2, user_prefix="st")
    finally:
        srv.stop()
    return {"chat": r}


def node_status(port):
    """A node's /chat/status as {"name{labels}": value}."""
    import urllib.request
    url = "http://127.0.0.1:%d/chat/status" % port
    out = {}
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def cluster_reads(nodes):
    """{node: {slot: chat_cluster_reads_total}}, and the slots reading."""
    reads, readers = {}, {}
    for name, srv in nodes.items():
        st = node_status(srv.port)
        reads[name] = {k.split('"')[1]: v for k, v in st.items()
                       if k.startswith("chat_cluster_reads_total{")}
        readers[name] = [k.split('"')[1] for k, v in st.items()
                         if k.startswith("chat_cluster_reader{") and v]
    return reads, readers


class ReadWatch:
    """Polls the nodes' reads of each other's changes in the background
    (chat_cluster_reads_total counts a reader's read when it starts, the
    chat_cluster_changes statement's duration count when it ends; a
    worker's gap reads, chat_gap_changes, when they end): when the last
    read started or ended, and whether a reader's read is under way."""

    def __init__(self, nodes):
        import threading
        self.nodes = nodes
        self.last, self.moved, self.busy = None, time.monotonic(), True
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def poll(self):
        snap = []
        for name in sorted(self.nodes):
            st = node_status(self.nodes[name].port)
            count = "chat_postgres_query_duration_seconds_count" \
                    '{statement="%s"}'
            snap.append((sum(v for k, v in st.items()
                             if k.startswith("chat_cluster_reads_total{")),
                         st.get(count % "chat_cluster_changes", 0),
                         st.get(count % "chat_gap_changes", 0)))
        if snap != self.last:
            self.last, self.moved = snap, time.monotonic()
        self.busy = any(started != ended for started, ended, _ in snap)

    def loop(self):
        while not self.done.wait(0.25):
            try:
                self.poll()
            except OSError:
                pass

    def drained(self, since, bound):
        """Waits (at most bound seconds) until no node has read for 1.5 s
        and PostgreSQL's notification queue is empty (a listener behind
        keeps it from emptying).  The seconds from since to the end of the
        last read, or None if they still read at the bound."""
        end = time.monotonic() + bound
        try:
            while time.monotonic() < end:
                time.sleep(0.25)
                if (not self.busy and time.monotonic() - self.moved >= 1.5
                        and float(psql("SELECT pg_notification_queue_usage()")
                                  or 0) == 0):
                    return max(self.moved - since, 0.0)
        finally:
            self.done.set()
            self.thread.join()
        log("warning: the nodes still read after %d s" % bound)
        return None


def scenario_cluster(quick):
    """Nodes with chat_cluster on, two workers each: the receivers on the
    sender's node, then on another node (the message crosses by NOTIFY and
    a read), then spread over two other nodes of three.  Between phases
    the nodes' reading of the previous phase's changes is waited for and
    timed; the reads of each node's workers are counted per phase."""
    members = 200 if quick else 1000
    duration = 3 if quick else 10
    bound = 20 if quick else 60
    cid = make_room("f", members)
    nodes = {}
    out = {"workers": 2}

    def phase(key, scenario, conns, peers, **opts):
        reads0, _ = cluster_reads(nodes)
        watch = ReadWatch(nodes)
        pids = [p for srv in nodes.values() for p in srv.pids()]
        r = chatload("chat", scenario, conns, pids, port=nodes["a"].port,
                     duration=duration, **opts,
                     **({"peer_port": ",".join(str(nodes[n].port)
                                               for n in peers)}
                        if peers else {}))
        r["read_drain_s"] = watch.drained(r.get("sent_at_s")
                                          or time.monotonic(), bound)
        reads1, readers = cluster_reads(nodes)
        sent = max(r.get("sent", 0) - r.get("send_errors", 0), 1)
        r["reads_per_message"] = {
            n: {slot: (v - reads0.get(n, {}).get(slot, 0)) / sent
                for slot, v in reads1[n].items()} for n in reads1}
        r["readers"] = readers
        out[key] = r

    try:
        for n in ("a", "b"):
            nodes[n] = Nginx("chat", out["workers"], False, node=n)
        for where, peers in (("one", ()), ("two", ("b",))):
            phase("room_" + where, "room", members, peers, rate=100,
                  settle=5, conv=cid, user_prefix="f")
            time.sleep(5)       # the members' offline grace
            phase("sends_" + where, "sends", 100 if quick else 400, peers,
                  window=4, drain=10, user_prefix="f" + where)
        # a third node: the room's receivers spread over b and c
        nodes["c"] = Nginx("chat", out["workers"], False, node="c")
        phase("room_three", "room", members, ("b", "c"), rate=100,
              settle=5, conv=cid, user_prefix="f")
    finally:
        for srv in nodes.values():
            srv.stop()
    return out


SCENARIOS = {"a": ("idle", scenario_idle), "b": ("room", scenario_room),
             "c": ("pairs", scenario_pairs), "d": ("sends", scenario_sends),
             "e": ("storm", scenario_storm), "f": ("cluster", scenario_cluster)}


# ---------------------------------------------------------------------------
# report

def lat(r, q, key="latency_us"):
    v = (r or {}).get(key) or {}
    return v.get(q)


def ratio(a, b, higher_better=True):
    if not a or not b:
        return None
    return a / b if higher_better else b / a


def rows(res):
    """(scenario, metric, ours, nchan, sio, higher_better, unit)"""
    out = []
    a = res.get("idle")
    if a:
        out.append(("a idle", "memory per connection (bytes, PSS)",
                    a["chat"].get("rss_per_conn_bytes"),
                    a["nchan"].get("rss_per_conn_bytes"),
                    a["sio"].get("rss_per_conn_bytes"), False, "B"))
        out.append(("a idle", "connected / %d" % a["chat"].get("conns", 0),
                    a["chat"].get("connected"), a["nchan"].get("connected"),
                    a["sio"].get("connected"), True, ""))
        m = a.get("chat_max")
        if m:
            out.append(("a idle, ours alone",
                        "connected / %d (%d workers)"
                        % (m.get("conns", 0), m.get("workers", 4)),
                        m.get("connected"), None, None, True, ""))
            out.append(("a idle, ours alone",
                        "memory per connection (bytes, PSS)",
                        m.get("rss_per_conn_bytes"), None, None, False, "B"))
    b = res.get("room")
    if b:
        g = {k: b.get(k + "_max") or {} for k in PEERS}
        out.append(("b room, full speed", "deliveries/s",
                    *(g[k].get("deliveries_per_s") for k in PEERS),
                    True, "/s"))
        out.append(("b room, full speed", "deliveries per server CPU-second",
                    *(g[k].get("deliveries_per_server_cpu_s") for k in PEERS),
                    True, ""))
        o = g["chat"]
        if o.get("server_cpu_s") is not None and o.get("pg_cpu_s"):
            out.append(("b room, full speed",
                        "the same, ours with PostgreSQL's CPU counted",
                        o["delivered"] / (o["server_cpu_s"] + o["pg_cpu_s"]),
                        g["nchan"].get("deliveries_per_server_cpu_s"),
                        g["sio"].get("deliveries_per_server_cpu_s"),
                        True, ""))
        out.append(("b room, full speed", "missing",
                    *(g[k].get("missing") for k in PEERS), False, ""))
        h = {k: b.get(k + "_100") or {} for k in PEERS}
        for q in ("p50", "p99"):
            out.append(("b room, 100 msg/s", "latency %s (ms)" % q,
                        *((lat(h[k], q) or 0) / 1000 for k in PEERS),
                        False, "ms"))
        out.append(("b room, 100 msg/s", "missing",
                    *(h[k].get("missing") for k in PEERS), False, ""))
        p = (b.get("chat_max") or {}).get("presence_frames")
        if p is not None:
            out.append(("b room", "presence frames while %d members "
                        "connect" % b["chat_max"].get("conns", 0),
                        p, None, None, False, ""))
    c = res.get("pairs")
    if c:
        for q in ("p50", "p99"):
            out.append(("c pairs, 10/s each", "latency %s (ms)" % q,
                        *((lat(c[k], q) or 0) / 1000 for k in PEERS),
                        False, "ms"))
        out.append(("c pairs, 10/s each", "deliveries/s",
                    *(c[k].get("deliveries_per_s") for k in PEERS),
                    True, "/s"))
        out.append(("c pairs, 10/s each", "missing",
                    *(c[k].get("missing") for k in PEERS), False, ""))
    d = res.get("sends")
    if d:
        out.append(("d persisted sends", "acknowledged sends/s",
                    d["chat"].get("acks_per_s"), None, None, True, "/s"))
        out.append(("d persisted sends", "pgbench 64-row INSERT rows/s",
                    d["pgbench_rows_per_s"], None, None, True, "/s"))
        out.append(("d persisted sends", "ack latency p99 (ms)",
                    (lat(d["chat"], "p99", "ack_latency_us") or 0) / 1000,
                    None, None, False, "ms"))
    e = res.get("storm")
    if e:
        out.append(("e reconnect storm",
                    "seconds until %s clients resumed"
                    % e["chat"].get("conns", ""),
                    e["chat"].get("resume_s"), None, None, False, "s"))
        out.append(("e reconnect storm", "resumed / failed",
                    "%s / %s" % (e["chat"].get("resumed"),
                                 e["chat"].get("resume_failed")), None, None,
                    True, ""))
    f = res.get("cluster")
    if f:
        w = f.get("workers", 1)
        where = [k for k in ("one", "two", "three") if "room_" + k in f]
        names = {"one": "same node", "two": "across",
                 "three": "across, 3 nodes"}

        def each(prefix, keys, fn):
            return " / ".join(fmt(fn(f.get(prefix + k) or {})) for k in keys)

        sc = "f %d nodes of %d workers, room 100 msg/s" % (
            3 if "three" in where else 2, w)
        for q in ("p50", "p99"):
            out.append((sc, "latency %s (ms): %s" % (
                q, " / ".join(names[k] for k in where)),
                each("room_", where, lambda r: (lat(r, q) or 0) / 1000),
                None, None, False, ""))
        out.append((sc, "missing: %s" % " / ".join(names[k] for k in where),
                    each("room_", where, lambda r: r.get("missing")),
                    None, None, False, ""))
        for k in where:
            rpm = (f.get("room_" + k) or {}).get("reads_per_message")
            if rpm:
                out.append((sc, "reads per message by node (by worker "
                            "slot), %s" % names[k], reads_text(rpm),
                            None, None, False, ""))
        sends = [k for k in ("one", "two") if "sends_" + k in f]
        sc = "f 2 nodes of %d workers, persisted sends" % w
        label = " / ".join(names[k] for k in sends)
        out.append((sc, "deliveries/s: " + label,
                    each("sends_", sends,
                         lambda r: r.get("deliveries_per_s")),
                    None, None, True, ""))
        out.append((sc, "missing: " + label,
                    each("sends_", sends, lambda r: r.get("missing")),
                    None, None, False, ""))
        if any("read_drain_s" in (f.get("sends_" + k) or {})
               for k in sends):
            out.append((sc, "s from the end of sending until the other "
                        "node read the last change: " + label,
                        each("sends_", sends,
                             lambda r: r.get("read_drain_s")),
                        None, None, False, "s"))
    return out


def reads_text(rpm):
    """{node: {slot: reads per message}} as "b 1.00 (1.00 + 0)"."""
    parts = []
    for node in sorted(rpm):
        slots = [rpm[node][k] for k in sorted(rpm[node], key=int)]
        parts.append("%s %.2f (%s)" % (node, sum(slots), " + ".join(
            "%.2f" % v if v else "0" for v in slots)))
    return ", ".join(parts)


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        if v >= 100:
            return "{:,.0f}".format(v)
        return "%.2f" % v
    return "{:,}".format(v)


def fmt_ratio(r):
    return "-" if r is None else "%.2fx" % r


def table(res):
    lines = ["| scenario | metric | ours | nchan | Socket.IO | "
             "ours vs nchan | ours vs Socket.IO |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for sc, metric, ours, nchan, sio, hb, _ in rows(res):
        rn = rs = None
        if isinstance(ours, (int, float)) and metric != "missing":
            rn = ratio(ours, nchan, hb)
            rs = ratio(ours, sio, hb)
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            sc, metric, fmt(ours), fmt(nchan), fmt(sio), fmt_ratio(rn),
            fmt_ratio(rs)))
    return "\n".join(lines)


def svg(res):
    """One panel per comparable metric: a bar per server, the best one
    full width."""
    panels = [r for r in rows(res)
              if r[3] is not None and r[4] is not None
              and isinstance(r[2], (int, float)) and r[1] != "missing"
              and not r[1].startswith("connected")]
    colors = {"ours": "#2a7ab0", "nchan": "#8c8c8c", "Socket.IO": "#d08a2e"}
    w, bar, gap = 720, 16, 4
    y = 30
    parts = []
    for sc, metric, ours, nchan, sio, hb, unit in panels:
        parts.append('<text x="10" y="%d" font-size="13" '
                     'font-weight="bold">%s: %s (%s)</text>'
                     % (y, sc, metric, "more is better" if hb
                        else "less is better"))
        y += 8
        vals = [("ours", ours), ("nchan", nchan), ("Socket.IO", sio)]
        top = max(v or 0 for _, v in vals) or 1
        for name, v in vals:
            length = (w - 260) * (v or 0) / top
            parts.append('<text x="10" y="%d" font-size="12">%s</text>'
                         % (y + 12, name))
            parts.append('<rect x="90" y="%d" width="%.1f" height="%d" '
                         'fill="%s"/>' % (y, max(length, 1), bar,
                                          colors[name]))
            parts.append('<text x="%.1f" y="%d" font-size="12">%s</text>'
                         % (96 + length, y + 12, fmt(v)))
            y += bar + gap
        y += 18
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
            'font-family="sans-serif" role="img" aria-label="benchmark '
            'results">\n<rect width="100%%" height="100%%" fill="white"/>\n'
            '%s\n</svg>\n' % (w, y, "\n".join(parts)))


def machine():
    def first(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True,
                                  shell=True).stdout.strip()
        except OSError:
            return "?"
    return {
        "date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": first("lscpu | sed -n 's/^Model name: *//p'"),
        "cores": os.cpu_count(),
        "memory": first("free -h | awk '/Mem:/ {print $2}'"),
        "kernel": platform.release(),
        "nginx": first("/usr/sbin/nginx -v 2>&1 | sed 's/.*: //'"),
        "nchan": first("dpkg-query -W -f '${Version}' libnginx-mod-nchan"),
        "node": first("node --version"),
        "socket.io": first("node -p \"require('%s/node_modules/socket.io/"
                           "package.json').version\"" % BENCH),
        "postgresql": first(PGBIN + "/postgres --version"),
        "nofile": first("bash -c 'ulimit -Hn'"),
    }


def write_doc(res, info, args):
    doc = os.path.join(REPO, "docs", "benchmarks.md")
    with open(os.path.join(REPO, "docs", "benchmarks.svg"), "w") as f:
        f.write(svg(res))
    template = os.path.join(BENCH, "benchmarks.md.in")
    with open(template) as f:
        text = f.read()
    m = "\n".join("- %s: %s" % kv for kv in info.items())
    text = text.replace("@TABLE@", table(res)).replace("@MACHINE@", m)
    text = text.replace("@COMMAND@", "make bench" + (
        " BENCH_ARGS='%s'" % " ".join(args) if args else ""))
    with open(doc, "w") as f:
        f.write(text)
    return doc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true",
                    help="small sizes: checks that everything runs")
    ap.add_argument("--only", default="a,b,c,d,e,f")
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--merge", action="store_true",
                    help="keep the last results of the scenarios not run")
    ap.add_argument("--doc-only", action="store_true",
                    help="rewrite docs/benchmarks.md from the last results")
    args = ap.parse_args()

    if args.doc_only:
        with open(os.path.join(WORK, "results.json")) as f:
            res = json.load(f)
        print(table(res))
        write_doc(res, res.get("machine") or machine(), [])
        return

    os.makedirs(WORK, exist_ok=True)
    key = os.path.join(WORK, "jwt.key")
    if not os.path.exists(key):
        with open(key, "wb") as f:
            f.write(os.urandom(64))
    pg_up()
    res = {}
    if args.merge and os.path.exists(os.path.join(WORK, "results.json")):
        with open(os.path.join(WORK, "results.json")) as f:
            res = json.load(f)
    res["machine"] = machine()
    try:
        for s in args.only.split(","):
            name, fn = SCENARIOS[s]
            log("== %s) %s" % (s, name))
            res[name] = fn(args.quick)
            with open(os.path.join(WORK, "results.json"), "w") as f:
                json.dump(res, f, indent=1)
    finally:
        pg_stop()
    print(table(res))
    if not args.no_doc and not args.quick:
        doc = write_doc(res, res["machine"], sys.argv[1:])
        print("\nwrote %s and docs/benchmarks.svg" % doc)


if __name__ == "__main__":
    main()
