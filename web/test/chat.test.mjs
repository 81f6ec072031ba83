// web/chat.js against a real nginx with the module and a real PostgreSQL,
// started by t/test_chatjs.py, which passes:
//   CHAT_JS_PORT       nginx's port (/chat/ws, /chat/ws-short with
//                      chat_jwt_leeway 0, /api/chat/)
//   CHAT_JS_KEY_FILE   the HS256 key of chat_jwt_key
//   CHAT_JS_NGINX_PID  nginx's master, for a reload (SIGHUP)
// Run: node --test test/   (from web/, after npm ci)

import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import WebSocket from "ws";

import { ChatClient, ChatError } from "../chat.js";

const PORT = process.env.CHAT_JS_PORT;
const KEY_FILE = process.env.CHAT_JS_KEY_FILE;
const NGINX_PID = Number(process.env.CHAT_JS_NGINX_PID);
if (!PORT || !KEY_FILE) {
  throw new Error("run through t/test_chatjs.py (CHAT_JS_PORT, CHAT_JS_KEY_FILE)");
}
const KEY = readFileSync(KEY_FILE);
const WS_URL = `ws://127.0.0.1:${PORT}/chat/ws`;
const WS_SHORT = `ws://127.0.0.1:${PORT}/chat/ws-short`;
const API = `http://127.0.0.1:${PORT}/api/chat/`;
const WAIT = 30000;         // generous: the suite also runs under ASan
const T = { timeout: 90000 };   // a test that hangs fails, and the rest run

// ------------------------------------------------------------- helpers

function mint(sub, { expIn = 3600, key = KEY } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const input = b64({ alg: "HS256", typ: "JWT" }) + "." +
    b64({ sub, iat: now, exp: now + expIn, jti: randomUUID() });
  return input + "." + createHmac("sha256", key).update(input).digest("base64url");
}

/** Fresh user ids for one test: the tests share one database. */
function users(...names) {
  const tag = randomBytes(4).toString("hex");
  return names.map((n) => `${n}-${tag}`);
}

/** A ws WebSocket that a test can watch and break: every socket of the
 *  client is in `sockets`; `out` and `inc` see every frame sent and
 *  received (returning a string from out replaces the frame, returning
 *  false from inc hides it from the client). */
function trackedWebSocket(box) {
  return class TrackedWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      box.sockets.push(this);
    }
    send(data, ...rest) {
      box.sent.push(String(data));
      const replaced = box.out ? box.out(String(data), this) : undefined;
      super.send(typeof replaced === "string" ? replaced : data, ...rest);
    }
    emit(name, ...args) {
      if (name === "message" && !args[1]) {
        const text = args[0].toString();
        box.received.push(text);
        if (box.inc && box.inc(text, this) === false) return true;
      }
      return super.emit(name, ...args);
    }
  };
}

/** A ChatClient for user, closed when the test ends; .box has its
 *  sockets and frames. */
function client(t, user, options = {}) {
  const box = { sockets: [], sent: [], received: [], out: null, inc: null };
  const chat = new ChatClient({
    url: WS_URL, apiBase: API, token: mint(user),
    WebSocket: trackedWebSocket(box), backoff: { min: 100, max: 1000 },
    ...options,
  });
  chat.box = box;
  chat.lastSocket = () => box.sockets[box.sockets.length - 1];
  t.after(() => chat.close());
  return chat;
}

/** The next event of type that satisfies pred. */
function waitFor(chat, type, pred = () => true, ms = WAIT) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${type} event in ${ms} ms`));
    }, ms);
    const off = chat.on(type, (ev) => {
      if (!pred(ev)) return;
      clearTimeout(timer);
      off();
      resolve(ev);
    });
  });
}

/** Every event of type from now on. */
function collect(chat, type) {
  const list = [];
  chat.on(type, (ev) => list.push(ev));
  return list;
}

function deferred() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(cond, what, ms = WAIT) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const frames = (list, type) =>
  list.map((s) => JSON.parse(s)).filter((f) => f.type === type);

/** alice and bob, connected, in a direct conversation; options may be a
 *  function of the user id. */
async function pair(t, aliceOptions = {}, bobOptions = {}) {
  const [A, B] = users("alice", "bob");
  const opts = (o, u) => (typeof o === "function" ? o(u) : o);
  const alice = client(t, A, opts(aliceOptions, A));
  const bob = client(t, B, opts(bobOptions, B));
  await Promise.all([alice.connect(), bob.connect()]);
  // connect() resolves at the welcome; the first sync may still run, and
  // cursors events show meanwhile are held until it ends (_advance)
  await Promise.all([synced(alice), synced(bob)]);
  const conv = await alice.createConversation({ kind: "direct", userId: B });
  return { A, B, alice, bob, conv };
}

function synced(c) {
  return c._synced ? Promise.resolve() : waitFor(c, "synced");
}

/** Sends marker from alice and waits until bob has it: every event
 *  before it on bob's connection has arrived by then. */
async function marker(alice, bob, conv, body = "marker") {
  const seen = waitFor(bob, "message.created", (e) => e.message.body === body);
  const m = await alice.send(conv.id, body);
  await seen;
  return m;
}

// --------------------------------------------------------------- tests

test("connect, send and receive, history, cursors", T, async (t) => {
  const [A, B] = users("alice", "bob");
  const alice = client(t, A);
  const bob = client(t, B);
  const states = collect(alice, "state");
  const welcome = await alice.connect();
  assert.equal(welcome.user.id, A);
  assert.equal(welcome.protocol, "chat.v1");
  assert.equal(alice.state, "open");
  assert.deepEqual(states.map((s) => s.state), ["connecting", "open"]);
  // the token went as access_token, with the subprotocol
  assert.equal(alice.lastSocket().protocol, "chat.v1");
  assert.match(alice.lastSocket().url, /[?&]access_token=/);
  await bob.connect();

  const created = waitFor(bob, "conversation.created");
  const conv = await alice.createConversation({ kind: "direct", userId: B,
                                                ref: "ad:1" });
  assert.equal(conv.kind, "direct");
  assert.equal(conv.ref, "ad:1");
  assert.equal((await created).conversation.id, conv.id);

  const bobGets = waitFor(bob, "message.created");
  const aliceGets = waitFor(alice, "message.created");
  const m = await alice.send(conv.id, "hello bob");
  assert.equal(m.body, "hello bob");
  assert.equal(m.sender_id, A);
  assert.equal(m.conversation_id, conv.id);
  assert.match(m.client_msg_id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-/);
  assert.deepEqual((await bobGets).message, m);
  assert.deepEqual((await aliceGets).message, m);
  assert.equal(bob.cursors[conv.id], m.seq);
  assert.equal(alice.cursors[conv.id], m.seq);
  assert.deepEqual(alice.outbox, []);

  // a reply with an attachment (bob's own upload) and our own client_msg_id
  const text = "hello attachments " + randomUUID() + "\n";
  const up = await bob.upload(new Blob([text]), { name: "a.txt" });
  const reply = await bob.send(conv.id, "hi alice", {
    clientMsgId: "c-1", replyTo: m.id, attachments: [{ upload_id: up.id }] });
  assert.equal(reply.client_msg_id, "c-1");
  assert.equal(reply.reply_to, m.id);
  assert.deepEqual(reply.attachments, [{
    upload_id: up.id, name: "a.txt", type: "text/plain; charset=utf-8",
    size: text.length, width: null, height: null,
    url: `/api/chat/files/${up.id}`, thumbnail: null }]);

  // history answers move the cursors too: a client whose sync replays
  // nothing (its sync goes out as a ping) learns them from history
  const late = client(t, B);
  late.box.out = (data) => {
    const f = JSON.parse(data);
    return f.type === "sync" ? JSON.stringify({ type: "ping", id: f.id }) : undefined;
  };
  await late.connect();
  await waitFor(late, "synced");
  assert.equal(late.cursors[conv.id], undefined);
  const h = await late.history(conv.id);
  assert.equal(late.cursors[conv.id], reply.seq);
  assert.deepEqual(h.messages.map((x) => x.id), [m.id, reply.id]);
  assert.equal(h.has_more, false);
  const older = await bob.history(conv.id, { beforeSeq: reply.seq, limit: 1 });
  assert.deepEqual(older.messages.map((x) => x.id), [m.id]);

  // edit, delete, read: the events carry the new updated_seq
  const updated = waitFor(bob, "message.updated");
  const edited = await alice.edit(m.id, "hello, bob");
  assert.equal(edited.body, "hello, bob");
  assert.ok(edited.edited_at);
  assert.equal((await updated).message.updated_seq, edited.updated_seq);
  assert.equal(bob.cursors[conv.id], edited.updated_seq);
  const deleted = waitFor(bob, "message.deleted");
  const gone = await alice.remove(m.id);
  assert.equal(gone.deleted, true);
  assert.equal((await deleted).message.id, m.id);
  assert.equal(bob.cursors[conv.id], gone.updated_seq);

  const receipt = waitFor(bob, "receipt");
  const read = await alice.markRead(conv.id, reply.seq);
  assert.equal(read.last_read_seq, reply.seq);
  assert.equal(read.unread_count, 0);
  assert.equal((await receipt).kind, "read");

  const list = await bob.conversations({ limit: 10 });
  assert.deepEqual(list.conversations.map((c) => c.id), [conv.id]);
  // the members, a page at a time
  const first = await bob.members(conv.id, { limit: 1 });
  assert.equal(first.members.length, 1);
  const rest = await bob.members(conv.id, { after: first.next });
  assert.equal(rest.next, null);
  assert.deepEqual([...first.members, ...rest.members].map((m) => m.user_id),
                   conv.members.map((m) => m.user_id));
  const presence = await alice.presence([B, "nobody-" + B]);
  assert.equal(presence[B].online, true);
  // someone alice shares nothing with is unknown to her (null), not offline
  assert.equal(presence["nobody-" + B], null);
});

test("presence by interest: subscribePresence, again after a reconnect; presenceCount", T, async (t) => {
  const [A, B, C] = users("alice", "bob", "carol");
  const alice = client(t, A);
  const carol = client(t, C);
  await Promise.all([alice.connect(), carol.connect()]);
  // a group only: carol is not watched until alice asks
  const g = await alice.createConversation({ kind: "group", title: "g", members: [B, C] });
  const p = await alice.subscribePresence([C, C, "nobody-" + C]);
  assert.deepEqual(p, { [C]: { online: true, last_seen: null }, ["nobody-" + C]: null });
  assert.deepEqual(frames(alice.box.sent, "presence.subscribe").at(-1).user_ids,
                   [C, "nobody-" + C]);
  assert.deepEqual(await alice.presenceCount(g.id),
                   { conversation_id: g.id, members: 3, online: 2 });

  // a new connection starts from the default set: chat.js subscribes again
  const again = waitFor(alice, "presence.subscribed", (e) => e.reconnect);
  alice.lastSocket().terminate();
  assert.deepEqual((await again).presence[C], { online: true, last_seen: null });
  assert.deepEqual(frames(alice.box.sent, "presence.subscribe").at(-1).user_ids,
                   [C, "nobody-" + C]);
  // so bob's coming (the group's third member) is told: alice asked for
  // carol only, and then for bob too
  await alice.subscribePresence([C, B]);
  const bobOnline = waitFor(alice, "presence", (e) => e.user_id === B && e.online);
  const bob = client(t, B);
  await bob.connect();
  await bobOnline;
  assert.equal((await alice.presenceCount(g.id)).online, 3);
});

test("reconnect and resume: missed messages come once, in order", T, async (t) => {
  let gate = deferred();
  gate.resolve();
  const { alice, bob, conv } = await pair(t, {}, (B) => ({
    token: async () => { await gate.promise; return mint(B); } }));
  const before = await marker(alice, bob, conv, "before");
  assert.equal(bob.cursors[conv.id], before.seq);

  const states = collect(bob, "state");
  const closes = collect(bob, "close");
  const got = collect(bob, "message.created");
  gate = deferred();                    // bob cannot come back yet
  bob.lastSocket().terminate();
  await waitFor(bob, "state", (s) => s.state === "connecting");
  const sent = [];
  for (const body of ["one", "two", "three"]) {
    sent.push(await alice.send(conv.id, body));
  }
  assert.equal(bob.state, "connecting");
  gate.resolve();
  await waitFor(bob, "synced");
  const last = await marker(alice, bob, conv, "after");

  assert.deepEqual(got.map((e) => e.message.body), ["one", "two", "three", "after"]);
  assert.deepEqual(got.slice(0, 3).map((e) => e.message), sent);
  assert.deepEqual(states.map((s) => s.state), ["reconnecting", "connecting", "open"]);
  assert.equal(closes.length, 1);
  assert.equal(closes[0].willReconnect, true);
  assert.equal(bob.cursors[conv.id], last.seq);
  // one sync on the new connection, with the cursor of "before"
  const syncs = frames(bob.box.sent, "sync");
  assert.deepEqual(syncs.at(-1).conversations, { [conv.id]: before.seq });
  assert.equal(bob.box.sockets.length, 2);
});

test("an event seen live and again in a sync is emitted once", T, async (t) => {
  const { alice, bob, conv } = await pair(t);
  const seen = await marker(alice, bob, conv, "seen live");
  const got = collect(bob, "message.created");
  // bob's next sync asks for everything: the server replays "seen live"
  let rewritten = 0;
  bob.box.out = (data) => {
    const f = JSON.parse(data);
    if (f.type !== "sync") return undefined;
    rewritten++;
    return JSON.stringify({ ...f, conversations: {} });
  };
  bob.box.received.length = 0;
  bob.lastSocket().terminate();
  await waitFor(bob, "state", (s) => s.state === "reconnecting");
  const missed = await alice.send(conv.id, "missed");
  await waitFor(bob, "synced");
  await marker(alice, bob, conv, "after");

  assert.ok(rewritten >= 1);
  const replayed = frames(bob.box.received, "message.created")
    .map((f) => f.message.id);
  assert.ok(replayed.includes(seen.id), "the server replayed it");
  assert.deepEqual(got.map((e) => e.message.body).filter((b) => b !== "missed"),
                   ["after"]);
  assert.equal(got.filter((e) => e.message.id === missed.id).length, 1);
});

test("a live event during a sync does not move the cursor past the sync", T, async (t) => {
  let gate = deferred();
  gate.resolve();
  const { alice, bob, conv } = await pair(t, {}, (B) => ({
    token: async () => { await gate.promise; return mint(B); } }));
  const before = await marker(alice, bob, conv, "before");
  const got = collect(bob, "message.created");
  // the next sync is held back (a ping without id goes instead), so a
  // live message arrives while it is pending, and then the connection
  // drops before any answer
  let held = 0;
  bob.box.out = (data) => {
    if (JSON.parse(data).type !== "sync") return undefined;
    held++;
    bob.box.out = null;
    return JSON.stringify({ type: "ping" });
  };
  gate = deferred();
  bob.lastSocket().terminate();
  await waitFor(bob, "state", (s) => s.state === "connecting");
  const m1 = await alice.send(conv.id, "missed");
  const opened = waitFor(bob, "open");
  gate.resolve();
  await opened;
  const live = waitFor(bob, "message.created", (e) => e.message.body === "live");
  const m2 = await alice.send(conv.id, "live");
  await live;
  assert.equal(held, 1);
  assert.equal(bob.cursors[conv.id], before.seq, "not moved during the sync");
  bob.lastSocket().terminate();
  await waitFor(bob, "synced");
  await marker(alice, bob, conv, "after");
  assert.deepEqual(got.map((e) => e.message.id),
                   [m2.id, m1.id, got.at(-1).message.id]);
  assert.equal(got.at(-1).message.body, "after");
  assert.equal(frames(bob.box.sent, "sync").at(-1).conversations[conv.id], before.seq);
});

test("a send whose answer is lost is retried once and stored once", T, async (t) => {
  const { alice, bob, conv } = await pair(t);
  const bobGot = collect(bob, "message.created");
  const aliceGot = collect(alice, "message.created");
  const id = "retry-" + randomUUID();
  // the server stores the message, then alice's connection dies before
  // its answer reaches her
  let dropped = 0;
  alice.box.inc = (text, ws) => {
    const f = JSON.parse(text);
    if (f.type === "ok" && f.data && f.data.message
        && f.data.message.client_msg_id === id && dropped === 0) {
      dropped++;
      ws.terminate();
      return false;
    }
    return undefined;
  };
  const m = await alice.send(conv.id, "exactly once", { clientMsgId: id });
  assert.equal(dropped, 1);
  assert.equal(alice.box.sockets.length, 2);
  assert.equal(frames(alice.box.sent, "message.send")
    .filter((f) => f.client_msg_id === id).length, 2, "sent again");
  assert.deepEqual(alice.outbox, []);
  await marker(alice, bob, conv);

  const h = await bob.history(conv.id);
  assert.deepEqual(h.messages.filter((x) => x.client_msg_id === id), [m]);
  assert.deepEqual(bobGot.filter((e) => e.message.client_msg_id === id)
    .map((e) => e.message), [m]);
  await until(() => aliceGot.some((e) => e.message.body === "marker"), "marker");
  assert.equal(aliceGot.filter((e) => e.message.client_msg_id === id).length, 1);
});

test("a send cut off on its way is stored once", T, async (t) => {
  const { alice, bob, conv } = await pair(t);
  const bobGot = collect(bob, "message.created");
  const id = "cut-" + randomUUID();
  alice.box.out = (data, ws) => {
    if (data.includes(id)) {
      alice.box.out = null;
      setImmediate(() => ws.terminate());   // right behind the frame
    }
    return undefined;
  };
  const m = await alice.send(conv.id, "cut", { clientMsgId: id });
  assert.equal(alice.box.sockets.length, 2);
  await marker(alice, bob, conv);
  const h = await bob.history(conv.id);
  assert.deepEqual(h.messages.filter((x) => x.client_msg_id === id), [m]);
  assert.equal(bobGot.filter((e) => e.message.client_msg_id === id).length, 1);
});

test("sends during an nginx reload: each stored once, in order", T, async (t) => {
  assert.ok(NGINX_PID > 0, "CHAT_JS_NGINX_PID");
  const { alice, bob, conv } = await pair(t);
  const bobGot = collect(bob, "message.created");
  const aliceClosed = waitFor(alice, "close");
  const bobClosed = waitFor(bob, "close");
  const codes = [];
  alice.on("close", (e) => codes.push(e.code));
  process.kill(NGINX_PID, "SIGHUP");
  const sends = [];
  let closed = false;
  aliceClosed.then(() => { closed = true; });
  // while the old worker closes alice's connection
  for (let i = 0; i < 200 && !closed; i++) {
    sends.push(alice.send(conv.id, `r${i}`));
    await sleep(10);
  }
  await aliceClosed;
  for (let i = 0; i < 3; i++) sends.push(alice.send(conv.id, `after${i}`));
  const stored = await Promise.all(sends);
  await bobClosed;
  await marker(alice, bob, conv);
  assert.equal(codes[0], 1001);

  const bodies = stored.map((m) => m.body);
  const seqs = stored.map((m) => m.seq);
  assert.deepEqual([...seqs].sort((a, b) => a - b), seqs, "in the order sent");
  assert.equal(new Set(seqs).size, seqs.length);
  const h = await bob.history(conv.id, { limit: 100 });
  assert.deepEqual(h.messages.filter((x) => x.body !== "marker")
    .map((x) => x.body), bodies);
  assert.deepEqual(bobGot.filter((e) => e.message.body !== "marker")
    .map((e) => e.message.body), bodies);
});

test("a request pending when the connection drops is unavailable", T, async (t) => {
  const { alice } = await pair(t);
  const p = alice.history(1);
  alice.lastSocket().terminate();
  await assert.rejects(p, (e) => e instanceof ChatError && e.code === "unavailable");
  await waitFor(alice, "open");
  // after the reconnect, requests work again
  assert.ok((await alice.request("ping")).time);
});

test("typing is throttled and stopped", T, async (t) => {
  const { alice, bob, conv } = await pair(t, { typingInterval: 500,
                                               typingTimeout: 800 });
  const typing = collect(bob, "typing");
  for (let i = 0; i < 10; i++) alice.typing(conv.id);
  await waitFor(bob, "typing", (e) => e.active === true);
  alice.stopTyping(conv.id);
  await waitFor(bob, "typing", (e) => e.active === false);
  assert.deepEqual(typing.map((e) => [e.user_id, e.active]),
                   [[alice.user.id, true], [alice.user.id, false]]);
  let out = frames(alice.box.sent, "typing").map((f) => f.active);
  assert.deepEqual(out, [true, false]);

  // called again after the interval: active again; silent for the
  // timeout: the client itself says active: false
  alice.typing(conv.id);
  await sleep(600);
  alice.typing(conv.id);
  await waitFor(bob, "typing", (e) => e.active === false);
  out = frames(alice.box.sent, "typing").map((f) => f.active);
  assert.deepEqual(out, [true, false, true, true, false]);

  // a send ends the typing
  alice.typing(conv.id);
  await alice.send(conv.id, "done typing");
  out = frames(alice.box.sent, "typing").map((f) => f.active);
  assert.deepEqual(out.slice(-2), [true, false]);
});

test("typing with the default throttle: one active per 3 s", T, async (t) => {
  const { alice, bob, conv } = await pair(t);
  const typing = collect(bob, "typing");
  for (let i = 0; i < 10; i++) alice.typing(conv.id);
  await waitFor(bob, "typing", (e) => e.active === true);
  alice.stopTyping(conv.id);
  await waitFor(bob, "typing", (e) => e.active === false);
  assert.deepEqual(typing.map((e) => e.active), [true, false]);
});

test("errors", T, async (t) => {
  const { alice, conv } = await pair(t);
  await assert.rejects(alice.request("no.such.type", {}), (e) =>
    e instanceof ChatError && e instanceof Error && e.code === "bad_request"
    && e.message === "unknown type");
  // a conversation alice is not in
  const [C, D] = users("carol", "dave");
  const carol = client(t, C);
  await carol.connect();
  const other = await carol.createConversation({ kind: "direct", userId: D });
  await assert.rejects(alice.send(other.id, "intrude"), { code: "not_found" });
  assert.deepEqual(alice.outbox, []);
  await assert.rejects(alice.send(conv.id, ""), { code: "bad_request" });
  await assert.rejects(alice.history(other.id), { code: "not_found" });

  // REST with the same token
  const me = await alice.rest("GET", "users/me");
  assert.equal(me.user.id, alice.user.id);
  const got = await alice.rest("GET", `/conversations/${conv.id}`);
  assert.equal(got.conversation.id, conv.id);
  const posted = await alice.rest("POST", `conversations/${conv.id}/messages`,
                                  { body: "over REST", client_msg_id: "r1" });
  assert.equal(posted.message.body, "over REST");
  await assert.rejects(alice.rest("GET", `conversations/${other.id}`), (e) =>
    e instanceof ChatError && e.code === "not_found" && e.status === 404);
  await assert.rejects(alice.rest("GET", "no/such/route"), { code: "not_found" });
  await assert.rejects(alice.rest("POST", "conversations", { kind: "nope" }),
                       { code: "bad_request", status: 400 });
  const anon = new ChatClient({ url: WS_URL, apiBase: API, token: "x.y.z" });
  await assert.rejects(anon.rest("GET", "users/me"),
                       { code: "unauthorized", status: 401 });
  // not connected
  await assert.rejects(anon.request("ping"), { code: "unavailable" });
});

test("token function: called at every connect, fresh after a 401", T, async (t) => {
  const [A] = users("alice");
  const calls = [];
  const alice = client(t, A, { token: async (info) => {
    calls.push(info.reason);
    // the first token is signed with another key: 401
    return calls.length === 1 ? mint(A, { key: randomBytes(32) }) : mint(A);
  } });
  const closes = collect(alice, "close");
  await alice.connect();
  assert.deepEqual(calls, ["connect", "unauthorized"]);
  assert.equal(closes[0].status, 401);
  assert.equal(alice.box.sockets.length, 2);

  alice.lastSocket().terminate();
  await waitFor(alice, "open");
  assert.deepEqual(calls, ["connect", "unauthorized", "connect"]);
  const urls = alice.box.sockets.map((s) => new URL(s.url).searchParams.get("access_token"));
  assert.equal(new Set(urls).size, 3, "a new token each time");
  // REST takes the current token
  assert.equal((await alice.rest("GET", "users/me")).user.id, A);

  // a fixed token that is refused: no retry, connect() rejects
  const bad = client(t, A, { token: mint(A, { expIn: -3600 }) });
  await assert.rejects(bad.connect(), { code: "unauthorized" });
  assert.equal(bad.state, "closed");
  assert.equal(bad.box.sockets.length, 1);
});

test("token expiry: 4001 brings a fresh token; auth.refresh avoids it", T, async (t) => {
  const [A, B] = users("alice", "bob");
  // without refresh: the server closes with 4001, the client reconnects
  const calls = [];
  const alice = client(t, A, { url: WS_SHORT, refreshToken: false,
    token: async (info) => { calls.push(info.reason); return mint(A, { expIn: 2 }); } });
  // with refresh: the connection stays
  const refreshes = [];
  const bob = client(t, B, { url: WS_SHORT,
    token: async (info) => { refreshes.push(info.reason); return mint(B, { expIn: 3 }); } });
  const bobCloses = collect(bob, "close");
  await Promise.all([alice.connect(), bob.connect()]);
  const started = Date.now();

  const closed = await waitFor(alice, "close");
  assert.equal(closed.code, 4001);
  await waitFor(alice, "open");
  assert.deepEqual(calls, ["connect", "expired"]);

  // bob's first token has expired for two seconds and more
  await until(() => Date.now() - started > 5000 && refreshes.length >= 3,
              "two refreshes");
  assert.deepEqual(refreshes.slice(0, 3), ["connect", "refresh", "refresh"]);
  assert.ok((await bob.request("ping")).time);
  assert.deepEqual(bobCloses, []);
  assert.equal(bob.box.sockets.length, 1);
  assert.ok(frames(bob.box.sent, "auth.refresh").length >= 2);
});

test("the outbox survives the client through its storage", T, async (t) => {
  const { alice, bob, conv, A } = await pair(t);
  const map = new Map();
  const storage = { get: (k) => map.get(k) ?? null,
                    set: async (k, v) => { map.set(k, v); } };
  // a page that queued a message and went away before connecting
  const gone = new ChatClient({ url: WS_URL, token: mint(A), storage,
                                WebSocket });
  const lost = gone.send(conv.id, "from the last visit", { clientMsgId: "o-1" });
  await until(() => map.has("chat.outbox"), "the outbox saved");
  gone.close();
  assert.deepEqual(JSON.parse(map.get("chat.outbox")).map((e) => e.body),
                   ["from the last visit"]);
  void lost;                                 // stays pending: never sent

  const got = waitFor(bob, "message.created", (e) => e.message.client_msg_id === "o-1");
  const next = client(t, A, { storage });
  await next.connect();
  const m = (await got).message;
  assert.equal(m.body, "from the last visit");
  await until(() => JSON.parse(map.get("chat.outbox")).length === 0,
              "the outbox emptied");
  await until(() => JSON.parse(map.get("chat.cursors"))[conv.id] === m.seq,
              "the cursor saved");
  // a third visit resumes from the saved cursor
  const third = client(t, A, { storage });
  await third.connect();
  await waitFor(third, "synced");
  assert.deepEqual(frames(third.box.sent, "sync")[0].conversations,
                   { [conv.id]: m.seq });
  void alice;
});
