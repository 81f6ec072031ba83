// The demo chat page: web/index.html + this module + app.css, served by
// nginx itself (make run). Everything live goes through web/chat.js; the
// routes the WebSocket does not have (archive, mute, blocks, contacts,
// search, members) through its REST helper. No framework and no build:
// the page keeps plain maps of conversations and messages and updates the
// DOM nodes it owns by id, so focus and scroll survive live events.

import { ChatClient } from "./chat.js";

const $ = (id) => document.getElementById(id);

const SESSION_KEY = "chat-demo.session";
const PAGE_SIZE = 50;
const TYPING_SHOW_MS = 8000;        // a typist unheard of for 8 s has gone
const SEARCH_DELAY_MS = 250;
const MAX_LIST_PAGES = 10;          // 10 x 100 conversations in the list

const S = {
  me: null,                         // {id, name}
  client: null,
  convs: new Map(),                 // conversation id -> Conversation
  users: new Map(),                 // user id -> {id, name}
  presence: new Map(),              // user id -> {online, last_seen}
  presenceStale: true,              // subscribe again even if unchanged
  online: null,                     // the open group's online count
  blocks: new Set(),                // users I blocked
  archivedView: false,
  open: null,                       // the open conversation's id
  threads: new Map(),               // id -> {byId, hasMore, loaded, loading}
  pending: new Map(),               // client_msg_id -> {cid, body, at}
  typing: new Map(),                // id -> Map(user id -> timer)
  editing: null,                    // the message being edited
  readTimers: new Map(),
  deliveredTimers: new Map(),
  refreshTimers: new Map(),
};

// ------------------------------------------------------------- helpers

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function shortTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const now = new Date();
  return d.toDateString() === now.toDateString() ? timeFmt.format(d) : dayFmt.format(d);
}

function lastSeen(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return "last seen " + (d.toDateString() === new Date().toDateString()
    ? "at " + timeFmt.format(d) : fullFmt.format(d));
}

let toastTimer = null;
function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 6000);
}

function describe(err) {
  if (!err) return "unknown error";
  const why = {
    forbidden: "not allowed", not_found: "not found",
    rate_limited: "too fast, try again in a moment",
    unavailable: "the server cannot store it right now",
    too_large: "the file is too large",
    insufficient_storage: "the server has no room for it",
  }[err.code];
  // an answer that was not the module's JSON (nginx's own 413 page) says
  // no more than its status
  return err.message && err.message !== err.code && !(why && /^HTTP \d+$/.test(err.message))
    ? err.message + (why ? ` (${why})` : "") : why || String(err.code || err);
}

function nameOf(uid) {
  if (S.me && uid === S.me.id) return "You";
  return S.users.get(uid)?.name || uid;
}

function learnUser(u) {
  if (u && u.id) S.users.set(u.id, { id: u.id, name: u.name || u.id });
}

function peerOf(c) {
  if (!c || c.kind !== "direct") return null;
  const m = c.members.find((x) => x.user_id !== S.me.id);
  return m ? m.user_id : S.me.id;
}

function titleOf(c) {
  if (c.kind === "group") return c.title || "Untitled group";
  return nameOf(peerOf(c)) + (c.title ? " · " + c.title : "");
}

function myMember(c) {
  return c.members.find((m) => m.user_id === S.me.id);
}

function preview(m) {
  if (!m) return "No messages yet";
  if (m.deleted) return "Message deleted";
  const who = m.sender_id === S.me.id ? "You: " : "";
  return who + m.body.replace(/\s+/g, " ");
}

function api(method, path, body) {
  return S.client.rest(method, path, body);
}

// ------------------------------------------------------------ sign in

async function devToken(user, name) {
  const q = new URLSearchParams({ user });
  if (name) q.set("name", name);
  const r = await fetch("/chat/dev/token?" + q);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error?.message || `HTTP ${r.status}`);
  return body.token;
}

function showSignin(message) {
  $("app").hidden = true;
  $("signin-view").hidden = false;
  $("signin-error").textContent = message || "";
  $("signin-user").focus();
}

$("signin").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const user = $("signin-user").value.trim();
  const name = $("signin-name").value.trim();
  try {
    await start(user, name);
  } catch (e) {
    showSignin("Could not sign in: " + e.message);
  }
});

$("sign-out").addEventListener("click", () => {
  if (S.client) S.client.close();
  for (let i = sessionStorage.length - 1; i >= 0; i--) {
    const k = sessionStorage.key(i);
    if (k.startsWith("chat-demo.")) sessionStorage.removeItem(k);
  }
  location.replace(location.pathname);
});

// One client per tab: the cursors and the outbox live in sessionStorage,
// so a reload resumes where the tab was and two tabs do not share an
// outbox.
async function start(user, name) {
  const first = await devToken(user, name);
  sessionStorage.setItem(SESSION_KEY, JSON.stringify({ user, name }));
  const prefix = "chat-demo." + user;

  // A tab without cursors starts from each conversation's current end
  // (sync from no cursor would replay whole histories).
  if (sessionStorage.getItem(prefix + ".cursors") == null) {
    const cursors = {};
    for (const archived of [false, true]) {
      for (const c of await listAll(archived, (path) => restWith(first, path))) {
        cursors[c.id] = c.last_seq;
      }
    }
    sessionStorage.setItem(prefix + ".cursors", JSON.stringify(cursors));
  }

  let token = first;
  S.client = new ChatClient({
    url: "/chat/ws",
    apiBase: "/api/chat/",
    token: async ({ reason }) => {
      if (reason !== "connect" || token == null) token = await devToken(user, name);
      const t = token;
      token = null;             // a later call mints a fresh one
      return t;
    },
    storage: {
      get: (k) => sessionStorage.getItem(k),
      set: (k, v) => sessionStorage.setItem(k, v),
    },
    storagePrefix: prefix,
  });
  S.me = { id: user, name: name || user };
  learnUser(S.me);
  wireClient(S.client);

  $("signin-view").hidden = true;
  $("app").hidden = false;
  $("me").textContent = S.me.name;
  setState("connecting");
  for (const e of S.client.outbox) {
    S.pending.set(e.client_msg_id, { cid: e.conversation_id, body: e.body,
                                     at: new Date().toISOString() });
  }
  await S.client.connect();
}

async function restWith(token, path) {
  const r = await fetch("/api/chat/" + path, {
    headers: { Authorization: "Bearer " + token },
  });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error?.message || `HTTP ${r.status}`);
  return body;
}

async function listAll(archived, get) {
  const out = [];
  let before = null;
  for (let i = 0; i < MAX_LIST_PAGES; i++) {
    const q = new URLSearchParams({ limit: "100", archived: String(archived) });
    if (before != null) q.set("before", String(before));
    const page = await get("conversations?" + q);
    out.push(...page.conversations);
    if (page.next == null) break;
    before = page.next;
  }
  return out;
}

// ---------------------------------------------------- client wiring

let everOpen = false;

function setState(state) {
  // each reconnect attempt is "connecting" for a moment: still away
  if (state === "open") everOpen = true;
  if (state === "connecting" && everOpen) state = "reconnecting";
  const label = { connecting: "Connecting…", open: "Connected",
                  reconnecting: "Reconnecting…", closed: "Offline" }[state];
  const s = $("conn-state");
  s.dataset.state = state;
  s.textContent = label;
  $("banner").hidden = state !== "reconnecting";
}

function wireClient(c) {
  c.on("state", ({ state }) => setState(state));
  c.on("synced", () => refreshAll());
  c.on("message.created", ({ message }) => onMessage(message, true));
  c.on("message.updated", ({ message }) => onMessage(message, false));
  c.on("message.deleted", ({ message }) => onMessage(message, false));
  c.on("typing", onTyping);
  c.on("presence", (ev) => {
    S.presence.set(ev.user_id, { online: ev.online, last_seen: ev.last_seen });
    renderPresence();
    // a member of the open group came or went: its count is asked again
    const open = S.convs.get(S.open);
    if (open?.kind === "group" && open.members.some((m) => m.user_id === ev.user_id)) {
      scheduleCount();
    }
  });
  // after a reconnect, chat.js subscribes again: the states it answers
  c.on("presence.subscribed", ({ presence }) => setPresence(presence));
  c.on("receipt", onReceipt);
  c.on("conversation.created", ({ conversation }) => upsertConv(conversation, true));
  c.on("conversation.updated", ({ conversation }) => upsertConv(conversation, false));
  c.on("member.joined", (ev) => onMember(ev, true));
  c.on("member.left", (ev) => onMember(ev, false));
  c.on("error", (e) => {
    // while away, failed attempts are what the banner already says
    if (c.state !== "open" && everOpen) return;
    toast("Error: " + describe(e));
  });
}

// After every (re)connect's sync: what sync does not replay (the list,
// unread counts, receipts, names, presence, blocks) is read again.
async function refreshAll() {
  try {
    const [convs, contacts, blocks] = await Promise.all([
      listAll(S.archivedView, (path) => api("GET", path)),
      allContacts(),
      api("GET", "blocks"),
    ]);
    for (const ct of contacts) learnUser(ct.user);
    S.blocks = new Set(blocks.blocks.map((u) => (learnUser(u), u.id)));
    const fresh = new Set(convs.map((c) => c.id));
    for (const [id, c] of S.convs) {
      if (c.archived === S.archivedView && !fresh.has(id)) S.convs.delete(id);
    }
    for (const c of convs) S.convs.set(c.id, c);
    renderList();
    S.presenceStale = true;
    await refreshPresence();
    if (S.open != null) {
      if (!S.convs.has(S.open)) closeChat();
      else { renderChatHead(); renderMessages(); scheduleRead(S.open); }
    }
  } catch (e) {
    toast("Could not load conversations: " + describe(e));
  }
}

// Presence by interest: the page watches (presence.subscribe, made again
// by chat.js after a reconnect) the people it shows: the partners of the
// direct chats in the list, and the members of the open group; a group
// shows an online count, asked for (presence.count), not N events.
let presenceTimer = null;
function schedulePresence() {
  clearTimeout(presenceTimer);
  presenceTimer = setTimeout(() => refreshPresence().catch(() => {}), 100);
}

function watchList() {
  const ids = new Set();
  const open = S.convs.get(S.open);
  if (open?.kind === "group") {
    for (const m of open.members) if (m.user_id !== S.me.id) ids.add(m.user_id);
  }
  const direct = [...S.convs.values()].filter((c) => c.kind === "direct")
    .sort((a, b) => (b.last_message?.created_at || b.created_at)
                    .localeCompare(a.last_message?.created_at || a.created_at));
  for (const c of direct) {
    const peer = peerOf(c);
    if (peer !== S.me.id) ids.add(peer);
  }
  return [...ids].slice(0, 200);
}

let watched = "";
async function refreshPresence() {
  const list = watchList();
  const key = list.join("\n");
  if (key === watched && !S.presenceStale) return;
  watched = key;
  S.presenceStale = false;
  setPresence(await S.client.subscribePresence(list));
  refreshCount();
}

function setPresence(p) {
  // null: not someone we may know of (no shared conversation any more)
  for (const [uid, v] of Object.entries(p || {})) {
    if (v) S.presence.set(uid, v); else S.presence.delete(uid);
  }
  renderPresence();
}

// the open group's online count
let countTimer = null;
function scheduleCount() {
  clearTimeout(countTimer);
  countTimer = setTimeout(() => refreshCount(), 500);
}

async function refreshCount() {
  const cid = S.open;
  const c = S.convs.get(cid);
  if (c?.kind !== "group") {
    S.online = null;
    renderChatHead();
    return;
  }
  try {
    const n = await S.client.presenceCount(cid);
    if (S.open !== cid) return;
    S.online = n.online;
    renderChatHead();
  } catch (e) {
    // rate limited or storage away: the next change asks again
  }
  clearTimeout(countTimer);
  countTimer = setTimeout(() => refreshCount(), 30000);
}

// A conversation we hear of but do not hold (added to a group, a direct
// chat somebody opened): read it once.
function fetchConv(cid) {
  if (S.refreshTimers.has(cid)) return;
  S.refreshTimers.set(cid, setTimeout(async () => {
    try {
      const { conversation } = await api("GET", "conversations/" + cid);
      upsertConv(conversation, true);
      await refreshNames();
    } catch (e) {
      if (e.code === "not_found") dropConv(cid);
    } finally {
      S.refreshTimers.delete(cid);
    }
  }, 50));
}

// GET contacts answers in pages of about 1 MB: "next" says there is more.
async function allContacts() {
  const out = [];
  let path = "contacts";
  for (;;) {
    const page = await api("GET", path);
    out.push(...page.contacts);
    if (!page.next) return out;
    path = "contacts?after=" + encodeURIComponent(page.next);
  }
}

async function refreshNames() {
  try {
    const contacts = await allContacts();
    for (const ct of contacts) learnUser(ct.user);
    renderList();
    if (S.open != null) { renderChatHead(); renderMessages(); }
  } catch { /* names fall back to ids */ }
}

function upsertConv(c, created) {
  const old = S.convs.get(c.id);
  if (old && !created) {
    // conversation.updated of a group carries the changer's own
    // unread_count, muted and archived: keep ours
    c = { ...c, unread_count: old.unread_count, muted: old.muted,
          archived: old.archived, last_message: newest(old.last_message, c.last_message),
          last_seq: Math.max(old.last_seq, c.last_seq) };
  }
  S.convs.set(c.id, c);
  if (!c.members.every((m) => S.users.has(m.user_id))) refreshNames();
  if (!c.members.every((m) => m.user_id === S.me.id || S.presence.has(m.user_id))) {
    schedulePresence();
  }
  renderList();
  if (S.open === c.id) renderChatHead();
}

function newest(a, b) {
  if (!a) return b;
  if (!b) return a;
  return (b.updated_seq ?? b.seq) >= (a.updated_seq ?? a.seq) ? b : a;
}

function dropConv(cid) {
  S.convs.delete(cid);
  S.threads.delete(cid);
  if (S.open === cid) closeChat();
  renderList();
}

function onMember(ev, joined) {
  if (!joined && ev.user_id === S.me.id) { dropConv(ev.conversation_id); return; }
  fetchConv(ev.conversation_id);
}

// ------------------------------------------------------------ messages

function thread(cid) {
  let t = S.threads.get(cid);
  if (!t) {
    t = { byId: new Map(), hasMore: true, loaded: false, loading: false };
    S.threads.set(cid, t);
  }
  return t;
}

function reading(cid) {
  return S.open === cid && document.visibilityState === "visible";
}

function onMessage(m, created) {
  const cid = m.conversation_id;
  const c = S.convs.get(cid);
  if (m.client_msg_id && S.pending.has(m.client_msg_id)
      && m.sender_id === S.me.id) {
    S.pending.delete(m.client_msg_id);
  }
  const t = S.threads.get(cid);
  if (t) t.byId.set(m.id, m);

  if (!c) {
    fetchConv(cid);
    return;
  }
  if (created && m.seq > c.last_seq) {
    // new to us (a sync also replays what the list already counted)
    c.last_seq = m.seq;
    if (m.sender_id !== S.me.id && !m.system) {
      if (!reading(cid)) c.unread_count++;
      scheduleDelivered(cid, m.seq);
    }
  }
  if (!c.last_message || m.seq >= c.last_message.seq) c.last_message = newest(c.last_message, m);
  if (!created && m.deleted && m.sender_id !== S.me.id && !reading(cid)) {
    const mine = myMember(c);
    if (mine && m.seq > mine.last_read_seq && c.unread_count > 0) c.unread_count--;
  }
  c.last_seq = Math.max(c.last_seq, m.updated_seq ?? m.seq);
  renderList();
  if (S.open === cid) {
    renderMessages({ stick: m.sender_id === S.me.id });
    if (m.sender_id !== S.me.id) {
      clearTyping(cid, m.sender_id);
      scheduleRead(cid);
    }
  }
}

function scheduleDelivered(cid, seq) {
  const prev = S.deliveredTimers.get(cid);
  if (prev && prev.seq >= seq) return;
  if (prev) clearTimeout(prev.timer);
  const timer = setTimeout(() => {
    S.deliveredTimers.delete(cid);
    S.client.request("message.delivered", { conversation_id: cid, seq }).catch(() => {});
  }, 300);
  S.deliveredTimers.set(cid, { seq, timer });
}

function scheduleRead(cid) {
  if (!reading(cid) || S.readTimers.has(cid)) return;
  S.readTimers.set(cid, setTimeout(async () => {
    S.readTimers.delete(cid);
    const c = S.convs.get(cid);
    const mine = c && myMember(c);
    if (!c || !reading(cid) || !mine) return;
    if (mine.last_read_seq >= c.last_seq && c.unread_count === 0) return;
    try {
      const r = await S.client.markRead(cid, c.last_seq);
      mine.last_read_seq = Math.max(mine.last_read_seq, r.last_read_seq);
      c.unread_count = r.unread_count;
      renderList();
    } catch { /* the next look marks it */ }
  }, 200));
}

document.addEventListener("visibilitychange", () => {
  if (S.open != null) scheduleRead(S.open);
});

function onReceipt(ev) {
  const c = S.convs.get(ev.conversation_id);
  if (!c) return;
  const m = c.members.find((x) => x.user_id === ev.user_id);
  if (!m) return;
  if (ev.kind === "read") {
    m.last_read_seq = Math.max(m.last_read_seq, ev.seq);
    m.last_delivered_seq = Math.max(m.last_delivered_seq, ev.seq);
    if (ev.user_id === S.me.id && ev.seq >= c.last_seq) {
      c.unread_count = 0;        // read in another tab
      renderList();
    }
  } else {
    m.last_delivered_seq = Math.max(m.last_delivered_seq, ev.seq);
  }
  if (S.open === c.id) renderStatuses();
}

async function loadEarlier(cid) {
  const t = thread(cid);
  if (t.loading || (t.loaded && !t.hasMore)) return;
  t.loading = true;
  const box = $("messages-scroll");
  const before = box.scrollHeight - box.scrollTop;
  try {
    let oldest = null;
    for (const m of t.byId.values()) if (oldest == null || m.seq < oldest) oldest = m.seq;
    const page = await S.client.history(cid, oldest == null ? { limit: PAGE_SIZE }
                                                  : { beforeSeq: oldest, limit: PAGE_SIZE });
    for (const m of page.messages) {
      const have = t.byId.get(m.id);
      if (!have || (have.updated_seq ?? 0) <= m.updated_seq) t.byId.set(m.id, m);
    }
    t.hasMore = page.has_more;
    const first = !t.loaded;
    t.loaded = true;
    if (S.open === cid) {
      renderMessages({ stick: first });
      if (!first) box.scrollTop = box.scrollHeight - before;   // stay put
    }
  } catch (e) {
    toast("Could not load messages: " + describe(e));
  } finally {
    t.loading = false;
  }
}

// ------------------------------------------------------------- typing

function onTyping(ev) {
  const cid = ev.conversation_id;
  if (!S.typing.has(cid)) S.typing.set(cid, new Map());
  const who = S.typing.get(cid);
  clearTimeout(who.get(ev.user_id));
  if (ev.active) {
    who.set(ev.user_id, setTimeout(() => clearTyping(cid, ev.user_id), TYPING_SHOW_MS));
  } else {
    who.delete(ev.user_id);
  }
  if (S.open === cid) renderTyping();
}

function clearTyping(cid, uid) {
  const who = S.typing.get(cid);
  if (!who || !who.has(uid)) return;
  clearTimeout(who.get(uid));
  who.delete(uid);
  if (S.open === cid) renderTyping();
}

function renderTyping() {
  const who = [...(S.typing.get(S.open)?.keys() || [])].map(nameOf);
  $("typing").textContent = !who.length ? ""
    : who.length === 1 ? `${who[0]} is typing…`
    : who.length === 2 ? `${who[0]} and ${who[1]} are typing…`
    : `${who.length} people are typing…`;
}

// ------------------------------------------------------- conversation list

function sortedConvs() {
  const key = (c) => c.last_message?.created_at || c.created_at;
  return [...S.convs.values()]
    .filter((c) => c.archived === S.archivedView)
    .sort((a, b) => (key(b) > key(a) ? 1 : key(b) < key(a) ? -1 : b.id - a.id));
}

function renderList() {
  const ul = $("conversations");
  const list = sortedConvs();
  const keep = new Map();
  for (const li of ul.children) keep.set(Number(li.dataset.conversationId), li);
  let at = ul.firstElementChild;
  for (const c of list) {
    let li = keep.get(c.id);
    keep.delete(c.id);
    if (!li) li = newConvItem(c);
    fillConvItem(li, c);
    if (li !== at) ul.insertBefore(li, at);
    else at = at.nextElementSibling;
  }
  for (const li of keep.values()) li.remove();
  $("conversations-empty").hidden = list.length > 0;
  renderUnreadTotal();
}

function newConvItem(c) {
  const li = el("li", { class: "conv", dataset: { conversationId: c.id } });
  const dot = el("span", { class: "presence-dot" });
  const avatar = el("span", { class: "avatar", "aria-hidden": "true" }, el("span"), dot);
  const btn = el("button", { type: "button", class: "conv-open" },
    avatar,
    el("span", { class: "conv-title" }),
    el("span", { class: "conv-side" },
      el("span", { class: "conv-muted", text: "muted" }),
      el("time", { class: "conv-time" })),
    el("span", { class: "conv-preview" }),
    el("span", { class: "badge conv-unread" }));
  btn.addEventListener("click", () => openChat(c.id));
  li.append(btn);
  return li;
}

function fillConvItem(li, c) {
  const title = titleOf(c);
  const peer = peerOf(c);
  li.querySelector(".avatar > span").textContent = title.slice(0, 1).toUpperCase();
  li.querySelector(".conv-title").textContent = title;
  const dot = li.querySelector(".presence-dot");
  dot.hidden = c.kind !== "direct" || peer === S.me.id;
  const online = !!S.presence.get(peer)?.online;
  dot.dataset.online = String(online);
  li.querySelector(".conv-preview").textContent = preview(c.last_message);
  const time = li.querySelector(".conv-time");
  const at = c.last_message?.created_at || c.created_at;
  time.textContent = shortTime(at);
  time.dateTime = at;
  li.querySelector(".conv-muted").hidden = !c.muted;
  const badge = li.querySelector(".conv-unread");
  badge.hidden = !(c.unread_count > 0);
  badge.textContent = String(c.unread_count);
  const btn = li.querySelector(".conv-open");
  btn.setAttribute("aria-label", [
    title, c.kind === "direct" && peer !== S.me.id ? (online ? "online" : "offline") : null,
    c.unread_count > 0 ? `${c.unread_count} unread` : null,
    c.muted ? "muted" : null, preview(c.last_message),
  ].filter(Boolean).join(", "));
  if (S.open === c.id) li.setAttribute("aria-current", "true");
  else li.removeAttribute("aria-current");
}

function renderUnreadTotal() {
  let total = 0;
  for (const c of S.convs.values()) {
    if (!c.muted && !c.archived) total += c.unread_count;
  }
  const b = $("unread-total");
  b.hidden = total === 0;
  b.textContent = String(total);
  b.setAttribute("aria-label", `${total} unread`);
  document.title = (total ? `(${total}) ` : "") + "Chat";
}

function renderPresence() {
  renderList();
  if (S.open != null) renderChatHead();
}

$("show-archived").addEventListener("change", async (ev) => {
  S.archivedView = ev.target.checked;
  renderList();
  await refreshAll();
});

// -------------------------------------------------------------- the chat

async function openChat(cid, { seq } = {}) {
  const c = S.convs.get(cid);
  if (!c) return;
  if (S.open !== cid) {
    cancelEdit();
    if (S.open != null) S.client.stopTyping(S.open);
    S.open = cid;
    S.online = null;
    $("composer-input").value = "";
    clearDrafts();                  // files go with the conversation they were picked in
    $("messages").replaceChildren();
    // the open group's members are watched, and counted
    schedulePresence();
  }
  $("chat").hidden = false;
  $("chat").dataset.conversationId = String(cid);
  $("app").dataset.view = "chat";
  renderList();
  renderChatHead();
  renderTyping();
  const t = thread(cid);
  if (!t.loaded) await loadEarlier(cid);
  else renderMessages({ stick: true });
  if (seq != null) {
    // a search result: page back until it is here
    for (let i = 0; i < 20 && S.open === cid && t.hasMore
                    && ![...t.byId.values()].some((m) => m.seq <= seq); i++) {
      await loadEarlier(cid);
    }
    highlight(cid, seq);
  }
  scheduleRead(cid);
  if (seq == null) $("composer-input").focus();
}

function highlight(cid, seq) {
  const li = $("messages").querySelector(`li[data-seq="${seq}"]`);
  if (!li || S.open !== cid) return;
  for (const x of $("messages").querySelectorAll(".highlight")) x.classList.remove("highlight");
  li.classList.add("highlight");
  li.scrollIntoView({ block: "center" });
  li.querySelector(".msg-bubble").focus();
}

function closeChat() {
  if (S.open != null) S.client.stopTyping(S.open);
  cancelEdit();
  clearDrafts();
  S.open = null;
  S.online = null;
  schedulePresence();
  $("chat").hidden = true;
  delete $("chat").dataset.conversationId;
  $("app").dataset.view = "list";
  renderList();
}

$("chat-back").addEventListener("click", () => {
  const cid = S.open;
  closeChat();
  $("conversations").querySelector(`li[data-conversation-id="${cid}"] button`)?.focus();
});

function renderChatHead() {
  const c = S.convs.get(S.open);
  if (!c) return;
  $("chat-title").textContent = titleOf(c);
  const peer = peerOf(c);
  let sub = "";
  const online = $("chat-online");
  online.hidden = c.kind !== "group" || S.online == null;
  online.textContent = online.hidden ? "" : `${S.online} online`;
  if (c.kind === "group") {
    sub = `${c.members_count ?? c.members.length} members`;
  } else if (peer !== S.me.id) {
    const p = S.presence.get(peer);
    sub = p?.online ? "online" : p ? lastSeen(p.last_seen) : "";
  }
  $("chat-subtitle").textContent = sub;
  const press = (id, on, yes, no) => {
    $(id).setAttribute("aria-pressed", String(on));
    $(id).textContent = on ? yes : no;
  };
  press("chat-mute", c.muted, "Unmute", "Mute");
  press("chat-archive", c.archived, "Unarchive", "Archive");
  const direct = c.kind === "direct" && peer !== S.me.id;
  $("chat-block").hidden = !direct;
  const blocked = direct && S.blocks.has(peer);
  press("chat-block", blocked, "Unblock", "Block");
  const me = myMember(c);
  $("chat-add-member").hidden = c.kind !== "group" || !me || me.role === "member";
  $("chat-leave").hidden = c.kind !== "group";
  $("chat-blocked-note").hidden = !blocked;
  $("chat-blocked-note").textContent = blocked
    ? `You blocked ${nameOf(peer)}. Unblock to send messages.` : "";
  $("composer-input").disabled = blocked;
  $("composer-send").disabled = blocked;
  $("attach").disabled = blocked;
}

function sortedMessages(cid) {
  const t = S.threads.get(cid);
  const list = t ? [...t.byId.values()].sort((a, b) => a.seq - b.seq) : [];
  const pend = [...S.pending.entries()]
    .filter(([, p]) => p.cid === cid)
    .map(([cmid, p]) => ({ pending: true, client_msg_id: cmid, body: p.body,
                           created_at: p.at, sender_id: S.me.id,
                           attachments: p.attachments || [] }));
  return list.concat(pend);
}

function renderMessages({ stick = false } = {}) {
  const cid = S.open;
  const ol = $("messages");
  const box = $("messages-scroll");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
  const t = thread(cid);
  const c = S.convs.get(cid);
  const keep = new Map();
  for (const li of ol.children) keep.set(li.dataset.key, li);
  let at = ol.firstElementChild;
  for (const m of sortedMessages(cid)) {
    const key = m.pending ? "p:" + m.client_msg_id : "m:" + m.id;
    let li = keep.get(key);
    keep.delete(key);
    if (!li) li = el("li", { dataset: { key } });
    fillMessage(li, m, c);
    if (li !== at) ol.insertBefore(li, at);
    else at = at.nextElementSibling;
  }
  for (const li of keep.values()) li.remove();
  $("load-earlier").hidden = !(t.loaded && t.hasMore);
  if (stick || atBottom) box.scrollTop = box.scrollHeight;
}

function fillMessage(li, m, c) {
  const mine = m.sender_id === S.me.id;
  const stamp = m.pending ? "p" : `${m.updated_seq}:${m.deleted}:${c.kind}`;
  li.className = ["msg", mine ? "mine" : "theirs", m.pending && "pending",
                  m.deleted && "deleted", m.system && "system",
                  li.classList.contains("highlight") && "highlight"]
    .filter(Boolean).join(" ");
  if (!m.pending) {
    li.dataset.messageId = String(m.id);
    li.dataset.seq = String(m.seq);
  }
  if (li.dataset.stamp !== stamp) {
    li.dataset.stamp = stamp;
    const parts = [];
    if (c.kind === "group" && !mine && !m.system) {
      parts.push(el("span", { class: "msg-sender", text: nameOf(m.sender_id) }));
    }
    if (!m.deleted && m.attachments?.length) {
      parts.push(el("div", { class: "msg-attachments" }, ...m.attachments.map(renderAttachment)));
    }
    parts.push(el("div", { class: "msg-bubble", tabindex: "-1" },
      el("span", { class: "msg-body", text: m.deleted ? "Message deleted" : m.body })));
    const meta = el("div", { class: "msg-meta" },
      el("time", { class: "msg-time", datetime: m.created_at, title: fullFmt.format(new Date(m.created_at)),
                   text: timeFmt.format(new Date(m.created_at)) }));
    if (m.edited_at && !m.deleted) meta.append(el("span", { class: "msg-edited", text: "edited" }));
    if (mine) meta.append(el("span", { class: "msg-status" }));
    if (mine && !m.pending && !m.deleted && !m.system) {
      meta.append(el("span", { class: "msg-actions" },
        el("button", { type: "button", class: "msg-edit", text: "Edit",
                       "aria-label": "Edit message", onclick: () => startEdit(m.id) }),
        el("button", { type: "button", class: "msg-delete", text: "Delete",
                       "aria-label": "Delete message", onclick: () => deleteMessage(m.id) })));
    }
    parts.push(meta);
    li.replaceChildren(...parts);
  }
  if (mine) fillStatus(li, m, c);
}

function fillStatus(li, m, c) {
  const s = li.querySelector(".msg-status");
  if (!s) return;
  let status = "sent";
  let text = "Sent";
  if (m.pending) {
    status = "sending"; text = S.client.state === "open" ? "Sending…" : "Waiting for connection";
  } else {
    const others = c.members.filter((x) => x.user_id !== S.me.id);
    const read = others.filter((x) => x.last_read_seq >= m.seq).length;
    const delivered = others.filter((x) => x.last_delivered_seq >= m.seq).length;
    if (others.length && read === others.length) { status = "read"; text = "Read"; }
    else if (read) { status = "read"; text = `Read by ${read}`; }
    else if (others.length && delivered === others.length) { status = "delivered"; text = "Delivered"; }
  }
  s.dataset.status = status;
  s.textContent = text;
}

function renderStatuses() {
  const c = S.convs.get(S.open);
  if (!c) return;
  for (const li of $("messages").children) {
    if (!li.classList.contains("mine")) continue;
    const m = li.dataset.messageId
      ? S.threads.get(S.open)?.byId.get(Number(li.dataset.messageId)) : null;
    if (m) fillStatus(li, m, c);
  }
}

$("load-earlier").addEventListener("click", () => S.open != null && loadEarlier(S.open));
$("messages-scroll").addEventListener("scroll", () => {
  const t = S.open != null && S.threads.get(S.open);
  if (t && t.loaded && t.hasMore && !t.loading && $("messages-scroll").scrollTop < 80) {
    loadEarlier(S.open);
  }
});

// ------------------------------------------------------------ composing

const input = $("composer-input");

input.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    $("composer").requestSubmit();
  } else if (ev.key === "Escape" && S.editing != null) {
    ev.preventDefault();
    cancelEdit();
  }
});

input.addEventListener("input", () => {
  input.style.height = "auto";
  input.style.height = Math.min(input.scrollHeight, 160) + "px";
  if (S.open == null || S.editing != null) return;
  if (input.value.trim()) S.client.typing(S.open);
  else S.client.stopTyping(S.open);
});

input.addEventListener("blur", () => {
  if (S.open != null) S.client.stopTyping(S.open);
});

$("composer").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const cid = S.open;
  const text = input.value.trim();
  if (cid == null || (!text && (S.editing != null || !drafts.length))) return;
  const max = S.client.welcome?.limits?.max_message_length;
  if (max && [...text].length > max) {
    toast(`A message has at most ${max} characters.`);
    return;
  }
  if (S.editing != null) {
    input.value = "";
    input.style.height = "auto";
    const id = S.editing;
    cancelEdit();
    try {
      const m = await S.client.edit(id, text);
      onMessage(m, false);
    } catch (e) {
      toast("Could not edit: " + describe(e));
    }
    return;
  }
  const files = readyDrafts();
  if (!files) return;               // the strip says why
  input.value = "";
  input.style.height = "auto";
  // a message needs a body: one of files alone is their names
  await sendMessage(cid, text || files.map((d) => d.name).join(", "), files);
});

async function sendMessage(cid, body, files = []) {
  const cmid = crypto.randomUUID ? crypto.randomUUID()
    : Date.now().toString(36) + Math.random().toString(36).slice(2);
  // the pending message shows the files from the strip's copies
  const shown = files.map((d) => ({
    upload_id: d.upload.id, name: d.upload.name ?? d.name, type: d.upload.type,
    size: d.upload.size, width: d.upload.width, height: d.upload.height,
    thumbnail: null, local: d.preview || true,
  }));
  S.pending.set(cmid, { cid, body, at: new Date().toISOString(), attachments: shown });
  if (S.open === cid) renderMessages({ stick: true });
  for (const d of files) d.li.remove();
  $("drafts").hidden = drafts.length === 0;
  const attachments = files.length ? files.map((d) => ({
    upload_id: d.upload.id, ...(d.thumb ? { thumbnail_id: d.thumb.id } : {}),
  })) : undefined;
  try {
    const m = await S.client.send(cid, body, { clientMsgId: cmid, attachments });
    S.pending.delete(cmid);
    onMessage(m, true);
    for (const d of files) if (d.preview) URL.revokeObjectURL(d.preview);
  } catch (e) {
    S.pending.delete(cmid);
    if (S.open === cid) {
      renderMessages();
      // nothing is lost: the text, and the files back in the strip
      if (!input.value && body && files.map((d) => d.name).join(", ") !== body) {
        input.value = body;
      }
      restoreDrafts(files);
    }
    toast("Not sent: " + describe(e));
  }
}

function startEdit(id) {
  const m = S.threads.get(S.open)?.byId.get(id);
  if (!m || m.deleted) return;
  S.client.stopTyping(S.open);
  S.editing = id;
  $("composer-editing").hidden = false;
  input.value = m.body;
  input.focus();
  input.setSelectionRange(m.body.length, m.body.length);
}

function cancelEdit() {
  if (S.editing == null) return;
  S.editing = null;
  $("composer-editing").hidden = true;
  input.value = "";
}

$("composer-cancel").addEventListener("click", () => { cancelEdit(); input.focus(); });

async function deleteMessage(id) {
  if (!confirm("Delete this message for everyone?")) return;
  try {
    const m = await S.client.remove(id);
    onMessage(m, false);
  } catch (e) {
    toast("Could not delete: " + describe(e));
  }
}

// ---------------------------------------------------------- attachments

// Files are uploaded as soon as they are picked (chat.upload, with
// progress and cancel), shown in the strip above the composer, and sent
// with the message as upload ids. An image gets a thumbnail made here
// (canvas, longest side THUMB_MAX) uploaded beside it.
const THUMB_MAX = 320;
const MAX_ATTACHMENTS = 10;         // a message's limit (docs/protocol.md)
const SHOW_MAX = 240;               // an image bubble's longest side, in px

const drafts = [];                  // the strip: {key, file, name, ...}
let draftSeq = 0;

function humanSize(n) {
  if (n == null) return "";
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

function isImageType(type) {
  return /^image\/(png|jpeg|gif|webp)$/.test(type || "");
}

// a file's badge: its extension (no emoji: not every system has the font)
function fileBadge(name, type) {
  const ext = /\.([A-Za-z0-9]{1,4})$/.exec(name || "")?.[1];
  const text = type === "application/pdf" ? "PDF" : ext ? ext.toUpperCase() : "FILE";
  return el("span", { class: "att-icon", "aria-hidden": "true", text });
}

function announce(text) {
  $("drafts-status").textContent = text;
}

function addFiles(files) {
  if (S.open == null || !files.length) return;
  if (S.editing != null) {
    toast("Finish or cancel the edit first: an edit changes the text only.");
    return;
  }
  for (const file of files) {
    if (drafts.length >= MAX_ATTACHMENTS) {
      toast(`A message has at most ${MAX_ATTACHMENTS} attachments.`);
      break;
    }
    const d = {
      key: ++draftSeq, file, name: file.name || "pasted-image.png",
      size: file.size, image: isImageType(file.type),
      ctrl: new AbortController(), state: "uploading", loaded: 0,
      total: file.size, upload: null, thumb: null, error: null, li: null,
    };
    d.preview = d.image ? URL.createObjectURL(file) : null;
    drafts.push(d);
    $("drafts").append(draftItem(d));
    startUpload(d);
  }
  $("drafts").hidden = drafts.length === 0;
  announce(`${drafts.length} attachment${drafts.length === 1 ? "" : "s"}, uploading`);
}

function draftItem(d) {
  const li = el("li", { class: "draft", dataset: { state: d.state, key: d.key } },
    d.image ? el("img", { class: "draft-thumb", src: d.preview, alt: "" })
            : fileBadge(d.name, d.file.type),
    el("span", { class: "draft-text" },
      el("span", { class: "draft-name", text: d.name }),
      el("span", { class: "draft-size", text: humanSize(d.size) }),
      el("progress", { max: "1", value: "0", "aria-label": `Uploading ${d.name}` }),
      el("span", { class: "draft-error error", role: "alert" })),
    el("button", { type: "button", class: "draft-remove", text: "×",
                   onclick: () => removeDraft(d) }));
  d.li = li;
  fillDraft(d);
  return li;
}

function fillDraft(d) {
  const li = d.li;
  li.dataset.state = d.state;
  const bar = li.querySelector("progress");
  bar.hidden = d.state !== "uploading";
  bar.value = d.total ? Math.min(1, d.loaded / d.total) : 0;
  li.querySelector(".draft-error").textContent = d.error || "";
  li.querySelector(".draft-remove").setAttribute("aria-label",
    d.state === "uploading" ? `Cancel the upload of ${d.name}` : `Remove ${d.name}`);
}

async function startUpload(d) {
  const signal = d.ctrl.signal;
  try {
    const thumb = d.image ? await makeThumbnail(d.file).catch(() => null) : null;
    if (thumb) d.total += thumb.size;
    d.upload = await S.client.upload(d.file, {
      name: d.name, signal,
      onProgress: ({ loaded }) => { d.loaded = loaded; fillDraft(d); },
    });
    if (thumb && isImageType(d.upload.type)) {
      try {
        d.thumb = await S.client.upload(thumb, {
          name: "thumbnail-" + d.name.replace(/\.[^.]*$/, "") +
                (thumb.type === "image/jpeg" ? ".jpg" : ".png"),
          signal,
          onProgress: ({ loaded }) => { d.loaded = d.size + loaded; fillDraft(d); },
        });
      } catch (e) {
        if (e.code === "cancelled") throw e;
        d.thumb = null;             // the image itself shows instead
      }
    }
    d.state = "done";
    announce(`${d.name} uploaded`);
  } catch (e) {
    if (e.code === "cancelled") return;     // removed from the strip
    d.state = "error";
    d.error = "Upload failed: " + describe(e);
  }
  fillDraft(d);
}

// A thumbnail of an image larger than THUMB_MAX: PNG for the types that
// may be transparent, else JPEG; null when the image is small already
// (the image itself is shown) or the browser cannot decode it.
async function makeThumbnail(file) {
  const bmp = await createImageBitmap(file);
  try {
    const long = Math.max(bmp.width, bmp.height);
    if (long <= THUMB_MAX) return null;
    const k = THUMB_MAX / long;
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(bmp.width * k));
    canvas.height = Math.max(1, Math.round(bmp.height * k));
    canvas.getContext("2d").drawImage(bmp, 0, 0, canvas.width, canvas.height);
    const type = file.type === "image/jpeg" ? "image/jpeg" : "image/png";
    return await new Promise((resolve) => canvas.toBlob(resolve, type, 0.85));
  } finally {
    bmp.close();
  }
}

function removeDraft(d, { focus = true } = {}) {
  const i = drafts.indexOf(d);
  if (i < 0) return;
  d.ctrl.abort();
  if (d.preview) URL.revokeObjectURL(d.preview);
  drafts.splice(i, 1);
  const next = d.li.nextElementSibling || d.li.previousElementSibling;
  d.li.remove();
  $("drafts").hidden = drafts.length === 0;
  if (focus) {
    announce(`${d.name} removed`);
    (next?.querySelector(".draft-remove") || input).focus();
  }
}

function clearDrafts() {
  for (const d of [...drafts]) removeDraft(d, { focus: false });
  announce("");
}

// What the strip sends: null (and why, in the strip) while an upload
// runs or after one failed; the composer stays usable either way.
function readyDrafts() {
  if (drafts.some((d) => d.state === "uploading")) {
    announce("Wait until the files are uploaded, or remove them.");
    toast("Wait until the files are uploaded, or remove them.");
    return null;
  }
  if (drafts.some((d) => d.state === "error")) {
    toast("Remove the files that failed to upload, then send.");
    return null;
  }
  return drafts.splice(0);
}

// the drafts of a message that could not be sent go back to the strip
function restoreDrafts(list) {
  for (const d of list) {
    if (drafts.length >= MAX_ATTACHMENTS) break;
    drafts.push(d);
    $("drafts").append(d.li);
  }
  $("drafts").hidden = drafts.length === 0;
}

$("attach").addEventListener("click", () => $("attach-input").click());
$("attach-input").addEventListener("change", (ev) => {
  addFiles([...ev.target.files]);
  ev.target.value = "";             // the same file may be picked again
  input.focus();
});

input.addEventListener("paste", (ev) => {
  const files = [...(ev.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
  if (!files.length) return;        // text pastes as text
  ev.preventDefault();
  addFiles(files);
});

// drops anywhere on the open conversation
const chatBox = $("chat");
const carriesFiles = (ev) => [...(ev.dataTransfer?.types || [])].includes("Files");
chatBox.addEventListener("dragover", (ev) => {
  if (!carriesFiles(ev) || S.editing != null) return;
  ev.preventDefault();
  ev.dataTransfer.dropEffect = "copy";
  chatBox.classList.add("dropping");
});
chatBox.addEventListener("dragleave", (ev) => {
  if (!chatBox.contains(ev.relatedTarget)) chatBox.classList.remove("dropping");
});
chatBox.addEventListener("drop", (ev) => {
  chatBox.classList.remove("dropping");
  if (!carriesFiles(ev)) return;
  ev.preventDefault();
  addFiles([...ev.dataTransfer.files]);
});
// a file dropped beside the conversation does nothing, rather than the
// browser leaving the page to show it
for (const type of ["dragover", "drop"]) {
  window.addEventListener(type, (ev) => { if (carriesFiles(ev)) ev.preventDefault(); });
}

// ---------------------------------------------- attachments in messages

// The page authenticates REST calls with a bearer header (its tokens are
// minted per tab and never put in a cookie), and neither <img src> nor a
// download link can send one. A token in the URL (access_token=) would
// land in history, logs and Referer; a cookie needs chat_token_cookie and
// exposes every route to cross-site requests. So files are fetched with
// the header (chat.fetchFile) and shown through object URLs, kept here
// per url for the life of the page.
const fileUrls = new Map();         // url -> Promise of an object URL

function fileUrl(url) {
  let p = fileUrls.get(url);
  if (!p) {
    p = S.client.fetchFile(url).then((blob) => URL.createObjectURL(blob));
    p.catch(() => fileUrls.delete(url));    // asked again next time
    fileUrls.set(url, p);
  }
  return p;
}

// the size an image is shown at, known before it loads: no jump
function fitted(w, h, max = SHOW_MAX) {
  if (!w || !h) return { w: max, h: Math.round(max * 3 / 4) };
  const k = Math.min(1, max / Math.max(w, h));
  return { w: Math.max(1, Math.round(w * k)), h: Math.max(1, Math.round(h * k)) };
}

async function downloadFile(a, ev) {
  ev.preventDefault();
  try {
    const href = a.local || await fileUrl(a.url);
    const link = el("a", { href, download: a.name || "file", hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (e) {
    toast("Could not download: " + describe(e));
  }
}

function renderAttachment(a) {
  if (a.upload_id == null) {
    // a link (the {url, name, mime, size} of chat_attachment_hosts, or a
    // message from before uploads): only http(s) is followed
    let safe = null;
    try {
      const u = new URL(a.url, location.href);
      if (u.protocol === "https:" || u.protocol === "http:") safe = u.href;
    } catch { /* not a URL */ }
    return el("div", { class: "att att-link" },
      el("span", { class: "att-icon", "aria-hidden": "true", text: "LINK" }),
      safe ? el("a", { href: safe, target: "_blank", rel: "noopener noreferrer",
                       text: a.name || a.url })
           : el("span", { text: a.name || String(a.url) }),
      a.size != null ? el("span", { class: "att-size", text: humanSize(a.size) }) : null);
  }
  const name = a.name || (isImageType(a.type) ? "image" : "file");
  if (isImageType(a.type)) {
    const t = a.thumbnail;
    const src = t ? t.url : a.url;
    const { w, h } = fitted(t?.width ?? a.width, t?.height ?? a.height);
    const img = el("img", { alt: name, width: String(w), height: String(h) });
    if (typeof a.local === "string") img.src = a.local;
    else if (!a.local) fileUrl(src).then((u) => { img.src = u; }, () => img.classList.add("broken"));
    return el("button", {
      type: "button", class: "att att-image",
      "aria-label": `Open image ${name}` + (a.width ? ` (${a.width} × ${a.height})` : ""),
      onclick: () => openViewer(a),
      disabled: a.local ? true : null,
    }, img);
  }
  return el("div", { class: "att att-file" },
    fileBadge(name, a.type),
    el("span", { class: "att-name", text: name }),
    el("span", { class: "att-size", text: humanSize(a.size) }),
    a.local ? null : el("a", { class: "att-download", href: a.url, download: name,
                               "aria-label": `Download ${name}`, text: "Download",
                               onclick: (ev) => downloadFile(a, ev) }));
}

let viewing = null;
function openViewer(a) {
  viewing = a;
  const name = a.name || "image";
  $("viewer-title").textContent = name;
  const img = $("viewer-image");
  img.alt = name;
  img.removeAttribute("src");
  if (a.width && a.height) {
    img.width = a.width;
    img.height = a.height;
  } else {
    img.removeAttribute("width");
    img.removeAttribute("height");
  }
  $("viewer-download").href = a.url;
  $("viewer-download").setAttribute("download", name);
  $("viewer").showModal();
  $("viewer-close").focus();
  fileUrl(a.url).then((u) => { if (viewing === a) img.src = u; },
                      (e) => toast("Could not open the image: " + describe(e)));
}

$("viewer-download").addEventListener("click", (ev) => viewing && downloadFile(viewing, ev));
$("viewer").addEventListener("close", () => { viewing = null; });

// ------------------------------------------------- conversation actions

async function toggle(kind) {
  const c = S.convs.get(S.open);
  if (!c) return;
  const on = kind === "mute" ? c.muted : c.archived;
  try {
    const { conversation } = await api(on ? "DELETE" : "PUT",
                                       `conversations/${c.id}/${kind}`);
    // the conversation.updated event may have replaced the object meanwhile
    const now = S.convs.get(c.id) || c;
    now.muted = conversation.muted;
    now.archived = conversation.archived;
    now.unread_count = conversation.unread_count;
    renderList();
    renderChatHead();
  } catch (e) {
    toast(`Could not ${on ? "un" : ""}${kind}: ` + describe(e));
  }
}

$("chat-mute").addEventListener("click", () => toggle("mute"));
$("chat-archive").addEventListener("click", () => toggle("archive"));

$("chat-block").addEventListener("click", async () => {
  const c = S.convs.get(S.open);
  const peer = peerOf(c);
  if (!peer) return;
  const blocked = S.blocks.has(peer);
  try {
    await api(blocked ? "DELETE" : "PUT", "blocks/" + encodeURIComponent(peer));
    if (blocked) S.blocks.delete(peer);
    else S.blocks.add(peer);
    renderChatHead();
  } catch (e) {
    toast("Could not change the block: " + describe(e));
  }
});

$("chat-leave").addEventListener("click", async () => {
  const cid = S.open;
  if (cid == null || !confirm("Leave this group?")) return;
  try {
    await api("DELETE", "conversations/" + cid);
    dropConv(cid);
  } catch (e) {
    toast("Could not leave: " + describe(e));
  }
});

for (const b of document.querySelectorAll(".dialog-close")) {
  b.addEventListener("click", () => b.closest("dialog").close());
}

$("chat-add-member").addEventListener("click", () => {
  $("add-member-id").value = "";
  $("add-member-dialog").showModal();
});

$("add-member-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const uid = $("add-member-id").value.trim();
  if (!uid || S.open == null) return;
  try {
    const { conversation } = await api("POST", `conversations/${S.open}/members`,
                                       { user_id: uid, role: "member" });
    upsertConv(conversation, false);
    $("add-member-dialog").close();
  } catch (e) {
    toast("Could not add: " + describe(e));
  }
});

async function openDirect(uid) {
  try {
    const c = await S.client.createConversation({ kind: "direct", userId: uid });
    const old = S.convs.get(c.id);
    S.convs.set(c.id, old ? { ...c, unread_count: old.unread_count } : c);
    if (c.archived !== S.archivedView) {
      $("show-archived").checked = S.archivedView = c.archived;
    }
    await refreshNames();
    refreshPresence().catch(() => {});
    await openChat(c.id);
  } catch (e) {
    toast("Could not open the chat: " + describe(e));
  }
}

// -------------------------------------------------------- new chat/group

let directTimer = null;
$("new-direct").addEventListener("click", () => {
  $("new-direct-query").value = "";
  $("new-direct-results").replaceChildren();
  $("new-direct-dialog").showModal();
});

$("new-direct-query").addEventListener("input", () => {
  clearTimeout(directTimer);
  directTimer = setTimeout(async () => {
    const q = $("new-direct-query").value.trim();
    if (!q) { $("new-direct-results").replaceChildren(); return; }
    try {
      const { users } = await api("GET", "users/search?" + new URLSearchParams({ q, limit: "10" }));
      users.forEach(learnUser);
      $("new-direct-results").replaceChildren(...users.map((u) => el("li", {},
        el("button", { type: "button", dataset: { userId: u.id },
                       onclick: () => { $("new-direct-dialog").close(); openDirect(u.id); } },
           `${u.name} `, el("small", { text: "@" + u.id })))));
    } catch { /* typing on */ }
  }, SEARCH_DELAY_MS);
});

$("new-direct-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const first = $("new-direct-results").querySelector("button");
  const q = $("new-direct-query").value.trim();
  const exact = [...$("new-direct-results").querySelectorAll("button")]
    .find((b) => b.dataset.userId === q);
  const uid = exact ? q : first && !/^[A-Za-z0-9_.@-]+$/.test(q) ? first.dataset.userId : q;
  if (!uid) return;
  $("new-direct-dialog").close();
  openDirect(uid);
});

$("new-group").addEventListener("click", () => {
  $("new-group-form").reset();
  $("new-group-dialog").showModal();
});

$("new-group-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const title = $("new-group-title").value.trim();
  const members = $("new-group-members").value.split(/[\s,]+/).filter(Boolean);
  try {
    const c = await S.client.createConversation({ kind: "group", title, members });
    $("new-group-dialog").close();
    S.convs.set(c.id, c);
    if (S.archivedView) $("show-archived").checked = S.archivedView = false;
    await refreshNames();
    await openChat(c.id);
  } catch (e) {
    toast("Could not create the group: " + describe(e));
  }
});

// --------------------------------------------------------------- search

let searchTimer = null;
let searchSeq = 0;
$("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(runSearch, SEARCH_DELAY_MS);
});
$("search").addEventListener("keydown", (ev) => {
  if (ev.key === "Escape") { $("search").value = ""; runSearch(); }
});

async function runSearch() {
  const q = $("search").value.trim();
  const n = ++searchSeq;
  if (q.length < 2) { $("search-results").hidden = true; return; }
  try {
    const [users, msgs] = await Promise.all([
      api("GET", "users/search?" + new URLSearchParams({ q, limit: "8" })),
      api("GET", "messages/search?" + new URLSearchParams({ q, limit: "20" })),
    ]);
    if (n !== searchSeq) return;                  // a newer search runs
    users.users.forEach(learnUser);
    const none = (text) => el("li", { class: "none", text });
    $("search-users").replaceChildren(...(users.users.length ? users.users.map((u) =>
      el("li", {}, el("button", { type: "button", dataset: { userId: u.id },
                                  onclick: () => openDirect(u.id) },
                      `${u.name} `, el("small", { text: "@" + u.id }))))
      : [none("Nobody found")]));
    $("search-messages").replaceChildren(...(msgs.results.length ? msgs.results.map((r) => {
      const c = S.convs.get(r.message.conversation_id);
      return el("li", {}, el("button", {
        type: "button",
        dataset: { conversationId: r.message.conversation_id, seq: r.message.seq },
        onclick: () => openFound(r.message),
      }, el("strong", { text: (c ? titleOf(c) : "Conversation") + " · "
                              + nameOf(r.message.sender_id) }),
         el("br"), ...snippet(r)));
    }) : [none("No messages found")]));
    $("search-results").hidden = false;
  } catch (e) {
    toast("Search failed: " + describe(e));
  }
}

// a search result's snippet: the matches as <mark>, the rest as text;
// from snippet_parts (a message body cannot fake a match there), else
// from the « and » of an older server's snippet string
function snippet(r) {
  if (Array.isArray(r.snippet_parts)) {
    return r.snippet_parts.map((p) => p.match ? el("mark", { text: p.text })
                                              : document.createTextNode(p.text));
  }
  const out = [];
  for (const [i, part] of String(r.snippet).split(/[«»]/).entries()) {
    if (part) out.push(i % 2 ? el("mark", { text: part }) : document.createTextNode(part));
  }
  return out;
}

async function openFound(m) {
  if (!S.convs.has(m.conversation_id)) {
    try {
      const { conversation } = await api("GET", "conversations/" + m.conversation_id);
      S.convs.set(conversation.id, conversation);
      if (conversation.archived !== S.archivedView) {
        $("show-archived").checked = S.archivedView = conversation.archived;
      }
    } catch (e) {
      toast("Could not open it: " + describe(e));
      return;
    }
  }
  await openChat(m.conversation_id, { seq: m.seq });
}

// ------------------------------------------------------------------ boot

function boot() {
  const q = new URLSearchParams(location.search);
  let session = null;
  try { session = JSON.parse(sessionStorage.getItem(SESSION_KEY)); } catch { /* none */ }
  if (q.get("user")) {
    // A link may fill the form in, never sign in: another site could
    // otherwise sign a visitor in as somebody of its choosing (login CSRF).
    history.replaceState(null, "", location.pathname);
    if (!session || !session.user) {
      $("signin-user").value = q.get("user");
      $("signin-name").value = q.get("name") || "";
      showSignin();
      return;
    }
  }
  if (!session || !session.user) { showSignin(); return; }
  $("signin-user").value = session.user;
  $("signin-name").value = session.name || "";
  start(session.user, session.name).catch((e) => showSignin("Could not sign in: " + e.message));
}

boot();
