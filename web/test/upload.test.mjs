// chat.upload() of web/chat.js against a real nginx with chat_upload_path
// and a real PostgreSQL, started by t/test_chatjs.py, which passes
// CHAT_JS_PORT, CHAT_JS_KEY_FILE and CHAT_JS_UPLOAD_PATH (the store).
//
// Node has no XMLHttpRequest: NodeXHR below is a small one over node:http
// (a real HTTP client on a real socket) with what chat.js uses of it:
// open, setRequestHeader, send, abort, upload.onprogress, onload, onerror,
// onabort, status, responseText, getResponseHeader.  Without it, chat.js
// uploads through fetch.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, createHmac, randomBytes, randomUUID } from "node:crypto";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import { deflateSync } from "node:zlib";

import { ChatClient, ChatError } from "../chat.js";

const PORT = process.env.CHAT_JS_PORT;
const KEY_FILE = process.env.CHAT_JS_KEY_FILE;
const STORE = process.env.CHAT_JS_UPLOAD_PATH;
if (!PORT || !KEY_FILE || !STORE) {
  throw new Error("run through t/test_chatjs.py (CHAT_JS_PORT, CHAT_JS_KEY_FILE, " +
                  "CHAT_JS_UPLOAD_PATH)");
}
const KEY = readFileSync(KEY_FILE);
const API = `http://127.0.0.1:${PORT}/api/chat/`;
const T = { timeout: 90000 };

function mint(sub) {
  const now = Math.floor(Date.now() / 1000);
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const input = b64({ alg: "HS256", typ: "JWT" }) + "." +
    b64({ sub, iat: now, exp: now + 3600, jti: randomUUID() });
  return input + "." + createHmac("sha256", KEY).update(input).digest("base64url");
}

function user() {
  return "up-" + randomBytes(4).toString("hex");
}

function client(options = {}) {
  // no WebSocket is opened: upload() is REST
  return new ChatClient({ url: `ws://127.0.0.1:${PORT}/chat/ws`, apiBase: API,
                          token: mint(user()), ...options });
}

/** A PNG of w x h, unique (a tEXt chunk of random bytes). */
function png(w, h, extra = 0) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (kind, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(kind), data]);
    const sum = Buffer.alloc(4); sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8;
  const raw = Buffer.alloc((w + 1) * h, 0x80);
  return Buffer.concat([
    Buffer.from("89504e470d0a1a0a", "hex"), chunk("IHDR", ihdr),
    chunk("tEXt", Buffer.concat([Buffer.from("salt\0"),
                                 Buffer.from(randomBytes(8 + extra).toString("hex"))])),
    chunk("IDAT", deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]);
}

function storedPath(data) {
  const h = createHash("sha256").update(data).digest("hex");
  return join(STORE, h.slice(0, 2), h.slice(2, 4), h);
}

class NodeXHR {
  static pace = 0;              // ms between two pieces of the body

  constructor() {
    this.upload = {};
    this.status = 0;
    this.responseText = "";
    this._headers = {};
    this._done = false;
  }

  open(method, url) { this._method = method; this._url = new URL(url); }
  setRequestHeader(k, v) { this._headers[k] = v; }
  getResponseHeader(k) { return this._res?.headers[k.toLowerCase()] ?? null; }

  abort() {
    if (this._done) return;
    this._done = true;
    this._req?.destroy();
    queueMicrotask(() => this.onabort?.());
  }

  async send(body) {
    const buf = Buffer.from(body instanceof Blob ? await body.arrayBuffer() : body);
    const req = http.request({
      host: this._url.hostname, port: this._url.port, method: this._method,
      agent: false,             // no keep-alive socket left to wait for
      path: this._url.pathname + this._url.search,
      headers: { ...this._headers, "Content-Length": buf.length },
    });
    this._req = req;
    req.on("response", (res) => {
      this._res = res;
      const parts = [];
      res.on("data", (d) => parts.push(d));
      res.on("end", () => {
        if (this._done) return;
        this._done = true;
        this.status = res.statusCode;
        this.responseText = Buffer.concat(parts).toString();
        this.onload?.();
      });
    });
    req.on("error", () => {
      if (this._done) return;
      this._done = true;
      this.onerror?.();
    });
    let sent = 0;
    const next = () => {
      if (this._done) return;
      if (sent >= buf.length) { req.end(); return; }
      const piece = buf.subarray(sent, sent + 16384);
      req.write(piece, () => {
        sent += piece.length;
        this.upload.onprogress?.({ loaded: sent, total: buf.length,
                                   lengthComputable: true });
        setTimeout(next, NodeXHR.pace);
      });
    };
    next();
  }
}

async function until(cond, what, ms = 10000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("not within " + ms + " ms: " + what);
}

// ---------------------------------------------------------------- tests

test("upload through fetch: a PNG with its name and dimensions", T, async () => {
  const chat = client({ XMLHttpRequest: null });
  const data = png(7, 5);
  const seen = [];
  const up = await chat.upload(new Blob([data], { type: "image/png" }),
                               { name: "../cat.png", onProgress: (p) => seen.push(p) });
  assert.equal(typeof up.id, "number");
  assert.deepEqual({ ...up, id: 0 }, { id: 0, size: data.length, type: "image/png",
                                      name: "cat.png", width: 7, height: 5 });
  assert.deepEqual(seen, [{ loaded: data.length, total: data.length }]);
  assert.deepEqual(readFileSync(storedPath(data)), data);
});

test("upload through XMLHttpRequest: progress as the body goes out", T, async () => {
  const chat = client({ XMLHttpRequest: NodeXHR });
  const data = png(30, 20, 100000);        // ~200 KB: several pieces
  const seen = [];
  const file = new File([data], "photo.png", { type: "image/png" });
  const up = await chat.upload(file, { onProgress: (p) => seen.push(p) });
  assert.equal(up.name, "photo.png");
  assert.equal(up.size, data.length);
  assert.deepEqual([up.width, up.height], [30, 20]);
  assert.ok(seen.length > 3, JSON.stringify(seen));
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i].loaded > seen[i - 1].loaded);
  assert.deepEqual(seen.at(-1), { loaded: data.length, total: data.length });
});

test("cancel: aborted mid-upload, nothing stored", T, async () => {
  const chat = client({ XMLHttpRequest: NodeXHR });
  const data = png(10, 10, 400000);        // ~800 KB, slowly
  const ac = new AbortController();
  NodeXHR.pace = 20;
  try {
    const p = chat.upload(data, {
      signal: ac.signal,
      onProgress: ({ loaded }) => { if (loaded > 100000) ac.abort(); },
    });
    await assert.rejects(p, (e) => e instanceof ChatError && e.code === "cancelled");
  } finally {
    NodeXHR.pace = 0;
  }
  await until(() => readdirSync(join(STORE, "tmp")).length === 0, "tmp/ empty");
  assert.equal(existsSync(storedPath(data)), false);
  // an aborted signal cancels before anything is sent
  await assert.rejects(chat.upload(png(1, 1), { signal: ac.signal }),
                       (e) => e.code === "cancelled");
});

test("upload errors are ChatErrors with the status", T, async () => {
  for (const XMLHttpRequest of [NodeXHR, null]) {
    const chat = client({ XMLHttpRequest });
    await assert.rejects(chat.upload(new Uint8Array(0)), (e) =>
      e instanceof ChatError && e.code === "bad_request" && e.status === 400 &&
      e.message === "the file is empty");
    const bad = client({ XMLHttpRequest, token: "not-a-token" });
    await assert.rejects(bad.upload(png(1, 1)), (e) =>
      e.code === "unauthorized" && e.status === 401);
  }
});

test("fetchFile: a file back as a Blob with the token; a stranger's 404", T, async () => {
  const owner = client({ XMLHttpRequest: null });
  const data = png(4, 3);
  const up = await owner.upload(new Blob([data]), { name: "mine.png" });
  const blob = await owner.fetchFile(API + "files/" + up.id);
  assert.equal(blob.type, "image/png");
  assert.deepEqual(Buffer.from(await blob.arrayBuffer()), data);
  // anybody else: the one answer for every file they may not have
  await assert.rejects(client().fetchFile(API + "files/" + up.id), (e) =>
    e instanceof ChatError && e.code === "not_found" && e.status === 404);
  // a token function: a 401 is asked again with a fresh token
  const who = user();
  const reasons = [];
  const fresh = client({ token: async ({ reason }) => {
    reasons.push(reason);
    return mint(who);
  } });
  const mine = await fresh.upload(new Blob([png(2, 2)]), { name: "again.png" });
  assert.ok(mine.id > 0);
  reasons.length = 0;
  fresh._currentToken = "expired-token";     // the token it holds went bad
  assert.equal((await fresh.fetchFile(API + "files/" + mine.id)).size, png(2, 2).length);
  assert.deepEqual(reasons, ["unauthorized"]);
});
