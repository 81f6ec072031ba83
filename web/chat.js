// chat.js: the browser and Node client of ngx_http_chat_module (protocol
// chat.v1, docs/protocol.md).  One ES module, no dependencies, no build.
//
//   import { ChatClient } from "./chat.js";
//   const chat = new ChatClient({ url: "wss://example.com/chat/ws",
//                                 apiBase: "https://example.com/api/chat/",
//                                 token: async () => (await getToken()) });
//   chat.on("message.created", (ev) => show(ev.message));
//   await chat.connect();
//   await chat.send(45, "hi");
//
// The declarations and the documentation of every method are in chat.d.ts.

const MESSAGE_EVENTS = new Set(["message.created", "message.updated",
                                "message.deleted"]);
const SEEN_MAX = 10000;             // (message id, updated_seq) remembered
const TYPING_REPEAT_MS = 3000;      // one {active: true} per 3 s at most
const TYPING_IDLE_MS = 5000;        // {active: false} after 5 s of silence
const SYNC_MAX_PAGES = 1000;        // a guard against a server that loops

/** An error answer of the server, or a failure of the client. */
export class ChatError extends Error {
  constructor(code, message, { retryAfterMs = null, status = null } = {}) {
    super(message || code);
    this.name = "ChatError";
    this.code = code;
    this.retryAfterMs = retryAfterMs;
    this.status = status;
  }
}

/** The default storage: a Map, gone with the page. */
class MemoryStorage {
  constructor() { this.map = new Map(); }
  get(key) { return this.map.has(key) ? this.map.get(key) : null; }
  set(key, value) { this.map.set(key, value); }
}

const HTTP_CODES = { 400: "bad_request", 401: "unauthorized", 403: "forbidden",
                     404: "not_found", 405: "bad_request", 409: "conflict",
                     413: "too_large", 429: "rate_limited",
                     503: "unavailable", 507: "insufficient_storage" };

function errorFrom(obj, status = null) {
  const e = obj && typeof obj === "object" ? obj : {};
  return new ChatError(typeof e.code === "string" ? e.code : "internal",
                       typeof e.message === "string" ? e.message : "",
                       { retryAfterMs: Number.isFinite(e.retry_after_ms)
                                         ? e.retry_after_ms : null,
                         status });
}

function uuid() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") {
    return c.randomUUID();        // secure contexts and Node
  }
  const b = new Uint8Array(16);
  if (c && typeof c.getRandomValues === "function") {
    c.getRandomValues(b);         // plain-http pages have no randomUUID
  } else {
    for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
  }
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-` +
         `${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The exp claim of a JWT in milliseconds, or null. */
function tokenExpiry(token) {
  try {
    const part = String(token).split(".")[1];
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(Array.from(atob(b64),
      (ch) => "%" + ch.charCodeAt(0).toString(16).padStart(2, "0")).join(""));
    const exp = JSON.parse(json).exp;
    return Number.isFinite(exp) ? exp * 1000 : null;
  } catch {
    return null;
  }
}

function parseJSON(value, fallback) {
  if (value == null || value === "") return fallback;
  if (typeof value !== "string") return value;
  try { return JSON.parse(value); } catch { return fallback; }
}

function defined(obj) {
  const out = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v !== undefined) out[k] = v;
  }
  return out;
}

function report(err) {
  // a handler threw: surface it like a DOM event listener would, without
  // breaking the client's own state
  if (typeof globalThis.reportError === "function") {
    globalThis.reportError(err);
  } else {
    queueMicrotask(() => { throw err; });
  }
}

export class ChatClient {
  constructor(options = {}) {
    if (!options.url) throw new TypeError("ChatClient: url is required");
    if (options.token == null) throw new TypeError("ChatClient: token is required");
    this.url = options.url;
    this.apiBase = options.apiBase ?? null;
    this._token = options.token;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    const f = options.fetch ?? globalThis.fetch;
    this._fetch = f ? (...a) => f(...a) : null;   // fetch needs no `this`
    this._XHR = options.XMLHttpRequest ?? globalThis.XMLHttpRequest ?? null;
    this._storage = options.storage ?? new MemoryStorage();
    this._prefix = options.storagePrefix ?? "chat";
    this._backoff = { min: 500, max: 30000, ...(options.backoff || {}) };
    this._requestTimeout = options.requestTimeout ?? 15000;
    this._refreshTokens = options.refreshToken !== false;
    this._typingInterval = options.typingInterval ?? TYPING_REPEAT_MS;
    this._typingTimeout = options.typingTimeout ?? TYPING_IDLE_MS;

    this.user = null;               // the welcome's User
    this.welcome = null;            // the last welcome event

    this._handlers = new Map();
    this._state = "closed";
    this._wanted = false;           // connect() called, close() not since
    this._ws = null;
    this._gen = 0;                  // bumped by every connect and close
    this._attempt = 0;              // reconnects since the last welcome
    this._opened = false;           // a welcome was seen once
    this._attemptWasReconnect = false;
    this._freshToken = "connect";   // why the next token is fetched
    this._currentToken = typeof options.token === "string" ? options.token : null;
    this._nextId = 1;
    this._pending = new Map();      // request id -> {resolve, reject, ...}
    this._waiters = [];             // requests made while reconnecting
    this._connectWaiters = [];
    this._timers = new Set();       // every timer, cleared by close()
    this._connTimer = null;         // socket created -> welcome
    this._reconnectTimer = null;
    this._heartbeatTimer = null;
    this._refreshTimer = null;
    this._lastRx = 0;

    this._cursors = {};             // "conversation id" -> seq
    this._liveMax = {};             // cursors seen during a sync round
    this._syncing = false;
    this._synced = false;           // sync done on this connection
    this._seen = new Set();         // "id:updated_seq" of emitted events
    this._outbox = [];              // sends not acknowledged yet
    this._typing = new Map();       // "conversation id" -> {sentAt, idle}
    this._watch = null;             // presence.subscribe's ids; null: default
    this._saveQueued = false;

    this._loaded = this._load();
  }

  // ---------------------------------------------------------------- events

  on(type, handler) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(handler);
    return () => this.off(type, handler);
  }

  off(type, handler) {
    const set = this._handlers.get(type);
    if (set) set.delete(handler);
  }

  _emit(type, data) {
    const set = this._handlers.get(type);
    if (!set) return;
    for (const h of [...set]) {
      try { h(data); } catch (e) { report(e); }
    }
  }

  get state() { return this._state; }

  _setState(state) {
    if (this._state === state) return;
    this._state = state;
    this._emit("state", { state });
  }

  // ---------------------------------------------------------------- timers

  _timer(fn, ms) {
    const t = setTimeout(() => { this._timers.delete(t); fn(); },
                         Math.min(Math.max(0, ms), 0x7fffffff));
    this._timers.add(t);
    return t;
  }

  _clear(t) {
    if (t != null) {
      clearTimeout(t);
      this._timers.delete(t);
    }
    return null;
  }

  _delay(attempt) {
    // exponential with full jitter
    const { min, max } = this._backoff;
    const ceiling = Math.min(max, min * 2 ** Math.min(attempt, 30));
    return Math.random() * ceiling;
  }

  // --------------------------------------------------------------- storage

  async _load() {
    try {
      const cursors = parseJSON(await this._storage.get(this._key("cursors")), {});
      for (const [cid, n] of Object.entries(cursors || {})) {
        this._advance(cid, n, false);
      }
      const outbox = parseJSON(await this._storage.get(this._key("outbox")), []);
      for (const e of Array.isArray(outbox) ? outbox : []) {
        if (e && e.client_msg_id != null
            && !this._outbox.some((o) => o.fields.client_msg_id === e.client_msg_id)) {
          this._outbox.push({ fields: e, attempt: 0 });
        }
      }
    } catch (e) {
      this._emit("error", new ChatError("internal", "storage: " + e.message));
    }
  }

  _key(name) { return `${this._prefix}.${name}`; }

  _save() {
    if (this._saveQueued) return;
    this._saveQueued = true;
    queueMicrotask(async () => {
      this._saveQueued = false;
      try {
        await this._storage.set(this._key("cursors"), JSON.stringify(this._cursors));
        await this._storage.set(this._key("outbox"),
                                JSON.stringify(this._outbox.map((e) => e.fields)));
      } catch (e) {
        this._emit("error", new ChatError("internal", "storage: " + e.message));
      }
    });
  }

  // --------------------------------------------------------------- cursors

  get cursors() { return { ...this._cursors }; }

  /** Cursors only grow.  During a sync round, what events show is held
   *  apart and applied when the round completes: a live event may come
   *  before the replay of older changes, and a cursor past them would
   *  skip them if the connection dropped then. */
  _advance(cid, n, fromEvent) {
    n = Number(n);
    if (cid == null || !Number.isSafeInteger(n) || n <= 0) return;
    const key = String(cid);
    const map = fromEvent && this._syncing ? this._liveMax : this._cursors;
    if (!(map[key] >= n)) {
      map[key] = n;
      if (map === this._cursors) this._save();
    }
  }

  // ------------------------------------------------------------ connection

  connect() {
    if (this._state === "open") return Promise.resolve(this.welcome);
    const p = new Promise((resolve, reject) => {
      this._connectWaiters.push({ resolve, reject });
    });
    if (!this._wanted) {
      this._wanted = true;
      this._attempt = 0;
      this._open();
    }
    return p;
  }

  close() {
    this._wanted = false;
    this._gen++;
    const ws = this._ws;
    this._ws = null;
    for (const t of this._timers) clearTimeout(t);
    this._timers.clear();
    this._connTimer = this._reconnectTimer = this._heartbeatTimer = null;
    this._refreshTimer = null;
    for (const e of this._outbox) e.retryTimer = null;
    if (ws) {
      this._detach(ws);
      try { ws.close(1000); } catch { /* already closed */ }
    }
    this._lost("the client was closed");
    for (const w of this._waiters.splice(0)) {
      w.reject(new ChatError("unavailable", "the client was closed"));
    }
    for (const w of this._connectWaiters.splice(0)) {
      w.reject(new ChatError("unavailable", "the client was closed"));
    }
    if (ws) {
      this._emit("close", { code: 1000, reason: "closed by the client",
                            willReconnect: false });
    }
    this._setState("closed");
  }

  async _open() {
    const gen = ++this._gen;
    this._setState("connecting");
    let token;
    try {
      await this._loaded;
      token = await this._getToken(this._freshToken);
    } catch (e) {
      if (gen !== this._gen) return;
      this._emit("error", e instanceof ChatError ? e
                 : new ChatError("unauthorized", "token: " + (e && e.message)));
      this._scheduleReconnect();
      return;
    }
    if (gen !== this._gen || !this._wanted) return;
    this._freshToken = "connect";

    let ws;
    try {
      const Impl = this._WebSocket;
      if (!Impl) throw new Error("no WebSocket implementation: pass options.WebSocket");
      ws = new Impl(this._wsUrl(token), "chat.v1");
    } catch (e) {
      this._fail(new ChatError("bad_request", e.message));
      return;
    }
    this._ws = ws;
    let status = null;
    this._connTimer = this._timer(() => this._abandon("no welcome in time"),
                                  this._requestTimeout);
    ws.onmessage = (ev) => {
      if (this._ws === ws) this._onFrame(ev.data);
    };
    ws.onerror = (ev) => {
      // ws (Node) says why a handshake failed; browsers say nothing
      const text = (ev && (ev.message || (ev.error && ev.error.message))) || "";
      const m = /Unexpected server response: (\d+)/.exec(text);
      if (m) status = Number(m[1]);
    };
    ws.onclose = (ev) => {
      if (this._ws === ws) this._onClose(ev.code, ev.reason, status);
    };
  }

  _wsUrl(token) {
    const base = globalThis.location ? globalThis.location.href : undefined;
    const u = new URL(this.url, base);
    if (u.protocol === "http:") u.protocol = "ws:";
    if (u.protocol === "https:") u.protocol = "wss:";
    u.searchParams.set("access_token", token);
    return u.toString();
  }

  async _getToken(reason) {
    if (typeof this._token === "function") {
      const t = await this._token({ reason });
      if (typeof t !== "string" || t === "") {
        throw new ChatError("unauthorized", "the token function returned no token");
      }
      this._currentToken = t;
      return t;
    }
    return this._token;
  }

  _detach(ws) {
    ws.onmessage = ws.onclose = ws.onopen = null;
    ws.onerror = () => {};      // ws throws on an error nobody listens to
  }

  /** Gives up on the current socket at once (a timeout: it may be dead,
   *  and a close handshake would wait for it). */
  _abandon(reason) {
    const ws = this._ws;
    if (!ws) return;
    this._detach(ws);
    try {
      if (typeof ws.terminate === "function") ws.terminate();
      else ws.close(4000, reason);
    } catch { /* closed already */ }
    this._onClose(4000, reason, null);
  }

  _onClose(code, reason, status) {
    this._ws = null;
    this._gen++;
    this._connTimer = this._clear(this._connTimer);
    this._heartbeatTimer = this._clear(this._heartbeatTimer);
    this._refreshTimer = this._clear(this._refreshTimer);
    this._syncing = false;
    this._synced = false;
    this._liveMax = {};
    this._lost("the connection was lost");
    this._stopAllTyping();

    const fixedToken = typeof this._token !== "function";
    let fatal = null;
    if (status === 401 || code === 4001) {
      if (fixedToken) {
        fatal = new ChatError("unauthorized", status === 401
          ? "the token was refused (401)" : "the token expired (4001)",
          { status });
      } else {
        this._freshToken = status === 401 ? "unauthorized" : "expired";
      }
    }
    this._emit("close", { code, reason: reason || "", status,
                          willReconnect: this._wanted && !fatal });
    if (!this._wanted) return;
    if (fatal) {
      this._fail(fatal);
      return;
    }
    this._scheduleReconnect();
  }

  /** A failure that no retry can mend: closed, connect() rejects. */
  _fail(err) {
    this._emit("error", err);
    for (const w of this._connectWaiters.splice(0)) w.reject(err);
    this.close();
  }

  _scheduleReconnect() {
    this._setState("reconnecting");
    const ms = this._delay(this._attempt++);
    this._reconnectTimer = this._timer(() => {
      this._reconnectTimer = null;
      if (this._wanted) this._open();
    }, ms);
  }

  /** Rejects what waits for an answer on a connection that is gone; sends
   *  stay in the outbox. */
  _lost(why) {
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      if (p.onLost) p.onLost();
      else p.reject(new ChatError("unavailable", why));
    }
  }

  // ---------------------------------------------------------------- frames

  _onFrame(data) {
    this._lastRx = Date.now();
    let msg;
    try {
      msg = JSON.parse(typeof data === "string" ? data : String(data));
    } catch {
      this._emit("error", new ChatError("internal", "a frame that is not JSON"));
      return;
    }
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "welcome") {
      this._onWelcome(msg);
    } else if (msg.type === "ok" || msg.type === "error") {
      const p = msg.id != null ? this._pending.get(String(msg.id)) : null;
      if (p) {
        this._pending.delete(String(msg.id));
        clearTimeout(p.timer);
        if (msg.type === "ok") p.resolve(msg.data ?? {});
        else p.reject(errorFrom(msg.error));
      } else if (msg.type === "error") {
        this._emit("error", errorFrom(msg.error));
      }
    } else if (typeof msg.type === "string") {
      this._onEvent(msg);
    }
  }

  _onEvent(ev) {
    if (MESSAGE_EVENTS.has(ev.type) && ev.message && typeof ev.message === "object") {
      const m = ev.message;
      const key = `${m.id}:${m.updated_seq ?? m.seq}`;
      if (this._seen.has(key)) return;          // live, then in a sync
      this._seen.add(key);
      if (this._seen.size > SEEN_MAX) {
        this._seen.delete(this._seen.values().next().value);
      }
      this._advance(m.conversation_id,
                    Math.max(Number(m.seq) || 0, Number(m.updated_seq) || 0), true);
    }
    this._emit(ev.type, ev);
  }

  _onWelcome(msg) {
    const gen = this._gen;
    this._connTimer = this._clear(this._connTimer);
    const reconnect = this._opened;
    this._opened = true;
    this._attemptWasReconnect = reconnect;
    this._attempt = 0;
    this.welcome = msg;
    this.user = msg.user ?? null;
    this._syncing = true;       // before any event of this connection counts
    this._synced = false;
    this._liveMax = {};
    this._setState("open");
    this._emit("welcome", msg);
    this._emit("open", { welcome: msg, reconnect });
    for (const w of this._connectWaiters.splice(0)) w.resolve(msg);
    if (gen !== this._gen) return;      // a handler closed the client

    this._resume(gen);
    // a new connection watches the direct partners only: the last
    // subscription is made again (unless one waits to be sent anyway)
    if (this._watch !== null
        && !this._waiters.some((w) => w.type === "presence.subscribe")) {
      this._request("presence.subscribe", { user_ids: this._watch })
        .then((data) => this._emit("presence.subscribed",
                                   { presence: data.presence, reconnect }),
              (e) => { if (gen === this._gen) this._emit("error", e); });
    }
    for (const w of this._waiters.splice(0)) {
      clearTimeout(w.timer);
      this._request(w.type, w.fields, w.opts).then(w.resolve, w.reject);
    }
    this._startHeartbeat(msg.heartbeat_s);
    this._scheduleRefresh();
  }

  /** sync with the cursors until complete, then the outbox, in order. */
  async _resume(gen) {
    let failures = 0;
    for (let page = 0; page < SYNC_MAX_PAGES; page++) {
      let data;
      try {
        data = await this._request("sync", { conversations: { ...this._cursors } });
      } catch (e) {
        if (gen !== this._gen) return;          // the connection is gone
        if (e.code === "unavailable" || e.code === "rate_limited") {
          // storage is down: sync again later on this connection
          const ms = e.retryAfterMs ?? this._delay(failures++);
          await new Promise((resolve) => this._timer(resolve, ms));
          if (gen !== this._gen) return;
          page--;
          continue;
        }
        this._emit("error", e);
        break;
      }
      if (gen !== this._gen) return;
      for (const [cid, n] of Object.entries((data && data.cursors) || {})) {
        this._advance(cid, n, false);
      }
      if (!data || data.complete !== false) break;
    }
    if (gen !== this._gen) return;
    this._syncing = false;
    const live = this._liveMax;
    this._liveMax = {};
    for (const [cid, n] of Object.entries(live)) this._advance(cid, n, false);
    this._synced = true;
    this._emit("synced", { cursors: this.cursors, reconnect: this._attemptWasReconnect });
    this._flushOutbox();
  }

  _startHeartbeat(seconds) {
    // browsers answer the server's pings without telling the page, so a
    // dead connection shows only when a request goes unanswered: ping
    // when nothing came for a heartbeat
    const ms = (Number(seconds) > 0 ? Number(seconds) : 30) * 1000;
    this._lastRx = Date.now();
    const tick = () => {
      this._heartbeatTimer = this._timer(tick, ms);
      if (Date.now() - this._lastRx >= ms) {
        this._request("ping", {}).catch(() => {});
      }
    };
    this._heartbeatTimer = this._timer(tick, ms);
  }

  _scheduleRefresh() {
    this._refreshTimer = this._clear(this._refreshTimer);
    if (!this._refreshTokens || typeof this._token !== "function") return;
    const exp = tokenExpiry(this._currentToken);
    if (exp == null) return;
    const left = exp - Date.now();
    const ms = left > 120000 ? left - 60000 : Math.max(1000, left / 2);
    const gen = this._gen;
    this._refreshTimer = this._timer(async () => {
      this._refreshTimer = null;
      try {
        const t = await this._getToken("refresh");
        if (gen !== this._gen) return;
        await this._request("auth.refresh", { token: t });
        if (gen === this._gen) this._scheduleRefresh();
      } catch (e) {
        // the server closes with 4001 at expiry and the reconnect takes a
        // fresh token
        if (gen === this._gen) this._emit("error", e);
      }
    }, ms);
  }

  // -------------------------------------------------------------- requests

  /** One request on the current connection. */
  _request(type, fields, opts = {}) {
    const ws = this._ws;
    if (!ws || this._state !== "open") {
      if (opts.onLost) {
        opts.onLost();
        return new Promise(() => {});
      }
      return Promise.reject(new ChatError("unavailable", "not connected"));
    }
    const id = "c" + this._nextId++;
    return new Promise((resolve, reject) => {
      const p = { resolve, reject, type, onLost: opts.onLost };
      p.timer = setTimeout(() => this._timedOut(id), this._requestTimeout);
      this._pending.set(id, p);
      try {
        ws.send(JSON.stringify({ ...fields, type, id }));
      } catch (e) {
        // the socket is closing: its close event rejects the request
      }
    });
  }

  _timedOut(id) {
    const p = this._pending.get(id);
    if (!p) return;
    this._pending.delete(id);
    if (p.onLost) p.onLost();
    else p.reject(new ChatError("timeout", `no answer to ${p.type} in ${this._requestTimeout} ms`));
    // the server answers every request (unavailable within 2 s when storage
    // is slow): silence means a dead connection
    this._abandon("request timed out");
  }

  request(type, fields = {}) {
    return this._call(type, fields);
  }

  _call(type, fields, opts = {}) {
    if (this._state === "open") return this._request(type, fields, opts);
    if (!this._wanted) {
      return Promise.reject(new ChatError("unavailable", "not connected: call connect()"));
    }
    return new Promise((resolve, reject) => {
      const w = { type, fields, opts, resolve, reject };
      w.timer = this._timer(() => {
        const i = this._waiters.indexOf(w);
        if (i >= 0) this._waiters.splice(i, 1);
        reject(new ChatError("unavailable", "not connected"));
      }, this._requestTimeout);
      this._waiters.push(w);
    });
  }

  // ------------------------------------------------------------ messaging

  // attachments: [{ upload_id, thumbnail_id? }] of this user's uploads
  // (upload()'s ids); the server stores each as it describes the upload
  // (chat.d.ts UploadAttachment). Links ({ url }) only where the server's
  // chat_attachment_hosts lists the host.
  async send(conversationId, body, { attachments, replyTo, clientMsgId } = {}) {
    await this._loaded;
    const fields = defined({ conversation_id: conversationId, body,
                             client_msg_id: clientMsgId ?? uuid(),
                             attachments, reply_to: replyTo });
    const same = this._outbox.find((e) => e.fields.client_msg_id === fields.client_msg_id);
    if (same) {
      // the same message again: one send, one answer
      if (!same.promise) {
        same.promise = new Promise((res, rej) => { same.resolve = res; same.reject = rej; });
      }
      return same.promise;
    }
    const entry = { fields, attempt: 0, inFlight: false, retryTimer: null };
    entry.promise = new Promise((res, rej) => { entry.resolve = res; entry.reject = rej; });
    this._outbox.push(entry);
    this._save();
    if (this._typing.has(String(conversationId))) this.stopTyping(conversationId);
    this._flushOutbox();
    return entry.promise;
  }

  /** Messages not acknowledged yet, oldest first (message.send fields). */
  get outbox() { return this._outbox.map((e) => ({ ...e.fields })); }

  /** Drops a message from the outbox; its send() rejects with "cancelled".
   *  It may have reached the server already. */
  cancel(clientMsgId) {
    const i = this._outbox.findIndex((e) => e.fields.client_msg_id === clientMsgId);
    if (i < 0) return false;
    const [e] = this._outbox.splice(i, 1);
    e.retryTimer = this._clear(e.retryTimer);
    e.cancelled = true;
    this._save();
    if (e.reject) e.reject(new ChatError("cancelled", "removed from the outbox"));
    return true;
  }

  _flushOutbox() {
    if (this._state !== "open" || !this._synced) return;
    for (const e of this._outbox) {
      if (!e.inFlight && !e.retryTimer) this._sendEntry(e);
    }
  }

  _sendEntry(e) {
    e.inFlight = true;
    const gen = this._gen;
    let lost = false;
    const onLost = () => { lost = true; e.inFlight = false; };
    this._request("message.send", e.fields, { onLost }).then((data) => {
      e.inFlight = false;
      this._done(e);
      if (e.resolve) e.resolve(data.message);
    }, (err) => {
      e.inFlight = false;
      if (lost || e.cancelled) return;          // re-sent after the reconnect
      if (err.code === "unavailable") {
        // storage is down (the message may be stored: the same
        // client_msg_id makes the retry safe)
        if (gen !== this._gen) return;
        e.retryTimer = this._timer(() => {
          e.retryTimer = null;
          this._flushOutbox();
        }, this._delay(e.attempt++));
        return;
      }
      this._done(e);
      if (e.reject) e.reject(err);
      else this._emit("error", err);            // from a previous session
    });
  }

  _done(e) {
    const i = this._outbox.indexOf(e);
    if (i >= 0) {
      this._outbox.splice(i, 1);
      this._save();
    }
  }

  async edit(messageId, body) {
    const data = await this._call("message.edit", { message_id: messageId, body });
    return data.message;
  }

  async remove(messageId) {
    const data = await this._call("message.delete", { message_id: messageId });
    return data.message;
  }

  markRead(conversationId, seq) {
    return this._call("message.read", { conversation_id: conversationId, seq });
  }

  async history(conversationId, { beforeSeq, afterSeq, limit } = {}) {
    const data = await this._call("messages.history", defined({
      conversation_id: conversationId, before_seq: beforeSeq,
      after_seq: afterSeq, limit }));
    for (const m of data.messages || []) {
      this._advance(m.conversation_id ?? conversationId,
                    Math.max(Number(m.seq) || 0, Number(m.updated_seq) || 0), false);
    }
    return data;
  }

  conversations({ limit, before, archived } = {}) {
    return this._call("conversation.list", defined({ limit, before, archived }));
  }

  members(conversationId, { after, limit } = {}) {
    return this._call("conversation.members", defined({
      conversation_id: conversationId, after, limit }));
  }

  async createConversation({ kind, userId, title, members, ref, metadata } = {}) {
    const data = await this._call("conversation.create", defined({
      kind, user_id: userId, title, members, ref, metadata }));
    return data.conversation;
  }

  async presence(userIds) {
    const data = await this._call("presence.query", { user_ids: [...userIds] });
    return data.presence;
  }

  /** presence.subscribe: the users whose presence events this client gets
   *  (at most 200; replaces the last list, direct partners included only
   *  if listed), sent again after every reconnect. Resolves with their
   *  presence (null for those the server will not tell). */
  async subscribePresence(userIds) {
    const ids = [...new Set(userIds)];
    if (ids.length > 200) throw new RangeError("subscribePresence: at most 200 user ids");
    this._watch = ids;
    const data = await this._call("presence.subscribe", { user_ids: ids });
    this._emit("presence.subscribed", { presence: data.presence, reconnect: false });
    return data.presence;
  }

  /** presence.count: {conversation_id, members, online} of a conversation
   *  of the user (a group's online count, asked for, never pushed). */
  presenceCount(conversationId) {
    return this._call("presence.count", { conversation_id: conversationId });
  }

  // ---------------------------------------------------------------- typing

  typing(conversationId) {
    const key = String(conversationId);
    let t = this._typing.get(key);
    if (!t) {
      t = { id: conversationId, sentAt: 0, idle: null };
      this._typing.set(key, t);
    }
    const now = Date.now();
    if (this._state === "open" && now - t.sentAt >= this._typingInterval) {
      t.sentAt = now;
      this._request("typing", { conversation_id: conversationId, active: true })
        .catch(() => {});
    }
    this._clear(t.idle);
    t.idle = this._timer(() => this.stopTyping(conversationId), this._typingTimeout);
  }

  stopTyping(conversationId) {
    const key = String(conversationId);
    const t = this._typing.get(key);
    if (!t) return;
    this._clear(t.idle);
    this._typing.delete(key);
    if (t.sentAt && this._state === "open") {
      this._request("typing", { conversation_id: conversationId, active: false })
        .catch(() => {});
    }
  }

  _stopAllTyping() {
    // the server ends the typing of a connection that is gone
    for (const t of this._typing.values()) this._clear(t.idle);
    this._typing.clear();
  }

  // ------------------------------------------------------------------ REST

  async rest(method, path, body) {
    if (!this.apiBase) throw new ChatError("bad_request", "apiBase is not set");
    if (!this._fetch) throw new ChatError("bad_request", "no fetch: pass options.fetch");
    const url = String(this.apiBase).replace(/\/?$/, "/") + String(path).replace(/^\/+/, "");
    for (let attempt = 0; ; attempt++) {
      const token = attempt === 0 && this._currentToken != null
        ? this._currentToken
        : await this._getToken(attempt === 0 ? "rest" : "unauthorized");
      const headers = { Authorization: "Bearer " + token, Accept: "application/json" };
      const init = { method, headers };
      if (body !== undefined && body !== null) {
        headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
      let res;
      try {
        res = await this._fetch(url, init);
      } catch (e) {
        throw new ChatError("unavailable", "network error: " + (e && e.message));
      }
      const text = await res.text();
      const data = parseJSON(text, null);
      if (res.ok) return data ?? {};
      if (res.status === 401 && attempt === 0 && typeof this._token === "function") {
        continue;                               // once more with a fresh token
      }
      const after = parseFloat(res.headers.get("Retry-After"));
      const err = data && data.error
        ? errorFrom(data.error, res.status)
        : new ChatError(HTTP_CODES[res.status] ?? "internal", `HTTP ${res.status}`,
                        { status: res.status });
      if (err.retryAfterMs == null && Number.isFinite(after)) err.retryAfterMs = after * 1000;
      throw err;
    }
  }

  // --------------------------------------------------------------- uploads

  /** POST uploads: the file as the body, its name as ?name=; resolves
   *  with the Upload. XMLHttpRequest when there is one (upload progress),
   *  else fetch (onProgress once, at the end). */
  async upload(file, options = {}) {
    if (!this.apiBase) throw new ChatError("bad_request", "apiBase is not set");
    const { onProgress = null, signal = null } = options;
    const name = options.name ?? (typeof file?.name === "string" ? file.name : "");
    const url = String(this.apiBase).replace(/\/?$/, "/") + "uploads" +
      (name ? "?name=" + encodeURIComponent(name) : "");
    const XHR = options.XMLHttpRequest ?? this._XHR;
    if (!XHR && !this._fetch) {
      throw new ChatError("bad_request", "no XMLHttpRequest or fetch: pass options.fetch");
    }
    const progress = (loaded, total) => {
      if (!onProgress) return;
      try { onProgress({ loaded, total }); } catch (e) { report(e); }
    };
    for (let attempt = 0; ; attempt++) {
      if (signal?.aborted) throw new ChatError("cancelled", "upload cancelled");
      const token = attempt === 0 && this._currentToken != null
        ? this._currentToken
        : await this._getToken(attempt === 0 ? "rest" : "unauthorized");
      const res = XHR
        ? await xhrPost(XHR, url, token, file, signal, progress)
        : await this._fetchPost(url, token, file, signal, progress);
      const data = parseJSON(res.text, null);
      if (res.status >= 200 && res.status < 300) return data?.upload ?? null;
      if (res.status === 401 && attempt === 0 && typeof this._token === "function") {
        continue;                               // once more with a fresh token
      }
      const after = parseFloat(res.retryAfter);
      const err = data && data.error
        ? errorFrom(data.error, res.status)
        : new ChatError(HTTP_CODES[res.status] ?? "internal", `HTTP ${res.status}`,
                        { status: res.status });
      if (err.retryAfterMs == null && Number.isFinite(after)) err.retryAfterMs = after * 1000;
      throw err;
    }
  }

  /** GET a file (an attachment's url, "/api/chat/files/17") with the
   *  Authorization header, as a Blob: for a page whose token is not in a
   *  cookie, so that <img src> and download links can use an object URL.
   *  A 401 is retried once with a fresh token. */
  async fetchFile(url, { signal = null } = {}) {
    if (!this._fetch) throw new ChatError("bad_request", "no fetch: pass options.fetch");
    for (let attempt = 0; ; attempt++) {
      if (signal?.aborted) throw new ChatError("cancelled", "download cancelled");
      const token = attempt === 0 && this._currentToken != null
        ? this._currentToken
        : await this._getToken(attempt === 0 ? "rest" : "unauthorized");
      let res;
      try {
        res = await this._fetch(url, { signal: signal ?? undefined,
                                       headers: { Authorization: "Bearer " + token } });
      } catch (e) {
        if (signal?.aborted) throw new ChatError("cancelled", "download cancelled");
        throw new ChatError("unavailable", "network error: " + (e && e.message));
      }
      if (res.ok) return await res.blob();
      if (res.status === 401 && attempt === 0 && typeof this._token === "function") {
        continue;                               // once more with a fresh token
      }
      const data = parseJSON(await res.text(), null);
      throw data && data.error
        ? errorFrom(data.error, res.status)
        : new ChatError(HTTP_CODES[res.status] ?? "internal", `HTTP ${res.status}`,
                        { status: res.status });
    }
  }

  async _fetchPost(url, token, file, signal, progress) {
    let res;
    try {
      res = await this._fetch(url, {
        method: "POST", body: file, signal: signal ?? undefined,
        headers: { Authorization: "Bearer " + token, Accept: "application/json" },
      });
    } catch (e) {
      if (signal?.aborted) throw new ChatError("cancelled", "upload cancelled");
      throw new ChatError("unavailable", "network error: " + (e && e.message));
    }
    const text = await res.text();
    if (res.ok) {
      const size = bodySize(file);
      progress(size, size);
    }
    return { status: res.status, text, retryAfter: res.headers.get("Retry-After") };
  }
}

function bodySize(file) {
  return file?.size ?? file?.byteLength ?? file?.length ?? 0;
}

/** One POST through XMLHttpRequest: {status, text, retryAfter}; rejects
 *  "cancelled" when signal aborts it, "unavailable" on a network error. */
function xhrPost(XHR, url, token, file, signal, progress) {
  return new Promise((resolve, reject) => {
    const xhr = new XHR();
    const abort = () => xhr.abort();
    const done = () => signal?.removeEventListener("abort", abort);
    xhr.open("POST", url);
    xhr.setRequestHeader("Authorization", "Bearer " + token);
    xhr.setRequestHeader("Accept", "application/json");
    if (xhr.upload) {
      xhr.upload.onprogress = (e) =>
        progress(e.loaded, e.lengthComputable ? e.total : bodySize(file));
    }
    xhr.onload = () => {
      done();
      resolve({ status: xhr.status, text: xhr.responseText,
                retryAfter: xhr.getResponseHeader("Retry-After") });
    };
    xhr.onerror = () => {
      done();
      reject(new ChatError("unavailable", "network error"));
    };
    xhr.onabort = () => {
      done();
      reject(new ChatError("cancelled", "upload cancelled"));
    };
    signal?.addEventListener("abort", abort, { once: true });
    xhr.send(file);
  });
}

export default ChatClient;
