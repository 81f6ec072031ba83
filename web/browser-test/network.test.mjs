// The connection: a network cut and its recovery, and presence.
//
// Chromium's offline emulation (context.setOffline) is no network cut for
// a WebSocket: new connections fail, but an open one stays open, its
// frames held back until the context is online again (Chromium 156), so
// the page would only notice at its next heartbeat. The cut is made by a
// TCP proxy between Bob's page and nginx instead: Bob's page is loaded
// from the proxy's port, so its WebSocket and REST calls all go through
// it, and cut() resets them all.

import assert from "node:assert/strict";
import { after } from "node:test";

import {
  browserTest, closeBrowser, direct, expectAttr,
  expectClass, expectCount, expectText, expectTexts, hidden, history,
  post, register, screenshot, tcpProxy, users, visible,
} from "./lib.mjs";

after(closeBrowser);

browserTest("network cut: reconnecting shows, nothing is lost or doubled", async (s) => {
  const [alice, bob, carol] = users("Alice", "Bob", "Carol");
  await register(alice, bob, carol);
  const cid = await direct(alice, bob);
  const side = await direct(carol, bob);
  const proxy = await tcpProxy();
  s.defer(() => proxy.close());

  const a = await s.open(alice);
  const b = await s.open(bob, { base: proxy.base });
  await a.openConv(cid);
  await b.openConv(cid);
  await a.send("before the cut");
  await expectCount(b.message("before the cut"), 1);
  await expectText(b.$("#conn-state"), "Connected");
  await hidden(b.$("#banner"));

  // From now on Bob's page must never show a message twice, not even
  // for a moment (a pending copy beside the acknowledged one, a replay).
  await b.page.evaluate(() => {
    window.doubles = [];
    const check = () => {
      const seen = new Set();
      for (const li of document.querySelectorAll("#messages > li.msg")) {
        const body = li.querySelector(".msg-body")?.textContent;
        if (seen.has(body)) window.doubles.push(body);
        seen.add(body);
      }
    };
    new MutationObserver(check).observe(document.getElementById("messages"),
      { childList: true, subtree: true, characterData: true });
  });

  proxy.cut();
  await b.waitState("reconnecting");
  await expectText(b.$("#conn-state"), "Reconnecting…");
  await visible(b.$("#banner"));

  const away = ["while you were away 1", "while you were away 2", "while you were away 3"];
  for (const text of away) {
    await a.send(text);
    await expectClass(a.message(text), "pending", false);
  }
  await post(carol, side, "meanwhile, elsewhere");
  // Bob writes while offline: shown at once, pending
  await b.send("written offline");
  const offline = b.message("written offline");
  await expectCount(offline, 1);
  await expectClass(offline, "mine");
  await expectClass(offline, "pending");
  await b.waitState("reconnecting");
  await screenshot(b.page, "reconnecting");
  assert.deepEqual(await b.bodies(), ["before the cut", "written offline"],
                   "Bob cannot have Alice's messages yet");

  proxy.restore();
  await b.waitState("open", { timeout: 45000 });   // backoff with jitter
  await expectText(b.$("#conn-state"), "Connected");
  await hidden(b.$("#banner"));

  const all = ["before the cut", ...away, "written offline"];
  await expectTexts(b.$("#messages > li.msg .msg-body"), all);
  await expectTexts(a.$("#messages > li.msg .msg-body"), all);
  await expectClass(offline, "pending", false);
  await expectText(offline.locator(".msg-status"), /^(Sent|Delivered|Read)$/);
  await expectClass(a.message("written offline"), "theirs");
  for (const text of away) await expectClass(b.message(text), "theirs");
  await expectText(a.message("while you were away 3").locator(".msg-status"), "Read");

  // what came elsewhere is counted once
  await expectText(b.conv(side).locator(".conv-preview"), /meanwhile, elsewhere/);
  await expectText(b.conv(side).locator(".conv-unread"), "1");
  await expectText(b.$("#unread-total"), "1");

  // stored once each, in this order
  assert.deepEqual((await history(alice, cid)).map((m) => m.body), all);
  assert.deepEqual(await b.page.evaluate(() => window.doubles), [],
                   "a message was shown twice on Bob's page");
  // seq order on the page
  const seqs = (await b.messages.evaluateAll((els) => els.map((e) => Number(e.dataset.seq))));
  assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y));
  assert.equal(new Set(seqs).size, seqs.length);
});

browserTest("presence: online, offline ~3 s after the page closes, online again", async (s) => {
  const [alice, bob] = users("Alice", "Bob");
  await register(alice, bob);
  const cid = await direct(alice, bob);
  const a = await s.open(alice);
  let b = await s.open(bob);
  const dot = a.conv(cid).locator(".presence-dot");
  await expectAttr(dot, "data-online", "true");
  await a.openConv(cid);
  await expectText(a.$("#chat-subtitle"), "online");

  await b.context.close();
  // the server says offline 3 s after the last connection closes
  await expectAttr(dot, "data-online", "false", { timeout: 10000 });
  await expectText(a.$("#chat-subtitle"), /^last seen /);

  b = await s.open(bob);
  await expectAttr(dot, "data-online", "true");
  await expectText(a.$("#chat-subtitle"), "online");
});
