"""Security review findings about search (issue 13): M2, L5, I3.

Real nginx with the module, real PostgreSQL, HTTP/1.1 on raw sockets (the
Conn of chatlib.py).  Large corpora are seeded through SQL as the
superuser; nginx runs as chat_nginx.

- M2: message search cannot starve storage: a per-user bucket
  (chat_search_rate), at most two searches of one user in flight in a
  worker, one search at a time per worker on the pool, bounded work in
  chat.api_messages_search (the newest 1000 matches ranked, a time
  budget answered too_large, no query of negations only).
- L5: control characters in REST query arguments are 400 bad_request,
  with no [error] line.
- I3: snippet highlights cannot be forged by a message body.
"""

import statistics
import threading
import time

import psycopg
import pytest
from psycopg.types.json import Jsonb

from chatlib import API_LOCATIONS, TIMEOUT, group, quote, send


# the environment (conftest.py's chat_env), as in test_api.py
CHAT_ENV = dict(locations=API_LOCATIONS, timeout=TIMEOUT)

CONTROL = "query arguments must be UTF-8 without control characters"
TOO_BROAD = "query too broad: narrow it down (more words, conversation_id)"


def assert_limited(r):
    """429 rate_limited with Retry-After, the keep-alive kept."""
    assert r.status == 429, r
    body = r.json()["error"]
    assert body["code"] == "rate_limited", r
    assert body["message"] == "too many requests, slow down", r
    assert body["retry_after_ms"] > 0, r
    assert int(r.header("retry-after")) >= 1, r
    assert r.keep_alive, r


def seed(env, owner, n, member=None):
    """A group of owner (and member) with n messages of 40 words drawn
    from w0..w4999, low numbers far more common (w1 is in about half of
    them); its id."""
    cid = env.sql(
        "INSERT INTO chat.conversations (kind, title, created_by, last_seq) "
        "VALUES ('group', 'big', %s, %s) RETURNING id", (owner, n))[0][0]
    env.sql("INSERT INTO chat.users (id, name) VALUES (%s, %s) "
            "ON CONFLICT DO NOTHING", (owner, owner))
    env.sql("INSERT INTO chat.members (conversation_id, user_id, role) "
            "VALUES (%s, %s, 'owner')", (cid, owner))
    if member:
        env.sql("INSERT INTO chat.users (id, name) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING", (member, member))
        env.sql("INSERT INTO chat.members (conversation_id, user_id) "
                "VALUES (%s, %s)", (cid, member))
    env.sql(
        "INSERT INTO chat.messages (conversation_id, seq, updated_seq, "
        "sender_id, body, client_msg_id) "
        "SELECT %s, g, g, %s, (SELECT string_agg('w' || "
        "floor(power(random(), 3) * 5000)::int, ' ') "
        "FROM generate_series(1, 40) x WHERE x > 0 * g), 'seed' || g "
        "FROM generate_series(1, %s) g", (cid, owner, n))
    env.sql("ANALYZE chat.messages")
    return cid


# --------------------------------------------------------------------------
# L5: control characters in query arguments

L5_CASES = [
    "messages/search?q=%00",
    "messages/search?q=fox%00",
    "messages/search?q=%00fox",
    "messages/search?q=a%0Ab",
    "messages/search?q=a%09b",
    "messages/search?q=a%1Fb",
    "messages/search?q=a%7Fb",
    "messages/search?q=fox&limit=%00",
    "messages/search?q=fox&offset=1%00",
    "messages/search?q=fox&conversation_id=%00",
    "users/search?q=%00",
    "users/search?q=bo%0D",
    "users/search?q=bo&limit=2%00",
    "conversations?before=%00",
    "conversations?limit=%01",
    "conversations?archived=true%00",
    "conversations/1/messages?before_seq=%00",
    "conversations/1/messages?after_seq=1%00",
    "conversations/1/messages?limit=%1B",
]


def test_l5_control_characters_in_query_arguments_are_400(env):
    """L5: NUL (and any C0 control or DEL) in a string argument of any
    REST route was 503 "retry later" and an [error] line from
    PostgreSQL's jsonb; now 400 bad_request, nothing logged at [error],
    the keep-alive connection still answers."""
    env.start()
    alice = env.conn("alice")
    alice.alive()
    for path in L5_CASES:
        alice.error("GET", path, "bad_request", CONTROL)
    alice.alive()
    # a tab or a line break is no word separator a query needs
    assert alice.ok("GET", "messages/search?q=" + quote("fox den")) == \
        {"results": [], "has_more": False}
    errors = [line for line in env.ng.error_log().splitlines()
              if "[error]" in line]
    assert errors == []


# --------------------------------------------------------------------------
# I3: forged highlights

def test_i3_a_body_cannot_fake_a_highlight(env):
    """I3: ts_headline marked matches with « and », so a body holding
    «…» came out highlighted.  snippet_parts says which text matched,
    whatever the body holds (« », the \\x01 and \\x02 used inside, HTML);
    snippet keeps « and » for the matches only."""
    env.start()
    alice = env.conn("alice")
    cid = group(alice, "g", ["bob"])["id"]
    bodies = {
        "guillemets": "«urgent» read «this» fox now",
        "controls": "\x01urgent\x02 read fox \x01now\x02",
        "nested": "««fox»» and »fox«",
        "html": "<b>bold</b> fox <mark>marked</mark>",
    }
    ids = {k: send(alice, cid, b)["id"] for k, b in bodies.items()}

    found = alice.ok("GET", "messages/search?q=fox&limit=50")["results"]
    by_id = {r["message"]["id"]: r for r in found}
    assert set(by_id) == set(ids.values())
    for name, mid in ids.items():
        r = by_id[mid]
        assert r["message"]["body"] == bodies[name]   # the body unchanged
        parts = r["snippet_parts"]
        assert [p["text"] for p in parts if p["match"]] \
            == ["fox"] * bodies[name].count("fox"), (name, parts)
        for p in parts:
            assert set(p) == {"text", "match"} and p["text"], parts
            assert "\x01" not in p["text"] and "\x02" not in p["text"]
        # the string form: « and » around matches only
        s = r["snippet"]
        assert s.count("«") == s.count("»") == bodies[name].count("fox"), s
        assert s.replace("«fox»", "").count("«") == 0, s

    # parts hold the text as it is; the string shows a body's « » as ‹ ›
    assert by_id[ids["guillemets"]]["snippet_parts"] == [
        {"text": "urgent» read «this» ", "match": False},
        {"text": "fox", "match": True}]
    assert by_id[ids["guillemets"]]["snippet"] == \
        "urgent› read ‹this› «fox»"
    alice.alive()


# --------------------------------------------------------------------------
# M2: search cannot starve storage

def test_m2_search_rate_has_a_default_and_can_be_set(env):
    """M2: each user has a bucket of searches: by default 1r/s burst=20
    (with chat_zone), 429 rate_limited with Retry-After past it."""
    env.start(http="chat_zone chat 16m;")
    alice = env.conn("alice")
    bob = env.conn("bob")
    codes = [alice.request("GET", "messages/search?q=fox").status
             for _ in range(30)]
    assert codes[:20] == [200] * 20, codes
    assert 429 in codes[20:], codes
    assert_limited(alice.request("GET", "messages/search?q=fox"))
    # the bucket is alice's: bob searches, and alice still sends
    assert bob.request("GET", "messages/search?q=fox").status == 200
    cid = group(alice, "g", ["bob"])["id"]
    send(alice, cid, "still sending")
    # users/search is not in it
    assert alice.request("GET", "users/search?q=bo").status == 200


def test_m2_search_rate_directive(env):
    """M2: chat_search_rate RATE [burst=N] and off."""
    env.start(http="chat_zone chat 16m; chat_search_rate 1r/m;",
              loc="location /api/chat/open/ { chat_api; "
                  "chat_search_rate off; }")
    alice = env.conn("alice")
    assert alice.request("GET", "messages/search?q=fox").status == 200
    assert_limited(alice.request("GET", "messages/search?q=fox"))
    for _ in range(40):
        r = alice.request("GET", "/api/chat/open/messages/search?q=fox")
        assert r.status == 200, r


def test_m2_search_rate_directive_is_checked(nginx):
    for bad in ("0r/s", "1r/h", "1r/s burst=0", "1r/s x=1", "on"):
        rc, out = nginx.check_config(
            "location /api/chat/ { chat_api; }",
            http="chat_search_rate %s;" % bad)
        assert rc != 0 and "invalid value" in out, (bad, out)
    rc, out = nginx.check_config(
        "location /api/chat/ { chat_api; chat_search_rate 5r/m burst=3; }",
        http="chat_search_rate off;")
    assert rc == 0, out


def searches_waiting(env):
    return env.sql(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'chat_nginx' "
        "AND query LIKE '%api_messages_search%' AND state = 'active'")[0][0]


def test_m2_one_search_per_worker_two_per_user(env):
    """M2: searches held behind a lock on chat.messages: one user's third
    search is 429 at once; of two users' searches only one runs on the
    pool (the other waits behind it), so the pool's other connection
    still serves everything else."""
    env.start(http="chat_zone chat 16m; chat_search_rate off;",
              pg_params="queue_timeout=5s")
    env.conn("alice").ok("GET", "users/me")
    env.conn("bob").ok("GET", "users/me")
    cid = group(env.conn("alice"), "g", ["bob"])["id"]

    results = {}

    def search(key, user):
        c = env.conn(user)
        r = c.request("GET", "messages/search?q=fox")
        results[key] = r

    lock = env.pg.connect(autocommit=False)
    threads = []
    try:
        lock.execute("LOCK TABLE chat.messages IN ACCESS EXCLUSIVE MODE")
        for key, user in (("a1", "alice"), ("a2", "alice"), ("b1", "bob")):
            t = threading.Thread(target=search, args=(key, user))
            t.start()
            threads.append(t)
            time.sleep(0.3)
        # the third of alice's: refused without waiting
        alice = env.conn("alice")
        t0 = time.monotonic()
        assert_limited(alice.request("GET", "messages/search?q=fox"))
        assert time.monotonic() - t0 < 1
        # one search runs (waits for the lock), the others wait for it
        assert searches_waiting(env) == 1
        # the pool's other connection serves requests meanwhile
        t0 = time.monotonic()
        assert alice.ok("GET", "blocks") == {"blocks": []}
        assert alice.ok("GET", "users/search?q=bo")["users"]
        assert time.monotonic() - t0 < 1.5
    finally:
        lock.rollback()
        lock.close()
    for t in threads:
        t.join(TIMEOUT)
    assert sorted(r.status for r in results.values()) == [200, 200, 200], \
        results
    send(alice, cid, "after")
    assert searches_waiting(env) == 0


def test_m2_sends_keep_working_while_a_user_floods_search(env):
    """M2 as the review found it: one user with a large corpus runs
    searches from 8 threads (no rate limit, to test the pool alone);
    another user's REST sends all succeed, each well within the 2 s
    queue timeout."""
    env.start(http="chat_zone chat 16m; chat_search_rate off;")
    seed(env, "mallory", 30000)
    alice = env.conn("alice")
    cid = group(alice, "g", ["bob"])["id"]
    send(alice, cid, "warm up")

    queries = ["w1", "w1 or w2 or w3 or w4 or w5 or w6 or w7 or w8 or w9",
               '"w1 w2"', "w2 w3 -w1"]
    stop = threading.Event()
    flood = []

    def flooder(i):
        c = env.conn("mallory")
        n = 0
        while not stop.is_set():
            try:
                r = c.request("GET", "messages/search?q="
                              + quote(queries[n % len(queries)]))
            except (OSError, AssertionError):
                r = None
            n += 1
            if r is not None:
                flood.append(r.status)
            if r is None or not r.keep_alive:
                # keepalive_requests (1000) closes connections
                c = env.conn("mallory")

    threads = [threading.Thread(target=flooder, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        latencies = []
        statuses = []
        for i in range(25):
            t0 = time.monotonic()
            r = alice.request(
                "POST", "conversations/%d/messages" % cid,
                obj={"body": "hello %d" % i, "client_msg_id": "f%d" % i})
            latencies.append(time.monotonic() - t0)
            statuses.append(r.status)
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(TIMEOUT)
    assert statuses == [201] * 25, (statuses, latencies)
    assert max(latencies) < 1.0, latencies
    # the flood itself is served or refused, never left to time out
    assert flood and set(flood) <= {200, 429}, set(flood)
    assert flood.count(200) > 0


def median_time(conn, sql, params, check=None, runs=3):
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        row = conn.execute(sql, params).fetchone()
        times.append(time.monotonic() - t0)
        if check:
            check(row[0])
    return statistics.median(times)


def test_m2_search_of_100k_messages_is_fast(env):
    """M2: on 100k messages (one user's), a search ranks only the newest
    1000 index matches.  Before, it ranked every match: 0.84 s for a
    common word, 1.9 s for a long "or", 2.2 s for negations only (now
    refused) on a quiet machine; now 50-80 ms.  The machine is shared, so
    what is asserted is against the work the old query did, timed at the
    same moment: ts_rank over every match.  Printed with -s."""
    env.start()
    seed(env, "mallory", 100000)
    queries = {
        "common word": "w1",
        "rare word": "w4000",
        "13 words or": " or ".join("w%d" % i for i in range(1, 14)),
        "phrase of common words": '"w1 w2"',
        "no match": "zzz",
        "last page": "w1",
    }
    times = {}
    old = {}

    def ok(out):
        assert "ok" in out, out

    with psycopg.connect(env.pg.dsn, autocommit=True) as conn, \
            env.pg.connect() as admin:
        for name, q in queries.items():
            req = {"q": q, "limit": 50}
            if name == "last page":
                req["offset"] = 950
            times[name] = median_time(
                conn, "SELECT chat.api_messages_search(%s, %s)",
                ("mallory", Jsonb(req)), ok)
            # the old query's core: every match ranked, through the index
            old[name] = median_time(
                admin, "SELECT count(*) FROM (SELECT id, ts_rank("
                "to_tsvector('simple', body), websearch_to_tsquery("
                "'simple', %s)) AS r FROM chat.messages WHERE to_tsvector("
                "'simple', body) @@ websearch_to_tsquery('simple', %s) "
                "AND deleted_at IS NULL "
                "ORDER BY r DESC, id DESC LIMIT 51) x", (q, q))
        # negations only: refused at once, the index cannot answer it
        out = conn.execute("SELECT chat.api_messages_search(%s, %s)",
                           ("mallory", Jsonb({"q": "-w1 -w2 -w3"}))
                           ).fetchone()[0]
        assert out == {"error": {"code": "bad_request", "message":
                                 "q needs a word that is not negated"}}
    ms = lambda d: {k: round(v * 1000, 1) for k, v in d.items()}  # noqa
    print("\nsearch on 100k messages (median of 3, ms):", ms(times),
          "\nranking every match as before (ms):", ms(old))
    for name in ("common word", "13 words or", "last page"):
        assert times[name] < old[name] / 3, (name, ms(times), ms(old))


@pytest.fixture
def budget(postgres):
    """chat.search_budget_ms for nginx's role, put back afterwards."""
    def set_(ms):
        postgres.query("ALTER ROLE chat_nginx SET chat.search_budget_ms = "
                       "'%d'" % ms)
    yield set_
    postgres.query("ALTER ROLE chat_nginx RESET chat.search_budget_ms")


def test_m2_search_over_its_time_budget_is_too_large(env, budget):
    """M2: a search that runs out of its time budget (500 ms by default;
    here 1 ms, set for chat_nginx) stops and is answered 413 too_large
    "query too broad", not 503 after holding a connection."""
    seed(env, "mallory", 20000)
    budget(1)
    env.start(http="chat_search_rate off;")
    c = env.conn("mallory")
    c.error("GET", "messages/search?q=" + quote("w1 or w2 or w3"),
            "too_large", TOO_BROAD)
    c.error("GET", "messages/search?q=" + quote('"w1 w2"'),
            "too_large", TOO_BROAD)
    c.alive()
    # a narrow query is done within it
    assert c.ok("GET", "messages/search?q=nomatch") == \
        {"results": [], "has_more": False}


def test_m2_negations_only_are_refused(env):
    """M2: a query of negated words only matches nearly everything and
    cannot use the index: 400, however it is written."""
    env.start()
    alice = env.conn("alice")
    cid = group(alice, "g", ["bob"])["id"]
    send(alice, cid, "the quick brown fox")
    for q in ("-fox", "-fox -dog", "fox or -dog", "-\"brown fox\""):
        alice.error("GET", "messages/search?q=" + quote(q), "bad_request",
                    "q needs a word that is not negated")
    assert len(alice.ok("GET", "messages/search?q=" + quote("fox -dog"))
               ["results"]) == 1
