// Helpers of the browser tests of the chat page (web/index.html, app.js):
// playwright-core drives Debian's Chromium against a real nginx with the
// module and a real PostgreSQL, started by t/test_browser.py, which passes
//   CHAT_BROWSER_BASE    the page's URL (http://127.0.0.1:PORT/); the same
//                        nginx serves /chat/ws, /api/chat/, /chat/dev/token
//   CHROMIUM             the browser (default /usr/bin/chromium)
//   CHAT_SCREENSHOT_DIR  where the screenshots go (default build/screenshots)
// and optionally CHAT_BROWSER_WAIT (ms, default 15000), the deadline of
// every condition.
// Run: node --test browser-test/   (from web/, after npm ci)
//
// Every wait is for a condition, with a generous deadline (WAIT): the
// machine may be slow and shared, and nginx may run under ASan.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

export const BASE = process.env.CHAT_BROWSER_BASE;
if (!BASE) {
  throw new Error("run through t/test_browser.py (CHAT_BROWSER_BASE)");
}
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const SHOTS = process.env.CHAT_SCREENSHOT_DIR ||
  path.join(REPO, "build", "screenshots");
const FAILURES = path.join(REPO, "build", "browser-failures");

// one condition (CHAT_BROWSER_WAIT in ms for a slower machine)
export const WAIT = Number(process.env.CHAT_BROWSER_WAIT) || 15000;
export const TEST_TIMEOUT = 90000;  // one test: it fails, the rest run

// ------------------------------------------------------------- browser

let browserPromise = null;

/** One Chromium per test file, closed when the file's tests are done. */
export function browser() {
  if (!browserPromise) {
    browserPromise = chromium.launch({
      executablePath: CHROMIUM,
      // root cannot use Chromium's sandbox; nothing else runs in it
      args: process.getuid && process.getuid() === 0 ? ["--no-sandbox"] : [],
    });
  }
  return browserPromise;
}

export async function closeBrowser() {
  if (browserPromise) {
    const b = await browserPromise.catch(() => null);
    browserPromise = null;
    if (b) await b.close();
  }
}

/** Fresh user ids for one test: the tests share one database. */
export function users(...names) {
  const tag = randomBytes(4).toString("hex");
  return names.map((n) => ({ id: `${n.toLowerCase()}-${tag}`, name: n }));
}

// ----------------------------------------------------------------- tests

/**
 * A test with browser pages: fn(s) gets s.open(user, options) to sign a
 * user in on a fresh browser context (its own storage: one user each).
 * When the test fails, every page still open is saved as a PNG into
 * build/browser-failures/. A page that threw an uncaught exception fails
 * the test. todo: a known bug of the page (the test runs and reports, but
 * its failure does not fail the run).
 */
export function browserTest(name, fn, { timeout = TEST_TIMEOUT, todo } = {}) {
  test(name, { timeout, todo }, async () => {
    const s = new Session(name);
    let failed = null;
    try {
      await fn(s);
    } catch (e) {
      failed = e;
      await s.saveFailure();
    } finally {
      await s.close();
    }
    if (failed) throw failed;
    s.checkErrors();
  });
}

class Session {
  constructor(name) {
    this.name = name;
    this.pages = [];                // every Chat opened
    this.cleanups = [];
  }

  /** Signs user ({id, name}) in through the page's form and waits until
   *  it is connected. options: base (another origin, a
   *  proxy), viewport, signIn: false (only load the page), context (more
   *  options of the browser context). */
  async open(user, { base = BASE, viewport = { width: 1200, height: 760 },
                     signIn = true, context: more = {} } = {}) {
    const b = await browser();
    const context = await b.newContext({
      viewport, locale: "en-US", timezoneId: "UTC", colorScheme: "light",
      deviceScaleFactor: 1, ...more,
    });
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    const chat = new Chat(user, context, page, base);
    this.pages.push(chat);
    if (signIn) await chat.signIn();
    else await page.goto(base);
    return chat;
  }

  /** fn runs when the test ends, pass or fail. */
  defer(fn) {
    this.cleanups.push(fn);
  }

  async saveFailure() {
    mkdirSync(FAILURES, { recursive: true });
    const stem = this.name.replace(/[^A-Za-z0-9]+/g, "-").slice(0, 60);
    for (const [i, c] of this.pages.entries()) {
      if (c.page.isClosed()) continue;
      const file = path.join(FAILURES, `${stem}-${i}-${c.user.name}.png`);
      await c.page.screenshot({ path: file, fullPage: true, timeout: 5000 })
        .then(() => console.error(`# failure screenshot: ${file}`))
        .catch(() => {});
    }
  }

  async close() {
    for (const fn of this.cleanups.reverse()) {
      try { await fn(); } catch { /* the test's result counts */ }
    }
    for (const c of this.pages) await c.context.close().catch(() => {});
  }

  checkErrors() {
    const errors = this.pages.flatMap((c) =>
      c.errors.map((e) => `${c.user.name}'s page: ${e.stack || e}`));
    assert.deepEqual(errors, [], "uncaught exceptions in the page");
  }
}

/** One user's page. */
export class Chat {
  constructor(user, context, page, base) {
    this.user = user;
    this.context = context;
    this.page = page;
    this.base = base;
    this.errors = [];
    page.on("pageerror", (e) => this.errors.push(e));
  }

  $(selector) {
    return this.page.locator(selector);
  }

  /** Signs in through the form, as a person does: the page never signs
   *  in from its URL (I6). */
  async signIn() {
    await this.page.goto(this.base);
    await visible(this.$("#signin"));
    await this.$("#signin-user").fill(this.user.id);
    await this.$("#signin-name").fill(this.user.name);
    await this.$("#signin button[type=submit]").click();
    await this.waitSignedIn();
  }

  async waitSignedIn() {
    await visible(this.$("#app"));
    await expectText(this.$("#me"), this.user.name);
    await this.waitState("open");
  }

  async waitState(state, options) {
    await expectAttr(this.$("#conn-state"), "data-state", state, options);
  }

  conv(cid) {
    return this.$(`#conversations > li.conv[data-conversation-id="${cid}"]`);
  }

  /** Opens a conversation from the list and waits until it shows. */
  async openConv(cid) {
    await this.conv(cid).locator("button.conv-open").click();
    await this.waitOpen(cid);
  }

  async waitOpen(cid) {
    await visible(this.$("#chat"));
    await expectAttr(this.$("#chat"), "data-conversation-id", String(cid));
    await expectAttr(this.conv(cid), "aria-current", "true");
  }

  get messages() {
    return this.$("#messages > li.msg");
  }

  /** The message items whose body is exactly text. */
  message(text) {
    return this.$("#messages > li.msg").filter({
      has: this.page.locator(".msg-body", { hasText: exactly(text) }),
    });
  }

  /** Types into the composer and presses Enter. */
  async send(text) {
    const input = this.$("#composer-input");
    await input.fill(text);
    await input.press("Enter");
  }

  /** The bodies of the messages shown, in order. */
  bodies() {
    return texts(this.$("#messages > li.msg .msg-body"));
  }
}

// ------------------------------------------------------- conditions

/** Runs fn until it does not throw; after timeout its last error is the
 *  failure. fn reads the page without waiting itself. */
export async function eventually(fn, { timeout = WAIT, interval = 100 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() >= deadline) throw e;
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** textContent of every match, whitespace collapsed (does not wait). */
export function texts(locator) {
  return locator.evaluateAll((els) =>
    els.map((e) => e.textContent.replace(/\s+/g, " ").trim()));
}

function matches(actual, expected) {
  return expected instanceof RegExp ? expected.test(actual) : actual === expected;
}

export function exactly(text) {
  return new RegExp("^\\s*" + text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "\\s*$");
}

/** Waits until the one element of locator has text expected (a string:
 *  exactly, collapsed; a RegExp: matching). */
export async function expectText(locator, expected, options) {
  await eventually(async () => {
    const t = await texts(locator);
    assert.equal(t.length, 1, `${locator} matches ${t.length} elements`);
    assert.ok(matches(t[0], expected),
      `${locator}: text ${JSON.stringify(t[0])}, expected ${expected instanceof RegExp ? expected : JSON.stringify(expected)}`);
  }, options);
}

/** Waits until the texts of all matches equal expected (an array). */
export async function expectTexts(locator, expected, options) {
  await eventually(async () => {
    assert.deepEqual(await texts(locator), expected, `${locator}`);
  }, options);
}

export async function expectCount(locator, n, options) {
  await eventually(async () => {
    assert.equal(await locator.count(), n, `${locator}: count`);
  }, options);
}

/** Waits until the one element of locator has attribute name == value
 *  (null: absent). */
export async function expectAttr(locator, name, value, options) {
  await eventually(async () => {
    const v = await locator.evaluateAll((els, n) => els.map((e) => e.getAttribute(n)), name);
    assert.equal(v.length, 1, `${locator} matches ${v.length} elements`);
    assert.equal(v[0], value, `${locator}: attribute ${name}`);
  }, options);
}

export async function expectClass(locator, cls, present = true, options) {
  await eventually(async () => {
    const v = await locator.evaluateAll((els, c) => els.map((e) => e.classList.contains(c)), cls);
    assert.equal(v.length, 1, `${locator} matches ${v.length} elements`);
    assert.equal(v[0], present, `${locator}: class ${cls} ${present ? "missing" : "present"}`);
  }, options);
}

export function visible(locator, timeout = WAIT) {
  return locator.waitFor({ state: "visible", timeout });
}

export function hidden(locator, timeout = WAIT) {
  return locator.waitFor({ state: "hidden", timeout });
}

export async function expectTitle(page, expected, options) {
  await eventually(async () => {
    const t = await page.title();
    assert.ok(matches(t, expected), `document.title ${JSON.stringify(t)}, expected ${expected}`);
  }, options);
}

// ------------------------------------------------------------- REST

/** A development token for user ({id, name}), from the page's nginx. */
export async function devToken(user) {
  const q = new URLSearchParams({ user: user.id, name: user.name });
  const r = await fetch(new URL("chat/dev/token?" + q, BASE));
  assert.equal(r.status, 200, `dev token for ${user.id}`);
  return (await r.json()).token;
}

/** A REST call as user; returns the JSON body, fails on an error. */
export async function rest(user, method, route, body) {
  if (!user.token) user.token = await devToken(user);
  const r = await fetch(new URL("api/chat/" + route, BASE), {
    method,
    headers: { Authorization: "Bearer " + user.token,
               ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await r.json().catch(() => ({}));
  assert.ok(r.ok, `${method} ${route} as ${user.id}: ${r.status} ${JSON.stringify(data)}`);
  return data;
}

/** Puts users into the user directory (a REST call each), so that pages
 *  know their names. */
export async function register(...list) {
  await Promise.all(list.map((u) => rest(u, "GET", "users/me")));
}

/** The direct conversation of a and b (created by a); returns its id. */
export async function direct(a, b) {
  const { conversation } = await rest(a, "POST", "conversations",
                                      { kind: "direct", user_id: b.id });
  return conversation.id;
}

export async function post(user, cid, body) {
  const { message } = await rest(user, "POST", `conversations/${cid}/messages`,
    { body, client_msg_id: randomBytes(8).toString("hex") });
  return message;
}

/** Every message of a conversation, oldest first, as user sees them. */
export async function history(user, cid) {
  const out = [];
  let before = null;
  for (;;) {
    const q = new URLSearchParams({ limit: "100" });
    if (before != null) q.set("before_seq", String(before));
    const page = await rest(user, "GET", `conversations/${cid}/messages?${q}`);
    out.unshift(...page.messages.sort((x, y) => x.seq - y.seq));
    if (!page.has_more || !page.messages.length) return out;
    before = out[0].seq;
  }
}

// ------------------------------------------------------------ screenshots

/** Saves page as SHOTS/name.png (the committed ones: make screenshots). */
export async function screenshot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, name + ".png"), animations: "disabled",
                          caret: "hide" });
}

// ------------------------------------------------------------ a TCP proxy

/**
 * A TCP proxy on 127.0.0.1 in front of the page's nginx, for a network
 * cut that Chromium's offline emulation does not make: setOffline() fails
 * new requests but leaves an open WebSocket alive. cut() resets every
 * connection through it and refuses new ones until restore().
 */
function reset(socket) {
  try {
    socket.resetAndDestroy();       // RST: the peer sees the loss at once
  } catch {
    socket.destroy();               // not connected yet
  }
}

export async function tcpProxy(target = new URL(BASE)) {
  const sockets = new Set();
  let down = false;
  const server = net.createServer((client) => {
    if (down) {
      reset(client);
      return;
    }
    const upstream = net.connect(Number(target.port), target.hostname);
    sockets.add(client);
    sockets.add(upstream);
    const end = () => {
      sockets.delete(client);
      sockets.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    port,
    base: `http://127.0.0.1:${port}/`,
    get connections() { return sockets.size / 2; },
    cut() {
      down = true;
      for (const s of sockets) reset(s);
      sockets.clear();
    },
    restore() {
      down = false;
    },
    close() {
      this.cut();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
